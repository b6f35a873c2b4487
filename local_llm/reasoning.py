"""A reasoning model's thinking (`<think>...</think>`, Qwen3's), kept apart from its answer.

    start = thinking_start(engine.decode(prompt[-8:]))     # "inside", "closed" or "optional"
    grammar = think_first(grammar, start)                  # the reply's constraints start after `</think>`
    for item in ReasoningStream(start).feed(piece): ...    # Reasoning(text) or answer text

Qwen3 thinks in a `<think>` block before it answers (or calls tools); `enable_thinking: false` makes its template
close an empty block in the prompt, and thinking-only releases open the block in the prompt. So where the reply
starts is read from the prompt's end. The block goes to `reasoning_content` (as vLLM and llama.cpp return it),
never to `content`. Constrained decoding leaves the thinking free and applies the reply's grammar (tool calls,
json, answers) from `</think>` on, as vLLM's structured outputs do for reasoning models.

Only models whose tokenizer has both tags as tokens are read this way: in any other model's text they are text.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["THINK_CLOSE", "THINK_OPEN", "Reasoning", "ReasoningStream", "ThinkStart", "think_first", "thinking_start"]

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

# Where a reply starts: inside a block the prompt opened, after a block the prompt closed (thinking is off), or
# where the model may open one.
ThinkStart = Literal["inside", "closed", "optional"]


@dataclass(frozen=True)
class Reasoning:
    """A piece of the model's thinking, as a stream yields it apart from answer text."""

    text: str


def thinking_start(prompt_end: str) -> ThinkStart:
    """Where the reply to a prompt ending in `prompt_end` (its last few tokens' text) starts."""
    end = prompt_end.rstrip()
    if end.endswith(THINK_OPEN):
        return "inside"
    return "closed" if end.endswith(THINK_CLOSE) else "optional"


class ReasoningStream:
    """Splits generated text, as it streams, into `Reasoning` pieces and answer text.

    A reply that starts with `<think>` (or inside a block the prompt opened) is reasoning up to `</think>`; the
    whitespace around the reasoning and between the block and the answer is dropped (Qwen3 writes
    `<think>\\n...\\n</think>\\n\\n`), and text that may be the start of a tag is held back until it is clear. A
    reply that does not open a block is all answer, as written.
    """

    def __init__(self, start: ThinkStart = "optional") -> None:
        self._state: Literal["start", "inside", "gap", "answer"] = "inside" if start == "inside" else "start"
        if start == "closed":
            self._state = "answer"
        self._buffer = ""
        self._thought = False  # some reasoning went out already (so inner whitespace is kept)

    def feed(self, piece: str) -> Iterator[Reasoning | str]:
        """Add generated text; yield what can be sent now."""
        if self._state == "answer":
            if piece:
                yield piece
            return
        self._buffer += piece
        if self._state == "start":
            head = self._buffer.lstrip()
            if not head or (THINK_OPEN.startswith(head) and head != THINK_OPEN):
                return  # may still open a block
            if not head.startswith(THINK_OPEN):
                self._state, text, self._buffer = "answer", self._buffer, ""
                yield text
                return
            self._state, self._buffer = "inside", head[len(THINK_OPEN) :]
        if self._state == "inside":
            end = self._buffer.find(THINK_CLOSE)
            if end < 0:
                yield from self._reasoning(self._buffer, final=False)
                return
            text, self._buffer = self._buffer[:end], self._buffer[end + len(THINK_CLOSE) :]
            yield from self._reasoning(text, final=True)
            self._state = "gap"
        if self._state == "gap":
            text = self._buffer.lstrip()
            if text:
                self._state, self._buffer = "answer", ""
                yield text

    def close(self) -> Iterator[Reasoning | str]:
        """The end of generation: reasoning cut off inside its block, or text held back at the start."""
        rest, state = self._buffer, self._state
        self._buffer, self._state = "", "answer"
        if state == "inside":
            yield from self._reasoning(rest, final=True)
        elif state == "start" and rest:
            yield rest

    def _reasoning(self, text: str, *, final: bool) -> Iterator[Reasoning]:
        """Reasoning text up to what is held back: trailing whitespace (dropped at the end of the block) and, unless
        `final`, a possible start of `</think>`; leading whitespace of the block is dropped."""
        if not self._thought:
            text = text.lstrip()
        keep = 0 if final else _partial_tag(text, THINK_CLOSE)
        body = text[: len(text) - keep]
        sent = body.rstrip()
        if not final:
            self._buffer = text[len(sent) :]
        if sent:
            self._thought = True
            yield Reasoning(sent)


def _partial_tag(text: str, tag: str) -> int:
    """The length of the longest end of `text` that is a proper start of `tag`."""
    return next((k for k in range(len(tag) - 1, 0, -1) if text.endswith(tag[:k])), 0)


def think_first(grammar: str | None, start: ThinkStart) -> str | None:
    """`grammar` (an llguidance grammar whose rule `start` is the reply) preceded by the thinking block where the
    reply may open one (`optional`) or starts inside one (`inside`); unchanged when thinking is `closed` or there
    is no grammar (free text needs no room made for thinking). The tags are the tokenizer's own tokens."""
    if grammar is None or start == "closed":
        return grammar
    head, found, rest = grammar.partition("\nstart:")
    if not found:
        raise ValueError("the grammar has no start rule")
    block = f'THOUGHT {THINK_CLOSE} "\\n\\n"'
    block = block if start == "inside" else f"({THINK_OPEN} {block})?"
    # Text of the block may not spell the closing tag out of other tokens: the tag ends it, as a token.
    thought = r"THOUGHT: /(.|\n)*/ & ~/(.|\n)*<\/think>(.|\n)*/"
    return f"{head}\nstart: {block} reply\nreply:{rest.rstrip()}\n{thought}\n"
