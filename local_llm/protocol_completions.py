"""OpenAI wire types for the legacy /v1/completions endpoint (text completion), as pydantic models.

Request fields are ordered as in OpenAI's API reference (https://platform.openai.com/docs/api-reference/completions).
Unknown fields are accepted and logged, as for chat (`OpenAIBaseModel`). This module depends on pydantic alone.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from autoqwen.local_llm.protocol import SEED_MAX, SEED_MIN, OpenAIBaseModel, PromptTokensDetails, StreamOptions

__all__ = [
    "MAX_CHOICES",
    "MAX_LOGPROBS",
    "CompletionChoice",
    "CompletionLogprobs",
    "CompletionRequest",
    "CompletionResponse",
    "CompletionUsage",
]

# Choices one request may ask for (prompts times best_of): each is a sequence in the engine's batch and queue.
MAX_CHOICES = 16
MAX_LOGPROBS = 5  # OpenAI's limit for the legacy endpoint
_TOKEN_ID = re.compile(r"[0-9]{1,9}")

# A prompt: text, several texts, token ids, or several lists of token ids (one completion per prompt).
Prompt = str | list[str] | list[Annotated[int, Field(ge=0)]] | list[list[Annotated[int, Field(ge=0)]]]


class CompletionRequest(OpenAIBaseModel):
    """Body of POST /v1/completions."""

    model: str
    prompt: Prompt
    best_of: Annotated[int, Field(ge=1, le=MAX_CHOICES)] | None = None
    echo: bool = False
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES)] = 1
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    seed: Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX, description="a signed or unsigned 64-bit integer")] | None = (
        None
    )
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    suffix: str | None = Field(default=None, description="not supported: a request that sets it gets a 400")
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    user: str | None = None
    # Server-only extras (also accepted by vLLM):
    ignore_eos: bool = Field(default=False, description="keep generating past end-of-sequence (benchmarks)")

    @field_validator("logit_bias")
    @classmethod
    def _token_id_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key in bias or {}:
            if not _TOKEN_ID.fullmatch(key):
                raise ValueError(f"keys must be token ids (non-negative integers), got {key[:40]!r}")
        return bias

    @model_validator(mode="after")
    def _check(self) -> CompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop: at most 4 stop sequences are allowed")
        if any(s == "" for s in self.stop_list()):
            raise ValueError("stop: stop sequences must not be empty strings")
        if self.best_of is not None and self.best_of < self.n:
            raise ValueError(f"best_of: must be at least n ({self.n}), got {self.best_of}")
        return self

    def stop_list(self) -> list[str]:
        """`stop` as a list, whatever form the client sent."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def prompts(self) -> list[str | list[int]]:
        """Each prompt, as text or token ids (an empty list of prompts gives none)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if prompt and all(isinstance(p, int) for p in prompt):
            return [[p for p in prompt if isinstance(p, int)]]
        return [p if isinstance(p, str) else list(p) for p in prompt if not isinstance(p, int)]


class CompletionLogprobs(BaseModel):
    """A choice's `logprobs` in the legacy shape: parallel lists, one entry per token."""

    tokens: list[str] = Field(default_factory=list)
    token_logprobs: list[float | None] = Field(default_factory=list)
    top_logprobs: list[dict[str, float] | None] = Field(default_factory=list)
    text_offset: list[int] = Field(default_factory=list)


class CompletionChoice(BaseModel):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


def _completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


class CompletionResponse(BaseModel):
    """Response of POST /v1/completions; a stream sends objects of the same shape, one per piece of text."""

    id: str = Field(default_factory=_completion_id)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None
