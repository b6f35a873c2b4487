"""OpenAI wire types for /v1/models and /v1/chat/completions, as pydantic models.

Request fields are ordered as in OpenAI's API reference (https://platform.openai.com/docs/api-reference/chat/create).
Like OpenAI, requests tolerate fields we do not know (`extra="allow"`); they are logged as ignored so an operator
can see what was dropped. This module depends on pydantic alone, so any layer may import it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autoqwen.local_llm.protocol_logprobs import ChoiceLogprobs

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChatMessage",
    "Choice",
    "ChunkChoice",
    "Delta",
    "ErrorInfo",
    "ErrorResponse",
    "FunctionCall",
    "ModelCard",
    "ModelList",
    "NamedToolChoice",
    "ResponseFormat",
    "ResponseMessage",
    "StreamOptions",
    "TextPart",
    "Tool",
    "ToolCall",
    "Usage",
]

log = logging.getLogger(__name__)

# The seeds a generator accepts: signed or unsigned 64-bit integers (torch's `manual_seed` range).
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1
# Choices one chat request may ask for (`n`): each is a sequence in the engine's batch and queue.
MAX_CHAT_CHOICES = 8

# A token id as a `logit_bias` key: ASCII digits only, and short enough that no vocabulary is that large.
_TOKEN_ID = re.compile(r"[0-9]{1,9}")


class OpenAIBaseModel(BaseModel):
    """Base of the request types: unknown fields are accepted and logged, as OpenAI-compatible servers do."""

    model_config = ConfigDict(extra="allow")

    @model_validator(mode="after")
    def _log_ignored_fields(self) -> OpenAIBaseModel:
        if self.model_extra:
            log.info("%s: ignored fields %s", type(self).__name__, sorted(self.model_extra))
        return self


class TextPart(OpenAIBaseModel):
    type: Literal["text"]
    text: str


class OtherPart(OpenAIBaseModel):
    """A content part we cannot serve (image_url, input_audio, file); rejected with a clear message later."""

    type: str


class FunctionCall(OpenAIBaseModel):
    name: str
    arguments: str


class ToolCall(OpenAIBaseModel):
    """A call the assistant made: in a response, and sent back in the history of the next request."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(OpenAIBaseModel):
    """One message of the conversation sent by the client."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart | OtherPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    # As vLLM and llama.cpp accept it: an earlier reply's reasoning, which some chat templates (Qwen3's) show again.
    reasoning_content: str | None = None

    def text(self) -> str:
        """The message's text; list content is joined, and non-text parts raise ValueError."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        texts = []
        for part in self.content:
            if not isinstance(part, TextPart):
                raise ValueError(f"content part of type {part.type!r} is not supported: this model reads text")
            texts.append(part.text)
        return "".join(texts)


class StreamOptions(OpenAIBaseModel):
    include_usage: bool = False


class FunctionDefinition(OpenAIBaseModel):
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class Tool(OpenAIBaseModel):
    """A function the model may call (`tools` of the request)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(OpenAIBaseModel):
    name: str


class NamedToolChoice(OpenAIBaseModel):
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(OpenAIBaseModel):
    name: str = "response"
    description: str | None = None
    # "schema" is the field's name in OpenAI's API, but it shadows BaseModel.schema in pydantic.
    json_schema: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(OpenAIBaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self


class ChatCompletionRequest(OpenAIBaseModel):
    """Body of POST /v1/chat/completions."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    model: str
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    logit_bias: dict[str, Annotated[float, Field(ge=-100, le=100)]] | None = None
    logprobs: bool = Field(default=False, description="return each generated token's log-probability")
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    n: Annotated[int, Field(ge=1, le=MAX_CHAT_CHOICES, description="choices to generate, each a sequence")] = 1
    parallel_tool_calls: bool | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] = 0.0
    response_format: ResponseFormat | None = None
    seed: Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX, description="a signed or unsigned 64-bit integer")] | None = (
        None
    )
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    tools: list[Tool] | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20, description="with logprobs: the most likely tokens too")] | None = (
        None
    )
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    user: str | None = None
    # Server-only extras (also accepted by vLLM):
    ignore_eos: bool = Field(default=False, description="keep generating past end-of-sequence (benchmarks)")
    chat_template_kwargs: dict[str, Any] | None = Field(
        default=None,
        description='more variables for the model\'s chat template, e.g. {"enable_thinking": false} for Qwen3',
    )

    @field_validator("logit_bias")
    @classmethod
    def _token_id_keys(cls, bias: dict[str, float] | None) -> dict[str, float] | None:
        for key in bias or {}:
            if not _TOKEN_ID.fullmatch(key):
                raise ValueError(f"keys must be token ids (non-negative integers), got {key[:40]!r}")
        return bias

    @model_validator(mode="after")
    def _check_stop(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs: set logprobs to true to ask for top_logprobs")
        if isinstance(self.stop, list) and len(self.stop) > 4:
            raise ValueError("stop: at most 4 stop sequences are allowed")
        if any(s == "" for s in self.stop_list()):
            raise ValueError("stop: stop sequences must not be empty strings")
        return self

    def stop_list(self) -> list[str]:
        """`stop` as a list, whatever form the client sent."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def token_limit(self) -> int | None:
        """The completion token limit: max_completion_tokens, or the older max_tokens."""
        return self.max_completion_tokens or self.max_tokens


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0  # prompt tokens whose KV states came from the prefix cache


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    # A reasoning model's thinking (Qwen3's `<think>` block), apart from the answer, named as vLLM and llama.cpp do.
    reasoning_content: str | None = None
    tool_calls: list[ToolCall] | None = None


FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    """Non-streaming response of POST /v1/chat/completions."""

    id: str = Field(default_factory=_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a streaming POST /v1/chat/completions."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    """One entry of /v1/models: OpenAI's model object, plus what the model can do (null where unknown).

    The capability fields are extras to OpenAI's object, named as in AutoGen's `ModelInfo` (plus the context
    window, as LM Studio names it), so a client can build its `model_info` from them instead of guessing.
    """

    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "autoqwen"
    function_calling: bool | None = Field(default=None, description="answers `tools` with tool calls")
    json_output: bool | None = Field(default=None, description='honours response_format {"type": "json_object"}')
    structured_output: bool | None = Field(default=None, description="holds json_schema output to its schema")
    vision: bool | None = Field(default=None, description="reads image content parts")
    context_length: int | None = Field(default=None, description="context window in tokens (null until loaded)")
    family: str | None = Field(default=None, description='an AutoGen model family; "unknown" for local models')
    loaded: bool | None = Field(default=None, description="in memory now; a request for it loads it otherwise")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """OpenAI's error body, `{"error": {...}}`, which stock clients parse into their exceptions."""

    error: ErrorInfo
