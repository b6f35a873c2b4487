"""OpenAI tools for models without native function calling: prompt format, grammars, and parsing replies.

The format (Qwen2.5 / Hermes style, which small chat models have seen most):

* the tool list is appended to the system prompt, one signature per line (see `local_llm.signatures`);
* the model calls a tool by writing `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`;
* assistant turns that made calls are rendered back the same way, and tool results go back to the model as a
  user turn holding `<tool_response>\\n...\\n</tool_response>` blocks.

Decoding is constrained by an llguidance grammar (see `tool_grammar`): with `tool_choice` "auto" the model writes
free text until it opens `<tool_call>`, and from there on its JSON must name an offered tool and match that
tool's parameter schema; with "required" or a named tool the reply must be tool calls from the first token.
Tool names must come as the tokenizer's own tokens, and a text reply to tool results may not echo the protocol's
tags (`answer_grammar`); both measured with benchmarks/eval_tools.py.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from autoqwen.local_llm.errors import InvalidRequest
from autoqwen.local_llm.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    NamedToolChoice,
    ResponseFormat,
    Tool,
    ToolCall,
)
from autoqwen.local_llm.signatures import signature

__all__ = [
    "NAME_PREFIX",
    "TOOL_CLOSE",
    "TOOL_OPEN",
    "AutoToolChoice",
    "ToolCallStream",
    "ToolSelection",
    "answer_grammar",
    "channel_pairs",
    "conversation_urls",
    "json_grammar",
    "parse_reply",
    "render_messages",
    "resolve_auto",
    "select_tool",
    "tool_grammar",
    "tools_prompt",
]

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"
MAX_PARALLEL_CALLS = 3
# Compact, canonical JSON with the spacing of the prompt's example: a small model cannot wander off in whitespace.
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
NAME_PREFIX = '{"name": "'  # what a call writes just before the tool's name
# Text outside calls never holds the protocol's tags; a reply to tool results also opens with a visible
# character that is not `<` (so it cannot start by echoing a `<tool_response>` block under another spelling).
_PLAIN = r"/(.|\n)*/ & ~/(.|\n)*<\/?tool_(.|\n)*/"
_ANSWER = r"/[^<\s](.|\n)*/ & ~/(.|\n)*<\/?tool_(.|\n)*/"
_OPEN_NAME = json.dumps(NAME_PREFIX)  # the call's JSON around the name, as Lark string literals
_NAME_TO_ARGUMENTS = json.dumps('", "arguments": ')


def tools_prompt(tools: Sequence[Tool]) -> str:
    """The system-prompt section that tells the model which tools exist and how to call them."""
    listed = "\n".join(f"- {signature(t)}" for t in tools)
    return (
        "# Tools\n\nYou may call one or more of these functions to answer the user:\n"
        f"{listed}\n\n"
        "To call a function, write a JSON object with its name and arguments within <tool_call></tool_call> "
        "XML tags:\n"
        '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>\n\n'
        "When you get a <tool_response>, use it to answer the user in plain text."
    )


def render_messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    """The request's messages as plain role/content turns for the model's chat template, tools included."""
    out: list[dict[str, str]] = []
    call_ids: set[str] = set()
    for i, message in enumerate(body.messages):
        text = _text(message, i)
        if message.role == "tool":
            if message.tool_call_id not in call_ids:
                raise InvalidRequest(
                    f"messages.{i}.tool_call_id: {message.tool_call_id!r} does not answer any tool call of an "
                    "earlier assistant message",
                    param=f"messages.{i}.tool_call_id",
                )
            block = f"<tool_response>\n{text}\n</tool_response>"
            if out and out[-1].get("_tool"):  # consecutive results go back together, in one turn
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool": "1"})
            continue
        if message.role == "assistant" and message.tool_calls:
            blocks = [_call_block(call, i, j) for j, call in enumerate(message.tool_calls)]
            call_ids.update(call.id for call in message.tool_calls)
            text = "\n".join(([text] if text else []) + blocks)
        out.append({"role": "system" if message.role == "developer" else message.role, "content": text})
    for turn in out:
        turn.pop("_tool", None)
    if body.tools and body.tool_choice != "none":
        section = tools_prompt(body.tools)
        if out[0]["role"] == "system":
            out[0]["content"] = f"{out[0]['content']}\n\n{section}"
        else:
            out.insert(0, {"role": "system", "content": section})
    return out


def _text(message: ChatMessage, i: int) -> str:
    try:
        return message.text()
    except ValueError as exc:
        raise InvalidRequest(f"messages.{i}.content: {exc}", param=f"messages.{i}.content") from None


def _call_block(call: ToolCall, i: int, j: int) -> str:
    try:
        arguments = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        param = f"messages.{i}.tool_calls.{j}.function.arguments"
        raise InvalidRequest(f"{param}: not valid JSON ({exc})", param=param) from None
    payload = json.dumps({"name": call.function.name, "arguments": arguments}, ensure_ascii=False)
    return f"{TOOL_OPEN}\n{payload}\n{TOOL_CLOSE}"


AutoToolChoice = Literal["model", "call-then-answer"]


def resolve_auto(body: ChatCompletionRequest, policy: AutoToolChoice) -> ChatCompletionRequest:
    """Apply the server's policy for `tool_choice: "auto"` (the default whenever tools are sent).

    "model" leaves the choice to the model. "call-then-answer" is for small models that cannot decide (measured:
    SmolLM2-135M never opens a call by itself): a user turn must be answered with a tool call, and once tool
    results are in, the model answers them in text.
    """
    if policy == "model" or not body.tools or body.tool_choice not in ("auto", None):
        return body
    since_user = next((m for m in reversed(body.messages) if m.role in ("user", "tool")), None)
    choice = "none" if since_user is not None and since_user.role == "tool" else "required"
    return body.model_copy(update={"tool_choice": choice})


ToolSelection = Literal["channel", "model"]


def channel_pairs(body: ChatCompletionRequest) -> tuple[list[Tool], list[tuple[str, str]]] | None:
    """The tools to choose among, and per tool a (description, user message) text pair to score, when the
    request must make one call to one of several tools in reply to a user message; else None.

    Scoring log P(user message | tool description) ("noisy channel", Min et al. 2022) instead of letting the model
    write a name: measured on SmolLM2-135M over the 35 prompts of benchmarks/eval_tools.py, 88.6 % right tool vs
    71.4 % for the name the model writes.
    """
    tools = offered_tools(body)
    if body.tool_choice != "required" or len(tools) < 2 or body.parallel_tool_calls:
        return None  # a named or single tool is chosen already; parallel calls may mix tools
    if not body.messages or body.messages[-1].role != "user":
        return None
    question = _text(body.messages[-1], len(body.messages) - 1).strip()
    if not question:
        return None
    head = "Tool: {name} - {description}\nA user request this tool answers:"
    texts = [head.format(name=t.function.name, description=t.function.description or "") for t in tools]
    return tools, [(text, " " + question) for text in texts]


def select_tool(body: ChatCompletionRequest, tool: Tool) -> ChatCompletionRequest:
    """`body` with tool_choice naming `tool`."""
    choice = NamedToolChoice.model_validate({"type": "function", "function": {"name": tool.function.name}})
    return body.model_copy(update={"tool_choice": choice})


def offered_tools(body: ChatCompletionRequest) -> list[Tool]:
    """The tools the model may call under `tool_choice`; a named tool that was not offered is a 400."""
    tools = list(body.tools or [])
    choice = body.tool_choice
    if choice is None or isinstance(choice, str):
        if choice in ("required",) and not tools:
            raise InvalidRequest("tool_choice: 'required' needs at least one tool in tools", param="tool_choice")
        return [] if choice == "none" else tools
    named = [t for t in tools if t.function.name == choice.function.name]
    if not named:
        offered = ", ".join(t.function.name for t in tools) or "none"
        raise InvalidRequest(
            f"tool_choice: the function {choice.function.name!r} is not in tools (offered: {offered})",
            param="tool_choice",
        )
    return named


def _call_rule(tool: Tool, tokenize: Callable[[str], Sequence[int] | None] | None, urls: Sequence[str] = ()) -> str:
    """One tool's call, `{"name": NAME, "arguments": ARGS}`, in the canonical JSON style of the prompt.

    With `tokenize`, the name must come as the tokenizer's own tokens: a small model that may spell a name in
    any pieces ("c" "al" "cul" ...) picks the wrong tool far more often than one choosing among the names as it
    has always seen them tokenized.
    """
    name = tool.function.name
    ids = tokenize(name) if tokenize else None
    spelled = " ".join(f"<[{t}]>" for t in ids) if ids else json.dumps(name)
    arguments = json.dumps({**_copy_urls(tool.function.parameters, urls), "x-guidance": _JSON_STYLE})
    return f'{_OPEN_NAME} {spelled} {_NAME_TO_ARGUMENTS} %json {arguments} "}}"'


_URL = re.compile(r"https?://[^\s<>\"'`)\]}\\]+")


def conversation_urls(body: ChatCompletionRequest) -> list[str]:
    """The http(s) URLs written in the conversation's messages, in order of appearance, each once."""
    found: dict[str, None] = {}
    for text in _strings([message.model_dump(mode="json") for message in body.messages]):
        for url in _URL.findall(text):
            found.setdefault(url.rstrip(".,;:!?"), None)
    return list(found)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _copy_urls(schema: dict[str, Any], urls: Sequence[str]) -> dict[str, Any]:
    """`schema` with each string property of format "uri" limited to the URLs of the conversation, if it has any.

    Measured on SmolLM2-135M: asked to fetch "the link of the first paper" listed a turn earlier, it wrote a URL of
    its own invention every time; choosing among the conversation's URLs, it fetches one that exists.
    """
    if not urls or not isinstance(schema, dict):
        return schema
    if schema.get("type") == "string" and schema.get("format") in ("uri", "url"):
        return {key: value for key, value in schema.items() if key not in ("type", "format", "pattern")} | {
            "enum": list(urls)
        }
    out = dict(schema)
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: _copy_urls(sub, urls) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = _copy_urls(schema["items"], urls)
    return out


def tool_grammar(
    body: ChatCompletionRequest,
    *,
    special_open: bool = False,
    tokenize: Callable[[str], Sequence[int] | None] | None = None,
) -> str | None:
    """The llguidance (Lark) grammar for a request with tools, or None when no call is possible.

    `tokenize` (a tool name to the model's token ids where it follows `{"name": "`, or None when they cannot be
    told apart) makes each name come out as its canonical tokens.
    """
    tools = offered_tools(body)
    if not tools:
        return None
    open_ = TOOL_OPEN if special_open else json.dumps(TOOL_OPEN)
    # Several calls only when asked for explicitly: small models otherwise repeat the same call until the cap.
    calls = MAX_PARALLEL_CALLS if body.parallel_tool_calls else 1
    more = ' ("\\n" block)?' * (calls - 1)
    rules = [
        f"block: {open_} call",
        f'call: "\\n" ({" | ".join(f"call_{i}" for i in range(len(tools)))}) "\\n{TOOL_CLOSE}"',
        *(f"call_{i}: {_call_rule(tool, tokenize, conversation_urls(body))}" for i, tool in enumerate(tools)),
    ]
    if body.tool_choice in ("auto", None):
        # Free text until the model opens a call: the lazy lexeme ends the text at the opening tag.
        text = _ANSWER if _has_results(body) else _PLAIN
        rules = [f"start: TEXT | lead call{more}", f"lead[lazy]: PLAIN {open_}", *rules, f"TEXT: {text}"]
        rules.append(f"PLAIN: {_PLAIN}")
    else:
        rules = [f"start: block{more}", *rules]
    return "%llguidance {}\n" + "\n".join(rules) + "\n"


def answer_grammar(body: ChatCompletionRequest) -> str | None:
    """The grammar of a text reply to tool results (no tool may be called), or None for other requests.

    Measured on SmolLM2-135M: told to answer after a `<tool_response>` turn, the model echoes the block back
    (`<tool_response>\\n...`) instead of answering. A reply to tool results is therefore plain text that starts
    with a visible character other than `<` and never holds the tags of the call protocol.
    """
    if not _has_results(body) or body.response_format is not None or offered_tools(body):
        return None
    return f"%llguidance {{}}\nstart: ANSWER\nANSWER: {_ANSWER}\n"


def _has_results(body: ChatCompletionRequest) -> bool:
    """Whether the model is about to read tool results: the last message that is not the assistant's is one."""
    last = next((m for m in reversed(body.messages) if m.role != "assistant"), None)
    return last is not None and last.role == "tool"


def json_grammar(response_format: ResponseFormat | None) -> str | None:
    """The grammar for `response_format` json_object / json_schema, or None for text."""
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object" or response_format.json_schema is None:
        schema: dict[str, Any] = {"type": "object"}
    else:
        schema = response_format.json_schema.json_schema or {"type": "object"}
    return f"%llguidance {{}}\nstart: %json {json.dumps({**schema, 'x-guidance': _JSON_STYLE})}\n"


class ToolCallStream:
    """Splits generated text, as it streams, into content pieces and complete tool calls.

    Text that may be the start of `<tool_call>` is held back until it is clear; a call that never closes, or
    whose JSON does not parse (possible only without constraints), is given back as plain text.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._in_call = False
        self.calls: list[ToolCall] = []

    def feed(self, piece: str) -> Iterator[str | ToolCall]:
        """Add generated text; yield what can be sent now."""
        self._buffer += piece
        while True:
            if self._in_call:
                end = self._buffer.find(TOOL_CLOSE)
                if end < 0:
                    return
                body, self._buffer = self._buffer[:end], self._buffer[end + len(TOOL_CLOSE) :]
                self._in_call = False
                call = _parse_call(body)
                if call is None:
                    yield f"{TOOL_OPEN}{body}{TOOL_CLOSE}"
                elif not any(c.function == call.function for c in self.calls):  # a repeated call adds nothing
                    self.calls.append(call)
                    yield call
                continue
            start = self._buffer.find(TOOL_OPEN)
            if start >= 0:
                text, self._buffer = self._buffer[:start], self._buffer[start + len(TOOL_OPEN) :]
                self._in_call = True
                if text.strip() or not self.calls:
                    yield from [text] if text else []
                continue
            keep = next((k for k in range(len(TOOL_OPEN) - 1, 0, -1) if self._buffer.endswith(TOOL_OPEN[:k])), 0)
            text, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep :]
            if text and (text.strip() or not self.calls):
                yield text
            return

    def close(self) -> Iterator[str]:
        """The end of generation: give back whatever is still held."""
        rest = (TOOL_OPEN if self._in_call else "") + self._buffer
        self._buffer, self._in_call = "", False
        if rest.strip() or (rest and not self.calls):
            yield rest


def _parse_call(body: str) -> ToolCall | None:
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        return None
    if isinstance(data, list) and len(data) == 1:  # some models wrap the call in a list
        data = data[0]
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    return ToolCall(
        id=f"call_{secrets.token_hex(12)}",
        function=FunctionCall(name=data["name"], arguments=json.dumps(arguments, ensure_ascii=False)),
    )


def parse_reply(text: str) -> tuple[str | None, list[ToolCall]]:
    """A whole reply split into its content (None when it only made calls) and its tool calls."""
    stream = ToolCallStream()
    pieces = [p for p in [*stream.feed(text), *stream.close()] if isinstance(p, str)]
    content = "".join(pieces).strip()
    return (content or None) if stream.calls else "".join(pieces), stream.calls
