"""The server's extension point: models served by something other than the engine, under a model-name prefix.

    class Echo:
        prefix = "echo:"
        def models(self) -> list[ModelCard]: return [ModelCard(id="echo:one")]
        async def complete(self, body, is_disconnected): ...   # a ChatCompletion, or SSE lines when body.stream

    app = create_app(engine, config, providers=[Echo()])

A request whose `model` starts with a provider's prefix goes to that provider instead of the engine, and
/v1/models lists the provider's models after the engine's. The local_llm package knows nothing of what a provider
does: `autoqwen serve` fills this in with the workflows layer's `workflow:NAME` models, so local_llm stays
independent of the layers above it. A provider raises `APIError` (from `api_errors`) for an error the client
should see; anything else is a 500 without a traceback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, runtime_checkable

from fastapi.responses import JSONResponse

from autoqwen.local_llm.protocol import ChatCompletion, ChatCompletionRequest, ModelCard

__all__ = ["ModelProvider", "ProviderReply", "find_provider"]

# What a provider answers: a completion, the same as raw JSON (to carry extra fields), or a stream's SSE lines.
ProviderReply = ChatCompletion | JSONResponse | AsyncIterator[str]


@runtime_checkable
class ModelProvider(Protocol):
    """Serves the chat completions of every model whose name starts with `prefix` (e.g. "workflow:")."""

    prefix: str

    def models(self) -> list[ModelCard]:
        """The models to list in /v1/models, each id starting with `prefix`."""
        ...

    async def complete(
        self, body: ChatCompletionRequest, is_disconnected: Callable[[], Awaitable[bool]]
    ) -> ProviderReply:
        """Answer one chat completion request for one of its models (`body.model`), streamed when `body.stream`."""
        ...


def find_provider(providers: Sequence[ModelProvider], model: str) -> ModelProvider | None:
    """The provider whose prefix `model` starts with, or None when the engine serves it."""
    return next((p for p in providers if p.prefix and model.startswith(p.prefix)), None)
