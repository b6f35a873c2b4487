"""Keep what an agent sends inside the model's context window (microsoft/autogen#4024: a conversation that outgrows
the window fails the run with a 400).

    context = WindowedContext(window, agent="writer", fixed_text=system_message, reserve=200)
    AssistantAgent("writer", client, model_context=context)

The agent keeps its whole history; what it sends is trimmed to fit: long tool results are shortened first (oldest
first), then the oldest messages are left out (a tool call with its results), and the latest turn is always kept
(cut in the middle if it alone is too long). `WindowedClient` is the safety net: when the server still answers
"context length exceeded", it counts more carefully from then on, trims again and retries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from autogen_core import FunctionCall
from autogen_core.model_context import ChatCompletionContext
from autogen_core.models import (
    AssistantMessage,
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from autogen_ext.models.openai import OpenAIChatCompletionClient

from autoqwen.agents.repeats import MAX_SAME_CALLS, repeated_calls
from autoqwen.agents.window import MESSAGE_OVERHEAD, ContextWindow, TokenEstimate

__all__ = ["Trim", "WindowedClient", "WindowedContext", "fit_messages"]

_TOOL_RESULT_KEEP = 200  # tokens of a tool result kept when results are shortened
_RETRIES = 3  # prompts re-trimmed after a "context length exceeded" answer


@dataclass(frozen=True)
class Trim:
    """What fitting a conversation into the window took: messages left out, tool results shortened, texts cut."""

    dropped: int = 0
    shortened: int = 0
    cut: int = 0

    def __bool__(self) -> bool:
        return bool(self.dropped or self.shortened or self.cut)

    def describe(self, window: int) -> str:
        """One sentence for the transcript."""
        parts = []
        if self.dropped:
            parts.append(f"{self.dropped} oldest message{'s' * (self.dropped != 1)} left out")
        if self.shortened:
            parts.append(f"{self.shortened} tool result{'s' * (self.shortened != 1)} shortened")
        if self.cut:
            parts.append(f"{self.cut} long message{'s' * (self.cut != 1)} cut in the middle")
        return f"context trimmed to fit the model's {window}-token window: {', '.join(parts)}"


def fit_messages(messages: Sequence[LLMMessage], budget: int, estimate: TokenEstimate) -> tuple[list[LLMMessage], Trim]:
    """`messages` trimmed to `budget` estimated tokens; system messages and the latest turn are kept."""
    kept = list(messages)
    if _total(kept, estimate) <= budget:
        return kept, Trim()
    shortened = _shorten_tool_results(kept, budget, estimate)
    dropped = 0
    tail = _latest_turn(kept)
    while _total(kept, estimate) > budget:
        oldest = next((i for i in range(tail) if not isinstance(kept[i], SystemMessage)), None)
        if oldest is None:
            break
        del kept[oldest]
        dropped, tail = dropped + 1, tail - 1
        # Results without the call that asked for them are refused by OpenAI servers: they go with it.
        while oldest < tail and isinstance(kept[oldest], FunctionExecutionResultMessage):
            del kept[oldest]
            dropped, tail = dropped + 1, tail - 1
    cut = 0
    while _total(kept, estimate) > budget and cut < len(kept):
        if not _cut_longest(kept, _total(kept, estimate) - budget, estimate):
            break
        cut += 1
    return kept, Trim(dropped=dropped, shortened=shortened, cut=cut)


class WindowedContext(ChatCompletionContext):
    """An agent's model context that hands the model only what fits its window, and reports each new trim."""

    def __init__(
        self,
        window: ContextWindow,
        *,
        agent: str,
        fixed_text: str = "",
        reserve: int = 0,
        initial_messages: list[LLMMessage] | None = None,
    ) -> None:
        super().__init__(initial_messages)
        self.window = window
        self.agent = agent
        self.fixed_text = fixed_text  # sent with every prompt besides the messages: system message, tool schemas
        self.reserve = reserve
        self._reported = Trim()

    def budget(self) -> int:
        """Tokens the messages may take: the window less the reply, the fixed text and a margin."""
        fixed = self.window.estimate.tokens(self.fixed_text) + MESSAGE_OVERHEAD if self.fixed_text else 0
        return max(1, self.window.tokens - self.reserve - fixed - MESSAGE_OVERHEAD)

    async def get_messages(self) -> list[LLMMessage]:
        """The history as it fits the window now."""
        kept, trim = fit_messages(self._messages, self.budget(), self.window.estimate)
        if trim.dropped > self._reported.dropped or trim.shortened > self._reported.shortened or trim.cut:
            self.window.report(self.agent, trim.describe(self.window.tokens))
        self._reported = trim
        return kept

    async def clear(self) -> None:
        """Forget the history and the trims reported."""
        await super().clear()
        self._reported = Trim()


class WindowedClient(OpenAIChatCompletionClient):
    """An OpenAI client that calibrates the run's token estimate from each reply and, when the server still says
    the prompt is too long, trims it harder and retries (the selector's prompt included). A reply that repeats a
    call made twice with the same result is asked for again without tools (`repeats.py`)."""

    def __init__(self, *, window: ContextWindow, agent: str, reserve: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._window = window
        self._agent = agent
        self._reserve = reserve

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        **kwargs: Any,
    ) -> CreateResult:
        """Create a completion, re-trimming `messages` when the server says they do not fit."""
        estimate = self._window.estimate
        schemas = json.dumps([t.schema if isinstance(t, Tool) else t for t in tools], default=str) if tools else ""
        for attempt in range(_RETRIES + 1):
            try:
                result = await super().create(messages, tools=tools, **kwargs)
            except openai.BadRequestError as exc:
                if attempt == _RETRIES or not _context_exceeded(exc):
                    raise
                self._learn(exc, messages, schemas)
                budget = self._window.tokens - self._reserve - estimate.tokens(schemas) - MESSAGE_OVERHEAD
                messages, trim = fit_messages(messages, max(1, budget), estimate)
                if trim:
                    self._window.report(self._agent, trim.describe(self._window.tokens) + " (after the server refused)")
                continue
            estimate.calibrate(_sent_bytes(messages, schemas), len(messages), result.usage.prompt_tokens)
            if tools and isinstance(result.content, list) and (same := repeated_calls(messages, result.content)):
                names = ", ".join(sorted({call.name for call in same}))
                self._window.report(
                    self._agent,
                    f"{names} already called {MAX_SAME_CALLS} times with these arguments and the same result: "
                    "answered from the results instead of calling again",
                )
                return await super().create(messages, tools=tools, **{**kwargs, "tool_choice": "none"})
            return result
        raise AssertionError("unreachable")  # the loop returns or raises

    def _learn(self, exc: openai.BadRequestError, messages: Sequence[LLMMessage], schemas: str) -> None:
        """Take the window and the prompt's size from the server's refusal where it says them, else be warier."""
        text = str(exc)
        window = _WINDOW_SAID.search(text)
        if window and 0 < int(window.group(1)) < self._window.tokens:
            self._window.tokens = int(window.group(1))
        used = _USED_SAID.search(text)
        before = self._window.estimate.bytes_per_token
        if used:
            self._window.estimate.calibrate(_sent_bytes(messages, schemas), len(messages), int(used.group(1)))
        if self._window.estimate.bytes_per_token >= before:
            self._window.estimate.shrink()


# How OpenAI, vLLM and local_llm word it: "maximum context length is 512 tokens, but the messages use 600 tokens",
# "... However, your messages resulted in 600 tokens", "... However, you requested 600 tokens".
_WINDOW_SAID = re.compile(r"maximum context length is (\d+) tokens", re.IGNORECASE)
_USED_SAID = re.compile(r"(?:messages use|resulted in|requested) (\d+) tokens", re.IGNORECASE)


def _sent_bytes(messages: Sequence[LLMMessage], schemas: str) -> int:
    return sum(len(_text(m).encode("utf-8")) for m in messages) + len(schemas.encode("utf-8"))


def _context_exceeded(exc: openai.BadRequestError) -> bool:
    text = str(exc).lower()
    return exc.code == "context_length_exceeded" or "context length" in text or "context window" in text


def _total(messages: Sequence[LLMMessage], estimate: TokenEstimate) -> int:
    return sum(estimate.tokens(_text(m)) + MESSAGE_OVERHEAD for m in messages)


def _text(message: LLMMessage) -> str:
    """What of a message reaches the prompt, as text (images count for nothing here)."""
    content = message.content
    text = content if isinstance(content, str) else "\n".join(_item_text(item) for item in content)
    if isinstance(message, AssistantMessage) and message.thought:
        text += message.thought
    return text


def _item_text(item: object) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, FunctionCall):
        return f"{item.name}({item.arguments})"
    if isinstance(item, FunctionExecutionResult):
        return item.content
    return ""


def _latest_turn(messages: list[LLMMessage]) -> int:
    """Where the latest turn starts: the last message, with the tool call its results answer."""
    start = len(messages) - 1
    while start > 0 and isinstance(messages[start], FunctionExecutionResultMessage):
        start -= 1
    return max(start, 0)


def _shorten_tool_results(messages: list[LLMMessage], budget: int, estimate: TokenEstimate) -> int:
    keep_bytes = int(_TOOL_RESULT_KEEP * estimate.bytes_per_token)
    shortened = 0
    for i, message in enumerate(messages):
        if _total(messages, estimate) <= budget:
            break
        if not isinstance(message, FunctionExecutionResultMessage):
            continue
        results = [
            r.model_copy(update={"content": _middle_cut(r.content, keep_bytes)})
            if len(r.content.encode("utf-8")) > keep_bytes
            else r
            for r in message.content
        ]
        if results != message.content:
            messages[i] = FunctionExecutionResultMessage(content=results)
            shortened += 1
    return shortened


def _cut_longest(messages: list[LLMMessage], excess: int, estimate: TokenEstimate) -> bool:
    """Cut the middle of the longest plain-text message by `excess` tokens (and a little more); False if none."""
    candidates = [
        i
        for i, m in enumerate(messages)
        if isinstance(m, SystemMessage | UserMessage | AssistantMessage) and isinstance(m.content, str)
    ]
    if not candidates:
        return False
    i = max(candidates, key=lambda k: len(_text(messages[k])))
    content = messages[i].content
    assert isinstance(content, str)
    size = len(content.encode("utf-8"))
    keep = size - int((excess + 16) * estimate.bytes_per_token) - 80  # the marker's own length
    if keep <= 0 or size < 200:
        return False
    messages[i] = messages[i].model_copy(update={"content": _middle_cut(content, keep)})
    return True


def _middle_cut(text: str, keep_bytes: int) -> str:
    """`text` with its middle replaced by a marker, keeping about `keep_bytes` bytes of its start and end."""
    data = text.encode("utf-8")
    if len(data) <= keep_bytes:
        return text
    head = data[: keep_bytes // 2].decode("utf-8", errors="ignore")
    tail = data[len(data) - keep_bytes // 2 :].decode("utf-8", errors="ignore")
    return f"{head}\n[... {len(data) - keep_bytes} bytes cut to fit the context window ...]\n{tail}"
