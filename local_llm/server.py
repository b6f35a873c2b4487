"""The OpenAI-compatible HTTP server: a FastAPI app factory over one Engine.

    app = create_app(engine, ServerConfig(api_key="secret"))
    uvicorn.run(app, host="127.0.0.1", port=1234)

Every error a client can cause comes back as OpenAI's `{"error": {...}}` body with a 4xx status; only our own
failures are 500s, and those never carry a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from autoqwen.local_llm.engine import Completion, Engine, SamplingParams
from autoqwen.local_llm.errors import (
    ContextLengthExceeded,
    EngineNotReady,
    InvalidRequest,
    LocalLLMError,
    QueueFull,
)
from autoqwen.local_llm.metrics import CountRequests, ServerMetrics
from autoqwen.local_llm.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ErrorInfo,
    ErrorResponse,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    ResponseMessage,
    ToolCall,
    Usage,
)
from autoqwen.local_llm.tools import (
    NAME_PREFIX,
    TOOL_OPEN,
    AutoToolChoice,
    ToolCallStream,
    ToolSelection,
    answer_grammar,
    channel_pairs,
    json_grammar,
    offered_tools,
    parse_reply,
    render_messages,
    resolve_auto,
    select_tool,
    tool_grammar,
)

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger(__name__)


class ServerConfig(BaseModel):
    """Settings of one server; the model itself is the Engine's.

    ServerConfig(api_key="secret", aliases=["gpt-4o-mini"], default_max_tokens=512)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_key: str | None = Field(default=None, description="require `Authorization: Bearer <key>` on /v1/*")
    aliases: tuple[str, ...] = Field(default=(), description="extra model names the server answers to")
    default_temperature: float = Field(default=0.7, ge=0, le=2, description="when a request sets none")
    default_max_tokens: int = Field(default=2048, ge=1, description="completion cap when a request sets none")
    cors_origins: tuple[str, ...] = Field(default=(), description="origins allowed by CORS; none by default")
    auto_tool_choice: AutoToolChoice = Field(
        default="call-then-answer",
        description='how tool_choice "auto" behaves: "model" lets the model decide; "call-then-answer" calls a '
        "tool on a user turn and answers in text once results are in (for small models that cannot decide)",
    )
    constrained_decoding: bool = Field(
        default=True, description="constrain tool calls and json output to their schemas (off only to compare)"
    )
    tool_selection: ToolSelection = Field(
        default="channel",
        description='when a call is required and several tools fit: "channel" picks the tool under which the '
        'user\'s message is most likely (scored by the model), "model" lets the model write the name',
    )


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


def _error_response(err: APIError) -> JSONResponse:
    body = ErrorResponse(error=err.info).model_dump()
    return JSONResponse(body, status_code=err.status, headers=err.headers)


def _api_error(exc: LocalLLMError) -> APIError:
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


def _validation_error(exc: RequestValidationError | ValidationError) -> APIError:
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


def create_app(engine: Engine, config: ServerConfig | None = None) -> FastAPI:
    """Build the FastAPI app serving `engine` over the OpenAI chat completions API."""
    config = config or ServerConfig()
    metrics = ServerMetrics(engine)
    app = FastAPI(title="autoqwen local LLM server", version="0.1.0")
    app.state.engine, app.state.config, app.state.metrics = engine, config, metrics
    app.add_middleware(CountRequests, metrics=metrics)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )

    @app.exception_handler(APIError)
    async def _on_api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(LocalLLMError)
    async def _on_engine_error(_: Request, exc: LocalLLMError) -> JSONResponse:
        return _error_response(_api_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _on_http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return _error_response(APIError(exc.status_code, message, type="invalid_request_error", code=code))

    @app.exception_handler(Exception)
    async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected server error")
        return _error_response(APIError(500, "internal server error", type="internal_server_error"))

    def require_key(request: Request) -> None:
        if config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip(), config.api_key):
            raise APIError(
                401,
                "invalid or missing API key: send `Authorization: Bearer <key>`",
                type="invalid_request_error",
                code="invalid_api_key",
            )

    served = (engine.model_id, *config.aliases)

    @app.get("/health")
    async def health() -> JSONResponse:
        body: dict[str, Any] = {"status": engine.state, "model": engine.model_id}
        if engine.state == "ready":
            body["load_seconds"] = round(engine.load_seconds or 0.0, 2)
            return JSONResponse(body)
        body["load_stage"] = engine.load_stage
        if engine.error is not None:
            body["error"] = str(engine.error)
        return JSONResponse(body, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def list_models() -> ModelList:
        return ModelList(data=[ModelCard(id=name) for name in served])

    @app.get("/v1/models/{model_id:path}", dependencies=[Depends(require_key)])
    async def get_model(model_id: str) -> ModelCard:
        if model_id not in served:
            raise _unknown_model(model_id, served)
        return ModelCard(id=model_id)

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)], response_model=None)
    async def chat_completions(body: ChatCompletionRequest) -> ChatCompletion | StreamingResponse:
        if body.model not in served:
            raise _unknown_model(body.model, served)
        body = resolve_auto(body, config.auto_tool_choice)
        if config.constrained_decoding and config.tool_selection == "channel" and (pairs := channel_pairs(body)):
            tools, texts = pairs
            scores = await asyncio.to_thread(engine.score, [(engine.encode(a), engine.encode(b)) for a, b in texts])
            body = select_tool(body, tools[max(range(len(tools)), key=scores.__getitem__)])
        messages = render_messages(body)
        grammar = _grammar(engine, body) if config.constrained_decoding else None
        with_tools = bool(offered_tools(body))
        prompt = engine.encode_chat(messages)
        completion = engine.submit(prompt, _sampling_params(body, config, grammar), async_mode=True)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                _sse(completion, body.model, include_usage, with_tools, metrics),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        try:
            text = "".join([piece async for piece in completion])
        finally:
            completion.cancel()
        _observe(metrics, completion)
        content, calls = parse_reply(text) if with_tools else (text, [])
        finish = "tool_calls" if calls else completion.finish_reason or "stop"
        message = ResponseMessage(content=content, tool_calls=calls or None)
        return ChatCompletion(
            model=body.model, choices=[Choice(message=message, finish_reason=finish)], usage=_usage(completion)
        )

    return app


def _unknown_model(model: str, served: tuple[str, ...]) -> APIError:
    return APIError(
        404,
        f"the model {model!r} does not exist on this server; it serves: {', '.join(served)}",
        type="invalid_request_error",
        param="model",
        code="model_not_found",
    )


def _grammar(engine: Engine, body: ChatCompletionRequest) -> str | None:
    """The grammar constraining this request's output (tool calls or json), after checking every schema."""
    for i, tool in enumerate(body.tools or []):
        schema_grammar = f"%llguidance {{}}\nstart: %json {json.dumps(tool.function.parameters)}\n"
        if (error := engine.check_grammar(schema_grammar)) is not None:
            param = f"tools.{i}.function.parameters"
            raise InvalidRequest(f"{param}: not a usable JSON schema: {error.splitlines()[0]}", param=param)
    grammar = (
        tool_grammar(
            body,
            special_open=engine.is_special_token(TOOL_OPEN),
            tokenize=lambda name: engine.encode_after(NAME_PREFIX, name),
        )
        or json_grammar(body.response_format)
        or answer_grammar(body)
    )
    if grammar is not None and (error := engine.check_grammar(grammar)) is not None:
        param = "response_format" if body.response_format else "tools"
        raise InvalidRequest(f"{param}: cannot constrain output to this schema: {error.splitlines()[0]}", param=param)
    return grammar


def _sampling_params(body: ChatCompletionRequest, config: ServerConfig, grammar: str | None) -> SamplingParams:
    bias: dict[int, float] = {}
    for key, value in (body.logit_bias or {}).items():
        if not key.lstrip("-").isdigit():
            raise APIError(
                400,
                f"logit_bias: keys must be token ids, got {key!r}",
                type="invalid_request_error",
                param="logit_bias",
            )
        bias[int(key)] = value
    return SamplingParams(
        max_tokens=body.token_limit() or config.default_max_tokens,
        temperature=config.default_temperature if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        seed=body.seed,
        stop=tuple(body.stop_list()),
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=bias,
        ignore_eos=body.ignore_eos,
        grammar=grammar,
    )


def _usage(completion: Completion) -> Usage:
    return Usage(
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        total_tokens=completion.prompt_tokens + completion.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=completion.cached_tokens),
    )


def _observe(metrics: ServerMetrics, completion: Completion) -> None:
    metrics.prompt_tokens.inc(completion.prompt_tokens)
    metrics.cached_tokens.inc(completion.cached_tokens)
    metrics.completion_tokens.inc(completion.completion_tokens)
    if completion.finished_at is not None:
        metrics.latency.observe(completion.finished_at - completion.submitted_at)
    if completion.first_token_at is not None:
        metrics.ttft.observe(completion.first_token_at - completion.submitted_at)
        if completion.finished_at is not None and completion.completion_tokens > 1:
            span = completion.finished_at - completion.first_token_at
            if span > 0:
                metrics.decode_rate.set((completion.completion_tokens - 1) / span)


def _delta(item: str | ToolCall, calls: ToolCallStream | None) -> Delta:
    if isinstance(item, str):
        return Delta(content=item)
    assert calls is not None
    return Delta(tool_calls=[{"index": calls.calls.index(item), **item.model_dump()}])


async def _sse(
    completion: Completion, model: str, include_usage: bool, with_tools: bool, metrics: ServerMetrics
) -> AsyncIterator[str]:
    """Server-sent events of one streaming completion, ending with `data: [DONE]`."""
    base = ChatCompletionChunk(
        id=f"chatcmpl-{secrets.token_hex(16)}", created=int(time.time()), model=model, choices=[]
    )

    def event(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
        chunk = base.model_copy(update={"choices": choices, "usage": usage})
        return f"data: {chunk.model_dump_json()}\n\n"

    try:
        yield event([ChunkChoice(delta=Delta(role="assistant", content=""))])
        calls = ToolCallStream() if with_tools else None
        async for piece in completion:
            for item in calls.feed(piece) if calls else [piece]:
                yield event([ChunkChoice(delta=_delta(item, calls))])
        for item in calls.close() if calls else []:
            yield event([ChunkChoice(delta=_delta(item, calls))])
        finish = "tool_calls" if calls and calls.calls else completion.finish_reason or "stop"
        yield event([ChunkChoice(delta=Delta(), finish_reason=finish)])
        if include_usage:
            yield event([], _usage(completion))
        _observe(metrics, completion)
        yield "data: [DONE]\n\n"
    except LocalLLMError as exc:
        err = _api_error(exc)
        yield f"data: {json.dumps(ErrorResponse(error=err.info).model_dump())}\n\n"
    finally:
        completion.cancel()
