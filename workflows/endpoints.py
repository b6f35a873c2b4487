"""The model endpoint of a run: the server its agents talk to, that model's context window and its AutoGen
model_info (from what the server reports in /v1/models, the workflow's `model_info` winning; said in the log).

with model_endpoint(spec, options) as endpoint:   # starts the embedded server when nothing external is named
    ...
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from autoqwen.agents import Endpoint, ExternalModel, external_endpoint
from autoqwen.agents.model_info import ModelInfoSpec, reported_capabilities, resolve_model_info
from autoqwen.workflows.errors import RunError
from autoqwen.workflows.spec import WorkflowSpec

if TYPE_CHECKING:
    from autoqwen.workflows.runner import RunOptions

__all__ = ["model_endpoint"]

log = logging.getLogger(__name__)


@contextmanager
def model_endpoint(spec: WorkflowSpec, options: RunOptions) -> Iterator[Endpoint]:
    """The model endpoint for this run, starting the embedded server when nothing external is named.

    Its context window: `options.context_window`, else the workflow's `model.context_window`, else the embedded
    engine's, else what the server's /v1/models says (vLLM, llama.cpp), else None (agents assume a default).
    """
    external = spec.model if isinstance(spec.model, ExternalModel) else None
    given = options.context_window or (external.context_window if external else None)
    if options.base_url is not None:
        api_key = options.api_key or "none"
        model = options.model or _first_model(options.base_url, api_key)
        entry = _served_entry(options.base_url, api_key, model)
        yield _described(Endpoint(options.base_url, model, api_key), entry, given)
        return
    if external is not None:
        endpoint = external_endpoint(external)
        entry = _served_entry(endpoint.base_url, endpoint.api_key, endpoint.model)
        override = external.model_info or ModelInfoSpec()
        if external.function_calling is not None:
            override = override.model_copy(update={"function_calling": external.function_calling})
        yield _described(endpoint, entry, given, override)
        return
    from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model

    with EmbeddedServer(Engine(resolve_model(options.model or spec.model.model))) as server:
        if options.on_loading is not None:
            options.on_loading(server.engine)
        server.engine.wait_ready()
        window = min(given or server.engine.context_length, server.engine.context_length)
        endpoint = Endpoint(server.base_url, server.engine.model_id)
        yield _described(endpoint, _served_entry(server.base_url, "none", endpoint.model), window)


def _described(
    endpoint: Endpoint, entry: dict[str, Any] | None, window: int | None, override: ModelInfoSpec | None = None
) -> Endpoint:
    """`endpoint` with its context window (`window`, else the server's) and model_info, said in the log."""
    info = resolve_model_info(reported_capabilities(entry), override)
    log.info("model info for %s: %s", endpoint.model, info.describe())
    return dataclasses.replace(
        endpoint,
        context_window=window or _window(entry),
        model_info=info.model_info,
        function_calling=bool(info.model_info["function_calling"]),
    )


def _first_model(base_url: str, api_key: str) -> str:
    import openai

    try:
        models = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=2).models.list().data
    except openai.OpenAIError as exc:
        raise RunError(f"cannot list the models of {base_url}: {exc}") from exc
    if not models:
        raise RunError(f"the server at {base_url} serves no model; pass --model NAME")
    return models[0].id


# Where servers put a model's window in /v1/models: LM Studio, vLLM (`max_model_len`), llama.cpp (`meta.n_ctx_train`).
_WINDOW_FIELDS = ("context_length", "max_context_length", "max_model_len", "n_ctx", "n_ctx_train")


def _served_entry(base_url: str, api_key: str, model: str) -> dict[str, Any] | None:
    """What the server's /v1/models says of `model` (its entry, extra fields included), or None."""
    import openai

    try:
        models = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=5).models.list().data
    except openai.OpenAIError:
        return None  # the run itself will say what is wrong with the server
    return next((entry.model_dump() for entry in models if entry.id == model), None)


def _served_window(base_url: str, api_key: str, model: str) -> int | None:
    """The context window the server reports for `model` in /v1/models, or None when it says nothing."""
    return _window(_served_entry(base_url, api_key, model))


def _window(entry: dict[str, Any] | None) -> int | None:
    """The context window a /v1/models entry reports, or None when it says nothing."""
    for where in (entry or {}, (entry or {}).get("meta") or {}):
        for name in _WINDOW_FIELDS:
            value = where.get(name) if isinstance(where, dict) else None
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
