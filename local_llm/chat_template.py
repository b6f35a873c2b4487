"""The chat prompt of a request: what the model's chat template is given, in the shape that template expects.

    prompt = ChatPrompt.of(body)           # checks the messages (a 400 names the field)
    ids = engine.encode_chat(prompt)       # the tokenizer picks the rendering that fits its template

The one home for the prompt. A template that renders `tools` itself (Qwen2.5's, Qwen3's, Hermes-style ones) gets
the request's messages as OpenAI sends them, assistant `tool_calls` and `role: "tool"` turns included, the tools as
OpenAI tool objects and the client's `chat_template_kwargs` (`{"enable_thinking": false}`), as vLLM and
transformers pass them. Any other template gets plain role/content turns with the tools injected into the system
prompt (`tool_prompt`). Either way the model answers with `<tool_call>` blocks, which the same grammars constrain
and the same parser reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from autoqwen.local_llm.errors import InvalidRequest
from autoqwen.local_llm.protocol import ChatCompletionRequest, ToolCall
from autoqwen.local_llm.tool_prompt import message_text, render_messages

__all__ = ["ChatPrompt", "native_messages", "renders_tools"]

# apply_chat_template's own parameters and the variables it sets: a client's chat_template_kwargs may not override
# them, so a request cannot, say, swap the template or ask for tensors (and a name passed twice is no 500).
_RESERVED = frozenset(
    {
        "add_generation_prompt",
        "chat_template",
        "continue_final_message",
        "conversation",
        "conversations",
        "documents",
        "max_length",
        "messages",
        "padding",
        "return_assistant_tokens_mask",
        "return_dict",
        "return_tensors",
        "sanitize_control_tokens",
        "tokenize",
        "tokenizer_kwargs",
        "tools",
        "truncation",
    }
)


@dataclass(frozen=True)
class ChatPrompt(Sequence[Mapping[str, Any]]):
    """A request's messages for the model's chat template, in both shapes a template may want.

    As a sequence it is the injected format's plain role/content turns (what any template can render), so
    anything that takes a message list, `Engine.encode_chat` included, takes it; `Tokenizer.encode_chat` asks it
    for `template_inputs` instead, and gives a tool-aware template the native shape.
    """

    turns: list[dict[str, str]]
    native: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    template_kwargs: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(body: ChatCompletionRequest) -> ChatPrompt:
        """The prompt of `body`; raises InvalidRequest (naming the field) for messages or kwargs no template takes."""
        kwargs = dict(body.chat_template_kwargs or {})
        reserved = sorted(_RESERVED & kwargs.keys())
        if reserved:
            raise InvalidRequest(
                f"chat_template_kwargs: {', '.join(map(repr, reserved))} cannot be set by a request",
                param="chat_template_kwargs",
            )
        listed = bool(body.tools) and body.tool_choice != "none"
        tools = [tool.model_dump(exclude_none=True) for tool in body.tools or []] if listed else None
        return ChatPrompt(render_messages(body), native_messages(body), tools, kwargs)

    def template_inputs(self, *, native: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The messages and the other arguments of `apply_chat_template`: the native shape with the tools when
        `native` (the template renders tools), else the injected turns; the client's template kwargs either way."""
        if native:
            return [dict(m) for m in self.native], {**self.template_kwargs, "tools": self.tools}
        return [dict(m) for m in self.turns], dict(self.template_kwargs)

    @overload
    def __getitem__(self, index: int) -> dict[str, str]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, str]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, str] | list[dict[str, str]]:
        return self.turns[index]

    def __len__(self) -> int:
        return len(self.turns)

    def __iter__(self) -> Iterator[dict[str, str]]:
        return iter(self.turns)


def native_messages(body: ChatCompletionRequest) -> list[dict[str, Any]]:
    """The request's messages as tool-aware chat templates read them (transformers' chat format): text content,
    `developer` as `system`, assistant `tool_calls` with their arguments as objects, tool results with the id and
    name of the call they answer. Call ids are checked by `render_messages`, which `ChatPrompt.of` runs first."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, message in enumerate(body.messages):
        turn: dict[str, Any] = {
            "role": "system" if message.role == "developer" else message.role,
            "content": message_text(message, i),
        }
        if message.role == "assistant" and message.tool_calls:
            turn["tool_calls"] = [_native_call(call) for call in message.tool_calls]
            names.update((call.id, call.function.name) for call in message.tool_calls)
        if message.role == "assistant" and message.reasoning_content is not None:
            turn["reasoning_content"] = message.reasoning_content
        if message.role == "tool" and message.tool_call_id is not None:
            turn["tool_call_id"] = message.tool_call_id
            if message.tool_call_id in names:
                turn["name"] = names[message.tool_call_id]
        out.append(turn)
    return out


def _native_call(call: ToolCall) -> dict[str, Any]:
    """A call as templates render it: arguments as an object (templates write them with `tojson`); arguments that
    are not a JSON object (a call cut off by `max_tokens`) stay the string they were."""
    try:
        arguments: Any = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError:
        arguments = call.function.arguments
    if not isinstance(arguments, dict):
        arguments = call.function.arguments
    return {"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": arguments}}


def renders_tools(template: str | Mapping[str, str] | None) -> bool:
    """Whether a chat template (or any of a tokenizer's named templates) renders a `tools` variable itself."""
    if not template:
        return False
    from jinja2 import TemplateSyntaxError, meta
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    environment = ImmutableSandboxedEnvironment(extensions=["jinja2.ext.loopcontrols"])
    for text in template.values() if isinstance(template, Mapping) else [template]:
        try:
            found = "tools" in meta.find_undeclared_variables(environment.parse(text))
        except TemplateSyntaxError:  # a tag of transformers' own (`{% generation %}`): read the text instead
            found = re.search(r"\btools\b", text) is not None
        if found:
            return True
    return False
