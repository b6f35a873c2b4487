"""The OpenAI-compatible HTTP server: a FastAPI app factory over the engines of a `ModelPool`.

    app = create_app(engine, ServerConfig(api_keys=["secret"]))
    app = create_app(engine, config, catalog=list_models, make_engine=lambda spec: Engine(resolve_model(spec)))
    uvicorn.run(app, host="127.0.0.1", port=1234)

Each request holds its model's engine (a `Lease` of the pool) until its reply, or its stream, ends; with a catalog,
a request naming another local model loads it (`model_pool`), and GET /api/ps lists what is loaded.

This module holds the app, its error handlers and thin routes; the Host, API key and body size checks run before
any body is read, in `request_guard`; each endpoint's pipeline lives in its own serving module (`serving_chat` for
/v1/chat/completions, `serving_completions` for /v1/completions, `serving_responses` for /v1/responses, which
answers through the chat dispatch here), and errors map to OpenAI bodies in `api_errors`. Models served by
something other than the engine (a model-name prefix, e.g. `workflow:NAME`) plug in as `ModelProvider`s
(`model_provider`), for chat and responses.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

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
from autoqwen.local_llm.model_pool import Lease, ModelPool, Resident, Spec
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

if TYPE_CHECKING:
    from autoqwen.local_llm.model_catalog import LocalModel

__all__ = ["ServerConfig", "create_app"]

_Reply = TypeVar("_Reply")

log = logging.getLogger(__name__)

# Proxies must pass events on as they come, and clients must not cache a stream.
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def create_app(
    engine: Engine,
    config: ServerConfig | None = None,
    *,
    providers: Sequence[ModelProvider] = (),
    catalog: Callable[[], Sequence[LocalModel]] | None = None,
    make_engine: Callable[[Spec], Engine] | None = None,
) -> FastAPI:
    """Build the FastAPI app serving `engine` over the OpenAI API (chat completions, completions, responses); each
    of `providers` serves the models under its name prefix besides, for chat and responses (see `model_provider`).
    With `catalog` (the local models) and `make_engine` (an unstarted Engine for a model id), a request naming
    another local model loads it on demand (`model_pool`)."""
    config = config or ServerConfig()
    pool = ModelPool(
        engine,
        aliases=config.aliases,
        catalog=catalog,
        make_engine=make_engine,
        max_models=config.max_models,
        idle_ttl_s=config.idle_ttl_s,
        load_wait_s=config.load_wait_s,
    )
    metrics = ServerMetrics(lambda: pool.engines)
    responses = ResponsesServing(ResponseStore())
    app = FastAPI(title="autoqwen local LLM server", version=importlib.metadata.version("autoqwen"))
    app.state.models, app.state.config, app.state.metrics = pool, config, metrics
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

    @app.get("/health")
    async def health() -> JSONResponse:
        if pool.current is None:  # every model was unloaded: a request loads one
            return JSONResponse({"status": "idle", "model": None})
        current = pool.current.engine
        body: dict[str, Any] = {"status": current.state, "model": current.model_id}
        if current.state == "ready":
            body["load_seconds"] = round(current.load_seconds or 0.0, 2)
            return JSONResponse(body)
        body["load_stage"] = current.load_stage
        if current.error is not None:
            body["error"] = str(current.error)
        return JSONResponse(body, status_code=503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/ps")
    async def loaded_models() -> dict[str, Any]:
        """The models loaded now (`autoqwen ps`), in Ollama's /api/ps shape plus autoqwen's fields."""
        return {"models": pool.ps(), "max_models": pool.max_models, "idle_ttl_s": pool.idle_ttl_s}

    def model_card(name: str, resident: Resident | None) -> ModelCard:
        # Every model gets tools (its own template, or injected signatures) and json output; schemas hold only
        # under constrained decoding. Local models fall under AutoGen's "unknown" family (its families are hosted
        # releases). The window is known once the model is loaded.
        context = resident.engine.context_length if resident is not None else 0
        return ModelCard(
            id=name,
            function_calling=True,
            json_output=True,
            structured_output=config.constrained_decoding,
            vision=False,
            context_length=context or None,
            family="unknown",
            loaded=resident is not None and resident.engine.state == "ready",
        )

    @app.get("/v1/models")
    async def list_models() -> ModelList:
        provided = [card for provider in providers for card in provider.models()]
        local = await asyncio.to_thread(pool.listing)  # walks the model caches now and then
        return ModelList(data=[model_card(name, resident) for name, resident in local] + provided)

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str) -> ModelCard:
        provider = find_provider(providers, model_id)
        card = next((c for c in provider.models() if c.id == model_id), None) if provider else None
        if card is not None:
            return card
        local = dict(await asyncio.to_thread(pool.listing))
        if model_id not in local:
            raise unknown_model(model_id, tuple(local))
        return model_card(model_id, local[model_id])

    async def complete_chat(body: ChatCompletionRequest, request: Request) -> ProviderReply:
        """A chat request answered by the provider of its model, or by the engine of its model."""
        provider = find_provider(providers, body.model)
        if provider is not None:
            return await provider.complete(body, request.is_disconnected)
        scope = config.cache_scope(request.headers.get("authorization"))
        lease = await pool.acquire(body.model)
        chat = ChatServing(lease.engine, config, metrics)
        return await _held(lease, chat.create(body, request.is_disconnected, cache_scope=scope))

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
        scope = config.cache_scope(request.headers.get("authorization"))
        lease = await pool.acquire(body.model)
        completions = CompletionServing(lease.engine, config, metrics)
        reply = await _held(lease, completions.create(body, request.is_disconnected, cache_scope=scope))
        if isinstance(reply, CompletionResponse):
            return reply
        return StreamingResponse(reply, media_type="text/event-stream", headers=_SSE_HEADERS)

    @app.post("/v1/responses", response_model=None)
    async def create_response(body: ResponsesRequest, request: Request) -> ResponsesResponse | StreamingResponse:
        scope = config.cache_scope(request.headers.get("authorization"))  # also the scope of kept responses
        reply = await responses.create(body, lambda chat_body: complete_chat(chat_body, request), scope=scope)
        if isinstance(reply, ResponsesResponse):
            return reply
        return StreamingResponse(reply, media_type="text/event-stream", headers=_SSE_HEADERS)

    @app.get("/v1/responses/{response_id}")
    async def get_response(response_id: str, request: Request) -> ResponsesResponse:
        return responses.retrieve(response_id, config.cache_scope(request.headers.get("authorization")))

    return app


async def _held(lease: Lease, reply: Awaitable[_Reply]) -> _Reply:
    """`reply`, with the model held until it is complete: a stream's lines hold it until the stream ends (or, for
    a stream never started, until it is garbage: the finalizer below)."""
    try:
        result = await reply
    except BaseException:
        lease.release()
        raise
    if isinstance(result, AsyncIterator):
        held = _release_after(result, lease)
        weakref.finalize(held, lease.release)
        return cast(_Reply, held)
    lease.release()
    return result


async def _release_after(lines: AsyncIterator[str], lease: Lease) -> AsyncIterator[str]:
    try:
        async for line in lines:
            yield line
    finally:
        close = getattr(lines, "aclose", None)
        try:
            if close is not None:
                await close()  # its completions are cancelled before the model can be unloaded
        finally:
            lease.release()
