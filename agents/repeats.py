"""Tool-call loops: a call made twice with the same result is not made a third time (microsoft/autogen#2924).

    if repeated_calls(history, proposed):
        ...  # ask the model again, with tool_choice "none": it answers from the results it has

A small local model that got a result often asks for it again, turn after turn, until the run's limit. The
history shows it: the same tool, with the same arguments, answered the same way twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

from autogen_core import FunctionCall
from autogen_core.models import AssistantMessage, FunctionExecutionResultMessage, LLMMessage

__all__ = ["MAX_SAME_CALLS", "repeated_calls"]

MAX_SAME_CALLS = 2  # a call made this many times with one result is not made again


def repeated_calls(history: Sequence[LLMMessage], proposed: Sequence[FunctionCall]) -> list[FunctionCall]:
    """The calls of `proposed` that `history` already holds `MAX_SAME_CALLS` times, each time with the same result."""
    asked: dict[str, tuple[str, str]] = {}  # call id -> (name, arguments)
    answers: dict[tuple[str, str], Counter[str]] = {}
    for message in history:
        if isinstance(message, AssistantMessage) and isinstance(message.content, list):
            asked.update({call.id: _key(call) for call in message.content})
        elif isinstance(message, FunctionExecutionResultMessage):
            for result in message.content:
                if (key := asked.get(result.call_id)) is not None:
                    answers.setdefault(key, Counter())[result.content] += 1
    return [
        call
        for call in proposed
        if (seen := answers.get(_key(call))) is not None and len(seen) == 1 and seen.total() >= MAX_SAME_CALLS
    ]


def _key(call: FunctionCall) -> tuple[str, str]:
    """The call's name and its arguments in one spelling (key order and spacing do not matter)."""
    try:
        arguments = json.dumps(json.loads(call.arguments), sort_keys=True)
    except json.JSONDecodeError:
        arguments = call.arguments
    return call.name, arguments
