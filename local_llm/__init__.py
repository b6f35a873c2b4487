"""Embedded OpenAI-compatible server for a small local chat model (torch + transformers, loaded lazily)."""

from __future__ import annotations

from autoqwen.local_llm.completion import Completion
from autoqwen.local_llm.embedded import EmbeddedServer
from autoqwen.local_llm.engine import Engine
from autoqwen.local_llm.errors import (
    ContextLengthExceeded,
    EngineNotReady,
    InvalidRequest,
    LocalLLMError,
    ModelLoadError,
    QueueFull,
)
from autoqwen.local_llm.model_catalog import LocalModel, ModelDetails, Removal, list_models, remove_model, show_model
from autoqwen.local_llm.model_provider import ModelProvider
from autoqwen.local_llm.model_pull import pull_model
from autoqwen.local_llm.pull_progress import PullProgress, RichPullProgress
from autoqwen.local_llm.resolve import AUTO, BUNDLED, DEFAULT_HUB_ID, ModelSource, bundled_gguf, resolve_model
from autoqwen.local_llm.sampling import SamplingParams, TokenLogprob
from autoqwen.local_llm.scheduler import EngineHooks
from autoqwen.local_llm.server import ServerConfig, create_app

__all__ = [
    "AUTO",
    "BUNDLED",
    "DEFAULT_HUB_ID",
    "Completion",
    "ContextLengthExceeded",
    "EmbeddedServer",
    "Engine",
    "EngineHooks",
    "EngineNotReady",
    "InvalidRequest",
    "LocalLLMError",
    "LocalModel",
    "ModelDetails",
    "ModelLoadError",
    "ModelProvider",
    "ModelSource",
    "PullProgress",
    "QueueFull",
    "Removal",
    "RichPullProgress",
    "SamplingParams",
    "ServerConfig",
    "TokenLogprob",
    "bundled_gguf",
    "create_app",
    "list_models",
    "pull_model",
    "remove_model",
    "resolve_model",
    "show_model",
]
