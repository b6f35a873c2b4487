"""Errors raised by the embedded model server; the server maps each one to an OpenAI-style error body.

* LocalLLMError                 root: catch this
  + ModelLoadError              the model could not be found or loaded (file, folder, hub id, bundled package)
  + EngineNotReady              the model is still loading, or failed to load       → 503
  + QueueFull                   too many requests waiting for the model             → 503 + Retry-After
  + ContextLengthExceeded       prompt (+ max_tokens) does not fit the model        → 400
  + InvalidRequest              a request the engine cannot serve as asked          → 400
"""

from __future__ import annotations

__all__ = [
    "ContextLengthExceeded",
    "EngineNotReady",
    "InvalidRequest",
    "LocalLLMError",
    "ModelLoadError",
    "QueueFull",
]


class LocalLLMError(Exception):
    """Base class of every error local_llm raises on purpose."""


class ModelLoadError(LocalLLMError):
    """The model named by the user could not be found or loaded; the message says how to fix it."""

    def __init__(self, message: str, *, model: str) -> None:
        super().__init__(message)
        self.model = model


class EngineNotReady(LocalLLMError):
    """The engine is still loading its model, or loading failed; clients should retry later."""


class QueueFull(LocalLLMError):
    """The bounded request queue is full; clients should retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ContextLengthExceeded(LocalLLMError):
    """The prompt is longer than the model's context window allows."""

    def __init__(self, message: str, *, prompt_tokens: int, context_length: int) -> None:
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class InvalidRequest(LocalLLMError):
    """A request that passed schema validation but that the engine cannot serve; `param` names the field."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param
