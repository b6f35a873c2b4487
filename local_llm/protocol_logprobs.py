"""OpenAI's wire shape of token log-probabilities in chat completions and responses, as pydantic models.

    {"content": [{"token": "Hi", "logprob": -0.3, "bytes": [72, 105], "top_logprobs": [{...}, ...]}]}

Chat completions carry it as `choices[].logprobs`, the Responses API as `output_text.logprobs` (its `content` list);
the legacy /v1/completions shape is in `protocol_completions`. This module depends on pydantic alone.
"""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["ChoiceLogprobs", "TokenLogprobInfo", "TopLogprob"]


class TopLogprob(BaseModel):
    """One of the most likely tokens at a position: its text, log-probability and UTF-8 bytes."""

    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprobInfo(BaseModel):
    """A generated token: its text, log-probability, UTF-8 bytes and the most likely tokens at its position."""

    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """`choices[].logprobs` of a chat completion (and of a streamed chunk: the tokens of that chunk)."""

    content: list[TokenLogprobInfo] | None = None
    refusal: list[TokenLogprobInfo] | None = None
