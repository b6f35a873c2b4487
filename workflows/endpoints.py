"""The model endpoint of a run: the server its agents talk to, and that model's context window.

with model_endpoint(spec, options) as endpoint:   # starts the embedded server when nothing external is named
    ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from autoqwen.agents import Endpoint, ExternalModel, external_endpoint
from autoqwen.workflows.errors import RunError
from autoqwen.workflows.spec import WorkflowSpec

if TYPE_CHECKING:
    from autoqwen.workflows.runner import RunOptions

__all__ = ["model_endpoint"]


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
        window = given or _served_window(options.base_url, api_key, model)
        yield Endpoint(options.base_url, model, api_key, context_window=window)
        return
    if external is not None:
        endpoint = external_endpoint(external)
        window = given or _served_window(endpoint.base_url, endpoint.api_key, endpoint.model)
        yield dataclasses.replace(endpoint, context_window=window)
        return
    from autoqwen.local_llm import EmbeddedServer, Engine, resolve_model

    with EmbeddedServer(Engine(resolve_model(options.model or spec.model.model))) as server:
        if options.on_loading is not None:
            options.on_loading(server.engine)
        server.engine.wait_ready()
        window = min(given or server.engine.context_length, server.engine.context_length)
        yield Endpoint(server.base_url, server.engine.model_id, context_window=window)


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


def _served_window(base_url: str, api_key: str, model: str) -> int | None:
    """The context window the server reports for `model` in /v1/models, or None when it says nothing."""
    import openai

    try:
        models = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=5).models.list().data
    except openai.OpenAIError:
        return None  # the run itself will say what is wrong with the server
    for entry in models:
        if entry.id != model:
            continue
        fields = entry.model_dump()
        for where in (fields, fields.get("meta") or {}):
            for name in _WINDOW_FIELDS:
                value = where.get(name) if isinstance(where, dict) else None
                if isinstance(value, int) and value > 0:
                    return value
    return None
