"""The OpenAI-compatible HTTP server: a FastAPI app factory over one Engine.

    app = create_app(engine, ServerConfig(api_keys=["secret"]))
    uvicorn.run(app, host="127.0.0.1", port=1234)

This module holds the app, its error handlers and thin routes; the Host, API key and body size checks run before
any body is read, in `request_guard`; each endpoint's pipeline lives in its own serving module (`serving_chat` for
/v1/chat/completions, `serving_completions` for /v1/completions, `serving_responses` for /v1/responses, which
answers through the chat dispatch here), and errors map to OpenAI bodies in `api_errors`. Models served by
something other than the engine (a model-name prefix, e.g. `workflow:NAME`) plug in as `ModelProvider`s
(`model_provider`), for chat and responses.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response, StreamingResponse

from autoqwen.local_llm.api_errors import (
    APIError,
    add_error_handlers,
    api_error,
    error_response,
    unknown_model,
)
from autoqwen.local_llm.engine import Engine
from autoqwen.local_llm.errors import LocalLLMError
from autoqwen.local_llm.metrics import CountRequests, ServerMetrics
from autoqwen.local_llm.model_provider import ModelProvider, ProviderReply, find_provider
from autoqwen.local_llm.protocol import ChatCompletion, ChatCompletionRequest, ModelCard, ModelList
from autoqwen.local_llm.protocol_completions import CompletionRequest, CompletionResponse
from autoqwen.local_llm.protocol_responses import ResponsesRequest, ResponsesResponse
from autoqwen.local_llm.request_guard import RequestGuard
from autoqwen.local_llm.response_store import ResponseStore
from autoqwen.local_llm.server_config import ServerConfig
from autoqwen.local_llm.serving_chat import ChatServing
from autoqwen.local_llm.serving_completions import CompletionServing
from autoqwen.local_llm.serving_responses import ResponsesServing

__all__ = ["ServerConfig", "create_app"]

log = logging.getLogger(__name__)

# Proxies must pass events on as they come, and clients must not cache a stream.
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(
    engine: Engine, config: ServerConfig | None = None, *, providers: Sequence[ModelProvider] = ()
) -> FastAPI:
    """Build the FastAPI app serving `engine` over the OpenAI API (chat completions, completions, responses); each
    of `providers` serves the models under its name prefix besides, for chat and responses (see `model_provider`)."""
    config = config or ServerConfig()
    metrics = ServerMetrics(engine)
    chat = ChatServing(engine, config, metrics)
    completions = CompletionServing(engine, config, metrics)
    responses = ResponsesServing(ResponseStore())
    app = FastAPI(title="autoqwen local LLM server", version=importlib.metadata.version("autoqwen"))
    app.state.engine, app.state.config, app.state.metrics = engine, config, metrics
    # Outermost last: the count sees every answer, CORS answers preflights, the guard runs before any body is read.
    app.add_middleware(RequestGuard, config=config)
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )
    app.add_middleware(CountRequests, metrics=metrics, routes=app.router.routes)

    add_error_handlers(app)

    @app.exception_handler(LocalLLMError)
    async def _on_engine_error(_: Request, exc: LocalLLMError) -> JSONResponse:
        return error_response(api_error(exc))

    @app.exception_handler(Exception)
    async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected server error")
        return error_response(APIError(500, "internal server error", type="internal_server_error"))

    served = config.served_models(engine.model_id)

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

    def engine_card(name: str) -> ModelCard:
        # Every model gets tools (its own template, or injected signatures) and json output; schemas hold only
        # under constrained decoding. Local models fall under AutoGen's "unknown" family (its families are hosted
        # releases). The window is known once the model is loaded.
        return ModelCard(
            id=name,
            function_calling=True,
            json_output=True,
            structured_output=config.constrained_decoding,
            vision=False,
            context_length=engine.context_length or None,
            family="unknown",
        )

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        provided = [card for provider in providers for card in provider.models()]
        return ModelList(data=[engine_card(name) for name in served] + provided)

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> ModelCard:
        provider = find_provider(providers, model_id)
        card = next((c for c in provider.models() if c.id == model_id), None) if provider else None
        if card is not None:
            return card
        if model_id not in served:
            raise unknown_model(model_id, served)
        return engine_card(model_id)

    async def complete_chat(body: ChatCompletionRequest, request: Request) -> ProviderReply:
        """A chat request answered by the provider of its model, or by the engine."""
        provider = find_provider(providers, body.model)
        if provider is not None:
            return await provider.complete(body, request.is_disconnected)
        scope = chat.cache_scope(request.headers.get("authorization"))
        return await chat.create(body, request.is_disconnected, cache_scope=scope)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatCompletionRequest, request: Request
    ) -> ChatCompletion | JSONResponse | StreamingResponse:
        reply = await complete_chat(body, request)
        if isinstance(reply, ChatCompletion | JSONResponse):
            return reply
        return StreamingResponse(reply, media_type="text/event-stream", headers=_SSE_HEADERS)

    @app.post("/v1/completions", response_model=None)
    async def text_completions(body: CompletionRequest, request: Request) -> CompletionResponse | StreamingResponse:
        scope = chat.cache_scope(request.headers.get("authorization"))
        reply = await completions.create(body, request.is_disconnected, cache_scope=scope)
        if isinstance(reply, CompletionResponse):
            return reply
        return StreamingResponse(reply, media_type="text/event-stream", headers=_SSE_HEADERS)

    @app.post("/v1/responses", response_model=None)
    async def create_response(body: ResponsesRequest, request: Request) -> ResponsesResponse | StreamingResponse:
        scope = chat.cache_scope(request.headers.get("authorization"))  # also the scope of kept responses
        reply = await responses.create(body, lambda chat_body: complete_chat(chat_body, request), scope=scope)
        if isinstance(reply, ResponsesResponse):
            return reply
        return StreamingResponse(reply, media_type="text/event-stream", headers=_SSE_HEADERS)

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, request: Request) -> ResponsesResponse:
        return responses.retrieve(response_id, chat.cache_scope(request.headers.get("authorization")))

    return app
