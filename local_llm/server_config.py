"""The settings of one server, read by the app (auth, CORS, names) and by each endpoint's serving module."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autoqwen.local_llm.tool_choice import AutoToolChoice, ToolSelection

__all__ = ["ServerConfig"]


class ServerConfig(BaseModel):
    """Settings of one server; the model itself is the Engine's.

    ServerConfig(api_keys=["secret"], aliases=["gpt-4o-mini"], default_max_tokens=512)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("api_keys")
    @classmethod
    def _keys_are_tokens(cls, keys: tuple[str, ...]) -> tuple[str, ...]:
        for key in keys:
            if not key or key != key.strip() or " " in key:
                raise ValueError("an API key must be non-empty, without spaces")
        return keys

    api_keys: tuple[str, ...] = Field(
        default=(),
        description="require `Authorization: Bearer <key>` with one of these keys on /v1/* and /metrics (none: no "
        "key needed); each key's clients get their own prefix cache",
    )
    aliases: tuple[str, ...] = Field(default=(), description="extra model names the server answers to")
    default_temperature: float = Field(default=0.7, ge=0, le=2, description="when a request sets none")
    default_max_tokens: int = Field(default=2048, ge=1, description="completion cap when a request sets none")
    cors_origins: tuple[str, ...] = Field(default=(), description="origins allowed by CORS; none by default")
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024, ge=1, description="largest request body accepted; a larger one gets 413 unread"
    )
    allowed_hosts: tuple[str, ...] = Field(
        default=(),
        description="Host header names accepted on a loopback connection besides localhost, 127.0.0.1, [::1] and "
        'the bound address (against DNS rebinding); "*" accepts any',
    )
    auto_tool_choice: AutoToolChoice = Field(
        default="call-then-answer",
        description='how tool_choice "auto" behaves: "model" lets the model decide; "call-then-answer" calls a '
        "tool on a user turn and answers in text once results are in (for small models that cannot decide)",
    )
    constrained_decoding: bool = Field(
        default=True, description="constrain tool calls and json output to their schemas (off only to compare)"
    )
    tool_selection: ToolSelection = Field(
        default="channel",
        description='when a call is required and several tools fit: "channel" picks the tool under which the '
        'user\'s message is most likely (scored by the model), "model" lets the model write the name',
    )
    no_tool_option: bool = Field(
        default=True,
        description="under call-then-answer with channel selection, a user message that no tool fits better than "
        'a "no tool" description is answered in text',
    )
    parallel_calls: bool = Field(
        default=True,
        description="several calls in one reply (at most 3) unless the client sets parallel_tool_calls false or "
        "names a tool; off: only when parallel_tool_calls is true",
    )
    clause_calls: bool = Field(
        default=False,
        description="with channel selection and several calls allowed, a message whose clauses ask for other tools "
        '("the weather in Paris and the stock price of AAPL") gets one call to each; each such message is scored '
        "once more, clause by clause",
    )
    ground_answers: bool = Field(
        default=True,
        description="a text answer to short tool results (values: numbers, dates, ids) starts with them, as "
        "written, when each is one plain line, else holds one of their values",
    )
    copy_values: bool = Field(
        default=True,
        description="argument strings and numbers a schema leaves free are taken from the user's words (spans, "
        "numbers as written); off: the model writes any value the schema allows",
    )

    max_models: int = Field(
        default=1,
        ge=1,
        description="models loaded at once; a request for another local model unloads the least recently used idle one",
    )
    idle_ttl_s: float | None = Field(
        default=3600,
        gt=0,
        description="unload a model loaded on demand after this many seconds without requests "
        "(None: never); the server's own model stays",
    )
    load_wait_s: float = Field(
        default=60, ge=0, description="how long a request waits for its model to load before 503 + Retry-After"
    )

    def cache_scope(self, authorization: str | None) -> str | None:
        """The prefix cache scope of a request: its API key's digest when the server requires keys, so one key's
        clients never reuse (and see in `cached_tokens`) another's prompts; None, one shared cache, without keys."""
        if not self.api_keys or authorization is None:
            return None
        return hashlib.sha256(authorization.partition(" ")[2].strip().encode()).hexdigest()
