"""The Model page's JSON, mounted under /api: which model the runs use, its state, what it can do, live figures.

GET  /api/v1/model        the model in use: embedded (id, state, load stage) or external (base URL), its context
                          length and capabilities (the server's /v1/models), the server's figures (its /metrics)
POST /api/v1/model/load   start loading the embedded model now, in the background (409 with an external server)

The figures come from the target server over HTTP with short timeouts: a server that does not answer shows as
"unreachable: ...", one without autoqwen's /metrics shows what /v1/models says. The API key goes only to the
configured server (its base URL's /v1/models and, on the same origin, /metrics), never to another address.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any, Literal

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from autoqwen.agents.model_info import reported_capabilities
from autoqwen.local_llm.api_errors import APIError
from autoqwen.ui.pages import Pages
from autoqwen.workflows.live_runs import RunTarget

__all__ = ["ModelStatus", "ServerFigures", "model_status", "router"]

TIMEOUT = httpx.Timeout(3.0, connect=1.0)
_MAX_BODY = 2_000_000  # a /metrics or /v1/models answer larger than this is not one we read
# Where servers put a model's window in /v1/models (as workflows.endpoints reads it): LM Studio, vLLM, llama.cpp.
_WINDOW_FIELDS = ("context_length", "max_context_length", "max_model_len", "n_ctx", "n_ctx_train")


class ServerFigures(BaseModel):
    """Live figures of an autoqwen server, read from its Prometheus /metrics (null where it does not say)."""

    tokens_per_second: float | None = Field(default=None, description="tokens generated per second, last 10 s")
    decode_tokens_per_second: float | None = Field(default=None, description="of the last request")
    queue_depth: int | None = Field(default=None, description="requests waiting for the model")
    batch_size: int | None = Field(default=None, description="sequences decoding together now")
    requests: int | None = Field(default=None, description="HTTP requests served, all routes")
    prompt_tokens: int | None = None
    cached_prompt_tokens: int | None = Field(default=None, description="prompt tokens served from the prefix cache")
    completion_tokens: int | None = None
    prefix_cache_hit_rate: float | None = Field(default=None, description="cached / prompt tokens, 0-1")
    prefix_cache_entries: int | None = None
    prefix_cache_bytes: int | None = None
    mean_latency_s: float | None = Field(default=None, description="mean chat completion time")
    mean_ttft_s: float | None = Field(default=None, description="mean time to the first token")


class ModelStatus(BaseModel):
    """What the Model page shows: the model in use, where it is served, its state, capabilities and figures."""

    kind: Literal["embedded", "external"]
    label: str = Field(description="how the UI names it in its navigation")
    base_url: str = Field(description="the OpenAI base URL the runs use (without any user:password)")
    model: str | None = Field(description="the model's id (an external server's first model when none was named)")
    state: str = Field(description="embedded: not loaded, loading, ready, failed; external: ready or unreachable")
    load_stage: str | None = None
    error: str | None = Field(default=None, description="why loading failed")
    context_length: int | None = Field(default=None, description="the context window in tokens, if reported")
    capabilities: dict[str, Any] = Field(default_factory=dict, description="as reported in /v1/models")
    models: list[str] = Field(default_factory=list, description="every model id the server lists")
    models_error: str | None = Field(default=None, description="why /v1/models could not be read")
    metrics: ServerFigures | None = None
    metrics_error: str | None = Field(default=None, description="why there are no figures")


def router(pages: Pages) -> APIRouter:
    """The /v1/model routes (the app mounts them under /api)."""
    routes = APIRouter(prefix="/v1", tags=["ui: model"])

    @routes.get("/model", summary="The model in use, its state, capabilities and live figures")
    async def get_model() -> ModelStatus:
        return await model_status(pages)

    @routes.post("/model/load", status_code=202, summary="Load the embedded model now, in the background")
    async def load_model() -> JSONResponse:
        if pages.model is None:
            raise APIError(
                409,
                f"the UI uses the external server at {shown_url(pages.runs.target.base_url)}: nothing to load here",
                type="invalid_request_error",
                code="external_model",
            )
        await asyncio.to_thread(pages.model.start)  # it may wait for a previous load's server to stop
        return JSONResponse((await model_status(pages)).model_dump(), status_code=202)

    return routes


async def model_status(pages: Pages) -> ModelStatus:
    """Ask the target server (when it should be up) what it serves and how busy it is; never raises."""
    target = pages.runs.target
    lazy = pages.model
    status = ModelStatus(
        kind="external" if lazy is None else "embedded",
        label=pages.model_label,
        base_url=shown_url(target.base_url),
        model=target.model if lazy is None else lazy.model_id,
        state="ready" if lazy is None else lazy.state,
        load_stage=None if lazy is None else lazy.load_stage or None,
        error=None if lazy is None else lazy.error,
    )
    if lazy is not None and (status.state in ("not loaded", "failed", "closed") or status.load_stage == "starting"):
        # Its server is not listening (yet): nothing to ask.
        status.models_error = status.metrics_error = f"the model is {status.state}"
        return status
    async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as http:
        listed, figures = await asyncio.gather(_models(http, target), _figures(http, target))
    if isinstance(listed, str):
        status.models_error = listed
        if lazy is None:
            status.state = "unreachable"
    else:
        status.models = [str(entry.get("id", "")) for entry in listed]
        entry = next((e for e in listed if e.get("id") == status.model), listed[0] if listed else None)
        if entry is not None:
            status.model = str(entry.get("id", "")) or status.model
            status.context_length = _window(entry)
            status.capabilities = reported_capabilities(entry)
    if isinstance(figures, str):
        status.metrics_error = figures
    else:
        status.metrics = figures
    if lazy is not None and status.context_length is None:
        status.context_length = lazy.context_length
    return status


def shown_url(url: str) -> str:
    """`url` without the user:password part, for display."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return url
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


def _headers(target: RunTarget) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


async def _get(http: httpx.AsyncClient, url: str, target: RunTarget) -> httpx.Response | str:
    """The answer to GET `url` (read up to _MAX_BODY), or why there is none."""
    try:
        async with http.stream("GET", url, headers=_headers(target)) as response:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > _MAX_BODY:
                    return f"the answer of {shown_url(url)} is larger than {_MAX_BODY} bytes"
            return httpx.Response(response.status_code, headers=response.headers, content=bytes(body))
    except httpx.HTTPError as exc:
        return f"unreachable: {type(exc).__name__}: {exc}" if str(exc) else f"unreachable: {type(exc).__name__}"


async def _models(http: httpx.AsyncClient, target: RunTarget) -> list[dict[str, Any]] | str:
    """The entries of the server's /v1/models, or why they could not be read."""
    url = target.base_url.rstrip("/") + "/models"
    answer = await _get(http, url, target)
    if isinstance(answer, str):
        return answer
    if answer.status_code != 200:
        return f"HTTP {answer.status_code} from /models: {_error_text(answer)}"
    try:
        data = answer.json().get("data")
    except (ValueError, AttributeError):
        data = None
    if not isinstance(data, list):
        return "the server's /models answer is not an OpenAI model list"
    return [entry for entry in data if isinstance(entry, dict)]


async def _figures(http: httpx.AsyncClient, target: RunTarget) -> ServerFigures | str:
    """autoqwen's figures from /metrics on the base URL's own server, or why there are none."""
    base = httpx.URL(target.base_url)
    answer = await _get(http, str(base.copy_with(path="/metrics", query=None, fragment=None)), target)
    if isinstance(answer, str):
        return answer
    if answer.status_code == 404:
        return "this server has no /metrics endpoint"
    if answer.status_code != 200:
        return f"HTTP {answer.status_code} from /metrics: {_error_text(answer)}"
    values = _samples(answer.text)
    if not any(name.startswith("autoqwen_") for name in values):
        return "this server's /metrics has no autoqwen figures"
    return _read_figures(values)


def _samples(text: str) -> dict[str, float]:
    """Prometheus text → {sample name: value summed over its labels}; {} when it is not Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if math.isfinite(sample.value):
                    found[sample.name] = found.get(sample.name, 0.0) + sample.value
    except (ValueError, TypeError, IndexError):
        return {}
    return found


def _read_figures(values: dict[str, float]) -> ServerFigures:
    def number(name: str) -> float | None:
        return values.get(f"autoqwen_{name}")

    def count(name: str) -> int | None:
        value = number(name)
        return None if value is None else int(value)

    def mean(name: str) -> float | None:
        total, seen = number(f"{name}_sum"), number(f"{name}_count")
        return total / seen if total is not None and seen else None

    prompt, cached = count("prompt_tokens_total"), count("prompt_cached_tokens_total")
    return ServerFigures(
        tokens_per_second=number("tokens_per_second"),
        decode_tokens_per_second=number("decode_tokens_per_second"),
        queue_depth=count("queue_depth"),
        batch_size=count("batch_size"),
        requests=count("requests_total"),
        prompt_tokens=prompt,
        cached_prompt_tokens=cached,
        completion_tokens=count("completion_tokens_total"),
        prefix_cache_hit_rate=cached / prompt if prompt and cached is not None else None,
        prefix_cache_entries=count("prefix_cache_entries"),
        prefix_cache_bytes=count("prefix_cache_bytes"),
        mean_latency_s=mean("completion_seconds"),
        mean_ttft_s=mean("time_to_first_token_seconds"),
    )


def _error_text(answer: httpx.Response) -> str:
    """The message of an OpenAI-style error body, else the start of the body."""
    try:
        error = answer.json().get("error")
        text = str(error.get("message") if isinstance(error, dict) else error or answer.text)
    except (ValueError, AttributeError):
        text = answer.text
    text = " ".join(text.split()) or answer.reason_phrase
    return text if len(text) <= 200 else text[:200] + " …"


def _window(entry: dict[str, Any]) -> int | None:
    """The context window a /v1/models entry reports, or None when it says nothing."""
    for where in (entry, entry.get("meta") or {}):
        for name in _WINDOW_FIELDS:
            value = where.get(name) if isinstance(where, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
