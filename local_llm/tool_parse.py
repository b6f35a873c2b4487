"""Model text back into OpenAI's shape: reasoning, content, and the tool calls written as `<tool_call>` blocks.

The same splitter serves a stream (`ReplyStream`, piece by piece) and a whole reply (`split_reply`), so both
return the same reasoning, content and calls; protocol markup never reaches `content`. A reasoning model's
`<think>` block is split off first (`reasoning.ReasoningStream`), and calls are read from the answer after it.
A call cut off before its end (by `max_tokens`) is returned as OpenAI returns one: a tool call whose `arguments`
hold the JSON written so far, with `finish_reason: "length"`; one cut off before its name was complete is dropped.
"""

from __future__ import annotations

import json
import re
import secrets
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from autoqwen.local_llm.protocol import FunctionCall, ToolCall
from autoqwen.local_llm.reasoning import Reasoning, ReasoningStream
from autoqwen.local_llm.tool_prompt import TOOL_CLOSE, TOOL_OPEN

__all__ = ["ReplyStream", "ToolCallStream", "call_arguments", "parse_reply", "split_reply"]


class ToolCallStream:
    """Splits generated text, as it streams, into content pieces and complete tool calls.

    Text that may be the start of `<tool_call>` is held back until it is clear. A call whose JSON does not parse
    (cut off, or without constraints) becomes a call with its arguments as written when its name can be read, and
    is dropped when it cannot: its tags and JSON never reach the content. A call that repeats an earlier one of
    the reply adds nothing and is dropped: the same tool with the same values of its `required` parameters (only
    options changed), or the same arguments for a tool without required parameters; so is a call cut off after
    complete ones (the reply is whole without it). After a dropped call the reply is over (`ended`): a small model
    that pads a reply with one invented call goes on with more, and the server stops generating there.

    With `times_written` (how many times the user wrote a value), a call that brings no value of the user's that
    the earlier calls (to its tool, with `by_tool`: a reply of one call to each of several tools) did not use is
    padding too, and a list argument repeats a value of the user's no more times than the user wrote it:
    SmolLM2-135M wrote `"cuisine": ["Seafood", "Seafood", ...]` until the list's bound.

    With `further` (the calls to add for a reply's calls, see `listed_calls`), a reply that ends after whole calls
    gets those too.
    """

    def __init__(
        self,
        required: Mapping[str, Sequence[str]] | None = None,
        times_written: Callable[[object], int] | None = None,
        further: Callable[[list[ToolCall]], list[ToolCall]] | None = None,
        *,
        by_tool: bool = False,
    ) -> None:
        self._buffer = ""
        self._in_call = False
        self._required = required or {}
        self._times = times_written
        self._further = further
        self._by_tool = by_tool
        self.calls: list[ToolCall] = []
        self.ended = False  # a call was dropped: what follows is padding too, generation may stop

    def feed(self, piece: str) -> Iterator[str | ToolCall]:
        """Add generated text; yield what can be sent now (nothing once the reply has `ended`)."""
        if self.ended:
            return
        self._buffer += piece
        while True:
            if self._in_call:
                end = self._buffer.find(TOOL_CLOSE)
                if end < 0:
                    return
                body, self._buffer = self._buffer[:end], self._buffer[end + len(TOOL_CLOSE) :]
                self._in_call = False
                call = self._without_repeats(_parse_call(body)) or _partial_call(body)
                if call is not None and not self._adds_nothing(call):
                    self.calls.append(call)
                    yield call
                elif call is not None:
                    self.ended = True
                    self._buffer = ""
                    return
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

    def close(self, cut: bool = False) -> Iterator[str | ToolCall]:
        """The end of generation: a call left open (cut off) as far as it goes, or the text still held; the further
        calls unless the reply was `cut` (by `max_tokens`) before it `ended`."""
        rest, in_call = self._buffer, self._in_call
        self._buffer, self._in_call = "", False
        if in_call:
            if not self.calls and (call := _partial_call(rest)) is not None:
                self.calls.append(call)
                yield call
            return
        if rest.strip() or (rest and not self.calls):
            yield rest
        if self.calls and self._further is not None and (not cut or self.ended):  # ended: whole, a padding call cut
            more = self._further(self.calls)
            self.calls.extend(more)
            yield from more

    def _adds_nothing(self, call: ToolCall) -> bool:
        """Whether `call` repeats an earlier call of the reply, or (with `times_written`) brings no value of the
        user's that the earlier calls (to its tool, `by_tool`) did not use: "add 12 and 7" then "subtract 12 and 7"
        is padding, "Oslo" then "Cairo" is not, nor (`by_tool`) restaurants in Chicago then the weather there."""
        if any(self._same(c, call) for c in self.calls):
            return True
        earlier = [c for c in self.calls if not self._by_tool or c.function.name == call.function.name]
        if not earlier or self._times is None:
            return False
        used = {json.dumps(v) for c in earlier for v in _leaves(call_arguments(c))}
        return not any(self._times(v) for v in _leaves(call_arguments(call)) if json.dumps(v) not in used)

    def _without_repeats(self, call: ToolCall | None) -> ToolCall | None:
        """`call` with each list argument's items of the user's kept only as many times as the user wrote them."""
        if call is None or self._times is None or (arguments := call_arguments(call)) is None:
            return call
        times = self._times

        def trimmed(value: object) -> object:
            if isinstance(value, dict):
                return {key: trimmed(item) for key, item in value.items()}
            if not isinstance(value, list):
                return value
            seen: Counter[str] = Counter()
            kept = []
            for item in value:
                key = json.dumps(item)
                seen[key] += 1
                if (limit := times(item)) == 0 or seen[key] <= limit:
                    kept.append(trimmed(item))
            return kept

        if (changed := trimmed(arguments)) == arguments:
            return call
        return call.model_copy(
            update={
                "function": FunctionCall(name=call.function.name, arguments=json.dumps(changed, ensure_ascii=False))
            }
        )

    def _same(self, earlier: ToolCall, call: ToolCall) -> bool:
        if earlier.function.name != call.function.name:
            return False
        if earlier.function.arguments == call.function.arguments:
            return True
        required = self._required.get(call.function.name)
        first, second = call_arguments(earlier), call_arguments(call)
        if not required or first is None or second is None:
            return False
        return all(first.get(key) == second.get(key) for key in required)


def _leaves(value: object) -> Iterator[object]:
    """The strings, numbers and booleans in a call's arguments."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif value is not None:
        yield value


def call_arguments(call: ToolCall) -> dict[str, Any] | None:
    """A call's arguments as an object, or None when they are not JSON of an object."""
    try:
        value = json.loads(call.function.arguments)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


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


# The start of a call as the prompt shows it, up to its arguments: the name can be read from a call cut off later.
_CALL_HEAD = re.compile(
    r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)+)"\s*,\s*"(?:arguments|parameters)"\s*:\s*(.*)', re.DOTALL
)


def _partial_call(body: str) -> ToolCall | None:
    """A call whose JSON does not parse, with its arguments as written; None when its name cannot be read."""
    head = _CALL_HEAD.match(body)
    if head is None:
        return None
    try:
        name = json.loads(f'"{head.group(1)}"')
    except json.JSONDecodeError:
        return None
    arguments = head.group(2).rstrip()
    return ToolCall(id=f"call_{secrets.token_hex(12)}", function=FunctionCall(name=name, arguments=arguments))


class ReplyStream:
    """A reply split, as it streams, into `Reasoning` pieces, content pieces and complete tool calls: through
    `thinking` first (for a reasoning model), then the answer through `calls` (when the reply may hold calls).
    Without either, text passes as it comes."""

    def __init__(self, thinking: ReasoningStream | None = None, calls: ToolCallStream | None = None) -> None:
        self._thinking, self._calls = thinking, calls

    @property
    def calls(self) -> list[ToolCall]:
        """The calls read so far."""
        return self._calls.calls if self._calls is not None else []

    @property
    def ended(self) -> bool:
        """Whether the reply is over (a call was dropped, see `ToolCallStream`): generation may stop."""
        return self._calls is not None and self._calls.ended

    def feed(self, piece: str) -> Iterator[str | Reasoning | ToolCall]:
        """Add generated text; yield what can be sent now."""
        if not self.ended:
            yield from self._route(self._thinking.feed(piece) if self._thinking is not None else [piece])

    def close(self, cut: bool = False) -> Iterator[str | Reasoning | ToolCall]:
        """The end of generation (`cut`: by `max_tokens`): whatever was held back."""
        if self._thinking is not None:
            yield from self._route(self._thinking.close())
        if self._calls is not None:
            yield from self._calls.close(cut)

    def _route(self, items: Iterator[Reasoning | str] | list[str]) -> Iterator[str | Reasoning | ToolCall]:
        for item in items:
            if isinstance(item, Reasoning) or self._calls is None:
                yield item
            elif not self._calls.ended:
                yield from self._calls.feed(item)


def split_reply(
    text: str, stream: ReplyStream | None = None, cut: bool = False
) -> tuple[str | None, str | None, list[ToolCall]]:
    """A whole reply (`cut`: by `max_tokens`) split into its reasoning (None when there is none), its content and
    its tool calls, by `stream` (a fresh ReplyStream, set up for the request) or a plain one. The content is None
    when the reply only made calls or only thought, else as written (around calls, stripped)."""
    stream = stream or ReplyStream()
    items = [*stream.feed(text), *stream.close(cut)]
    reasoning = "".join(item.text for item in items if isinstance(item, Reasoning)) or None
    text = "".join(item for item in items if isinstance(item, str))
    if stream.calls:
        return reasoning, text.strip() or None, stream.calls
    return reasoning, None if reasoning is not None and not text else text, stream.calls


def parse_reply(text: str, stream: ToolCallStream | None = None) -> tuple[str | None, list[ToolCall]]:
    """A whole reply split into its content (None when it only made calls) and its tool calls, by `stream` (a
    fresh ToolCallStream, set up for the request) or a plain one."""
    _, content, calls = split_reply(text, ReplyStream(calls=stream or ToolCallStream()))
    return content, calls
