"""Errors as the client sees them: an HTTP status plus OpenAI's `{"error": {...}}` body.

Every error a client can cause maps to a 4xx here; only our own failures are 500s, and those never carry a
traceback. The server's exception handlers and the chat stream (which reports a failure as an SSE `data:` line)
both build their bodies from `APIError`.
"""

from __future__ import annotations

from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from autoqwen.local_llm.errors import (
    ContextLengthExceeded,
    EngineNotReady,
    InvalidRequest,
    LocalLLMError,
    QueueFull,
)
from autoqwen.local_llm.protocol import ErrorInfo, ErrorResponse

__all__ = ["APIError", "add_error_handlers", "api_error", "error_response", "unknown_model", "validation_error"]


class APIError(Exception):
    """An error to send to the client as-is: HTTP status plus OpenAI error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers
        self.info = ErrorInfo(message=message, type=type, param=param, code=code)

    def body(self) -> ErrorResponse:
        """The OpenAI error body of this error."""
        return ErrorResponse(error=self.info)


def error_response(err: APIError) -> JSONResponse:
    """`err` as a JSON response with its status and headers."""
    return JSONResponse(err.body().model_dump(), status_code=err.status, headers=err.headers)


def api_error(exc: LocalLLMError) -> APIError:
    """Map an engine error to the HTTP status and OpenAI error type a client expects."""
    if isinstance(exc, QueueFull):
        return APIError(
            503,
            str(exc),
            type="server_busy",
            code="queue_full",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, EngineNotReady):
        return APIError(503, str(exc), type="service_unavailable", code="model_not_ready", headers={"Retry-After": "5"})
    if isinstance(exc, ContextLengthExceeded):
        return APIError(400, str(exc), type="invalid_request_error", param="messages", code="context_length_exceeded")
    if isinstance(exc, InvalidRequest):
        return APIError(400, str(exc), type="invalid_request_error", param=exc.param)
    return APIError(500, "the server failed to complete the request", type="internal_server_error")


def validation_error(exc: RequestValidationError | ValidationError) -> APIError:
    """A request that failed schema validation: 400 naming the first bad field and counting the others."""
    errors = exc.errors()
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return APIError(
            400,
            f"the request body is not valid JSON: {first.get('msg')}",
            type="invalid_request_error",
            code="json_invalid",
        )
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    param = ".".join(loc) or None
    msg = str(first.get("msg", "invalid value"))
    message = f"{param}: {msg}" if param else msg
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return APIError(400, message, type="invalid_request_error", param=param, code=str(first.get("type", "")))


def unknown_model(model: str, served: tuple[str, ...]) -> APIError:
    """404 for a model name this server does not answer to, listing the ones it does."""
    return APIError(
        404,
        f"the model {model!r} does not exist on this server; it serves: {', '.join(served)}",
        type="invalid_request_error",
        param="model",
        code="model_not_found",
    )


def add_error_handlers(app: FastAPI) -> None:
    """OpenAI-style bodies for `APIError`, invalid requests (400 naming the field) and Starlette's HTTP errors
    (404 for an unknown path, 405, ...): the handlers every app of the project shares."""

    @app.exception_handler(APIError)
    async def _on_api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return error_response(APIError(exc.status_code, message, type="invalid_request_error", code=code))
