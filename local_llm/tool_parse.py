"""Model text back into OpenAI's shape: content, and the tool calls written as `<tool_call>` blocks.

The same splitter serves a stream (`ToolCallStream`, piece by piece) and a whole reply (`parse_reply`), so both
return the same content and calls; protocol markup never reaches `content`.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

from autoqwen.local_llm.protocol import FunctionCall, ToolCall
from autoqwen.local_llm.tool_prompt import TOOL_CLOSE, TOOL_OPEN

__all__ = ["ToolCallStream", "parse_reply"]


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
