"""OpenAI wire types for /v1/responses (the Responses API), as pydantic models.

Request fields are ordered as in OpenAI's API reference (https://platform.openai.com/docs/api-reference/responses).
Unknown fields are accepted and logged, as for chat (`OpenAIBaseModel`); input items, content parts and tools of
kinds this server cannot serve are parsed as `Other*` and refused by the pipeline with a 400 naming them. Streaming
events are built in `serving_responses` from the item types here. This module depends on pydantic alone.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from autoqwen.local_llm.protocol import OpenAIBaseModel
from autoqwen.local_llm.protocol_logprobs import TokenLogprobInfo

__all__ = [
    "FunctionCallInput",
    "FunctionCallItem",
    "FunctionCallOutputInput",
    "FunctionTool",
    "InputText",
    "MessageInput",
    "OtherContent",
    "OtherItem",
    "OtherTool",
    "OutputItem",
    "OutputMessage",
    "OutputText",
    "ResponseUsage",
    "ResponsesRequest",
    "ResponsesResponse",
]


def _kind(known: tuple[str, ...], default: str | None = None) -> Discriminator:
    """A discriminator by `type`: its value when it is one of `known`, `default` when absent, else "other"."""

    def tag(value: Any) -> str:
        kind = value.get("type", default) if isinstance(value, dict) else getattr(value, "type", default)
        return kind if kind in known else "other"

    return Discriminator(tag)


def _text_or_items(value: Any) -> str:
    return "text" if isinstance(value, str) else "items"


class InputText(OpenAIBaseModel):
    """Text content of an input message (`output_text` in an assistant message sent back)."""

    type: Literal["input_text", "output_text"]
    text: str


class OtherContent(OpenAIBaseModel):
    """A content part this server cannot read (input_image, input_file, refusal, ...): refused with a 400."""

    type: str


ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")]
    | Annotated[InputText, Tag("output_text")]
    | Annotated[OtherContent, Tag("other")],
    _kind(("input_text", "output_text")),
]


# Tagged by Python type, so a bad part or item is reported at its own place (input.items.0.function_call.call_id)
# rather than as "not a string" first.
Content = Annotated[
    Annotated[str, Tag("text")] | Annotated[list[ContentPart], Tag("items")], Discriminator(_text_or_items)
]


class MessageInput(OpenAIBaseModel):
    """A message of the conversation (`type` may be left out, as in OpenAI's easy input messages)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: Content
    id: str | None = None
    status: str | None = None


class FunctionCallInput(OpenAIBaseModel):
    """A call the model made earlier, sent back with the conversation."""

    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: str | None = None


class FunctionCallOutputInput(OpenAIBaseModel):
    """The result of a function call, for the model to read."""

    type: Literal["function_call_output"]
    call_id: str
    output: Content
    id: str | None = None
    status: str | None = None


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class ReasoningInput(OpenAIBaseModel):
    """A reasoning item of an earlier turn, sent back with the conversation (as the Agents SDK does): its text goes
    to the next assistant turn as that turn's reasoning, which the model's chat template keeps or drops."""

    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: str | None = None


class OtherItem(OpenAIBaseModel):
    """An input item this server cannot serve (item_reference, tool calls of hosted tools): a 400."""

    type: str


InputItem = Annotated[
    Annotated[MessageInput, Tag("message")]
    | Annotated[FunctionCallInput, Tag("function_call")]
    | Annotated[FunctionCallOutputInput, Tag("function_call_output")]
    | Annotated[ReasoningInput, Tag("reasoning")]
    | Annotated[OtherItem, Tag("other")],
    _kind(("message", "function_call", "function_call_output", "reasoning"), default="message"),
]


Input = Annotated[Annotated[str, Tag("text")] | Annotated[list[InputItem], Tag("items")], Discriminator(_text_or_items)]


class FunctionTool(OpenAIBaseModel):
    """A function the model may call, in the Responses shape (flat, unlike chat's `{"function": {...}}`)."""

    type: Literal["function"]
    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class OtherTool(OpenAIBaseModel):
    """A hosted tool (web_search, file_search, ...) this server does not have: refused with a 400."""

    type: str


Tool = Annotated[Annotated[FunctionTool, Tag("function")] | Annotated[OtherTool, Tag("other")], _kind(("function",))]


class FunctionToolChoice(OpenAIBaseModel):
    type: Literal["function"]
    name: str


class TextFormat(OpenAIBaseModel):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    # "schema" is the field's name in OpenAI's API, but it shadows BaseModel.schema in pydantic.
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(OpenAIBaseModel):
    format: TextFormat | None = None


class ResponsesRequest(OpenAIBaseModel):
    """Body of POST /v1/responses."""

    background: bool | None = Field(default=None, description="not supported: true gets a 400")
    input: Input | None = None
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    metadata: dict[str, str] | None = None
    model: str
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    store: bool = True
    stream: bool = False
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    text: TextConfig | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionToolChoice | None = None
    tools: list[Tool] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    user: str | None = None
    # Server extra, as on /v1/chat/completions (vLLM's): keep generating past the end-of-sequence token.
    ignore_eos: bool = Field(default=False, description="keep generating past the end-of-sequence token")


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[TokenLogprobInfo] | None = None


ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputMessage(BaseModel):
    """The model's text, as an output item."""

    id: str = Field(default_factory=lambda: f"msg_{uuid.uuid4().hex}")
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: ItemStatus = "completed"
    content: list[OutputText] = Field(default_factory=list)


class FunctionCallItem(BaseModel):
    """A function call the model made, as an output item; the client answers it with a function_call_output."""

    id: str = Field(default_factory=lambda: f"fc_{uuid.uuid4().hex}")
    type: Literal["function_call"] = "function_call"
    status: ItemStatus = "completed"
    call_id: str
    name: str
    arguments: str


class ReasoningItem(BaseModel):
    """The model's thinking (Qwen3's `<think>` block), as an output item before its answer."""

    id: str = Field(default_factory=lambda: f"rs_{uuid.uuid4().hex}")
    type: Literal["reasoning"] = "reasoning"
    status: ItemStatus = "completed"
    summary: list[Any] = Field(default_factory=list)
    content: list[ReasoningText] = Field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content)


OutputItem = ReasoningItem | OutputMessage | FunctionCallItem


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0  # input tokens whose KV states came from the prefix cache


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponsesResponse(BaseModel):
    """A response object: the reply of POST /v1/responses, and the `response` of its lifecycle stream events."""

    id: str = Field(default_factory=lambda: f"resp_{uuid.uuid4().hex}")
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["in_progress", "completed", "incomplete", "failed"] = "completed"
    error: dict[str, Any] | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    truncation: Literal["auto", "disabled"] = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
