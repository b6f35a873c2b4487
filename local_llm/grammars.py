"""llguidance (Lark) grammars that constrain a chat reply: tool calls, replies to tool results, json output.

With `tool_choice` "auto" the model writes free text until it opens `<tool_call>`, and from there on its JSON must
name an offered tool and match that tool's parameter schema; with "required" or a named tool the reply must be tool
calls from the first token. Tool names come as the tokenizer's own tokens, arguments follow `argument_schema`
(closed objects, bounded lengths, URLs from the conversation), and a text reply to tool results may not echo the
protocol's tags (`answer_grammar`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from autoqwen.local_llm.argument_schema import (
    NO_VALUES,
    Values,
    argument_schema,
    closed,
    conversation_values,
    for_tool,
)
from autoqwen.local_llm.protocol import ChatCompletionRequest, NamedToolChoice, ResponseFormat, Tool
from autoqwen.local_llm.tool_choice import offered_tools
from autoqwen.local_llm.tool_prompt import TOOL_CLOSE, TOOL_OPEN

__all__ = [
    "NAME_PREFIX",
    "answer_grammar",
    "answer_stops",
    "json_grammar",
    "max_calls",
    "result_values",
    "tool_grammar",
]

MAX_PARALLEL_CALLS = 3
# Compact, canonical JSON with the spacing of the prompt's example: a small model cannot wander off in whitespace.
_JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
NAME_PREFIX = '{"name": "'  # what a call writes just before the tool's name
# Text outside calls never holds the protocol's tags; a reply to tool results also opens with a visible
# character that is not `<` (so it cannot start by echoing a `<tool_response>` block under another spelling).
_PLAIN = r"/(.|\n)*/ & ~/(.|\n)*<\/?tool(.|\n)*/"
_ANSWER = r"/[^<\s](.|\n)*/ & ~/(.|\n)*<\/?tool(.|\n)*/"
_OPEN_NAME = json.dumps(NAME_PREFIX)  # the call's JSON around the name, as Lark string literals
_NAME_TO_ARGUMENTS = json.dumps('", "arguments": ')


def tool_grammar(
    body: ChatCompletionRequest,
    *,
    special_open: bool = False,
    special_close: bool = False,
    tokenize: Callable[[str], Sequence[int] | None] | None = None,
    parallel: bool = True,
    copy_values: bool = True,
    each: bool = False,
) -> str | None:
    """The grammar for a request with tools, or None when no call is possible.

    `special_open` / `special_close`: the tag is one token of the model's (Qwen2.5's and Qwen3's `<tool_call>` and
    `</tool_call>`), which the grammar must then allow, rather than the tag's text in other tokens. `tokenize` (a
    tool name to the model's token ids where it follows `{"name": "`, or None when they cannot be told apart) makes
    each name come out as its canonical tokens. `parallel` allows several calls unless the client asks for one;
    without it, only `parallel_tool_calls: true` does. `copy_values` takes free strings and numbers from the user's
    words (URLs of format `uri` always come from the conversation). `each` (a required call): one call to each
    tool, in the order of `tools`.
    """
    tools = offered_tools(body)
    if not tools:
        return None
    open_ = TOOL_OPEN if special_open else json.dumps(TOOL_OPEN)
    close = f'"\\n" {TOOL_CLOSE}' if special_close else json.dumps(f"\n{TOOL_CLOSE}")
    values = conversation_values(body)
    values = values if copy_values else Values(urls=values.urls)
    # Identical calls are dropped, and argument values come from the conversation: a small model cannot pad a reply.
    calls = max_calls(body, parallel=parallel)
    more = ' ("\\n" block)?' * (calls - 1)
    call_rules = [f"call_{i}: {_call_rule(tool, tokenize, values)}" for i, tool in enumerate(tools)]
    if each and body.tool_choice == "required":  # the call to each tool in turn
        order = ' "\\n" '.join(f"block_{i}" for i in range(len(tools)))
        rules = [f"start: {order}", *(f'block_{i}: {open_} "\\n" call_{i} {close}' for i in range(len(tools)))]
    else:
        rules = [f"block: {open_} call", f'call: "\\n" ({" | ".join(f"call_{i}" for i in range(len(tools)))}) {close}']
        if body.tool_choice in ("auto", None):
            # Free text until the model opens a call: the lazy lexeme ends the text at the opening tag.
            text = _ANSWER if _has_results(body) else _PLAIN
            rules = [f"start: TEXT | lead call{more}", f"lead[lazy]: PLAIN {open_}", *rules, f"TEXT: {text}"]
            rules.append(f"PLAIN: {_PLAIN}")
        else:
            rules = [f"start: block{more}", *rules]
    return "%llguidance {}\n" + "\n".join([*rules, *call_rules]) + "\n"


def max_calls(body: ChatCompletionRequest, *, parallel: bool = True) -> int:
    """How many calls a reply may hold: several unless the client asks for one (`parallel_tool_calls` false, or a
    named `tool_choice`); without `parallel`, only when `parallel_tool_calls` is true."""
    asked = body.parallel_tool_calls if parallel else body.parallel_tool_calls is True
    several = asked is not False and not isinstance(body.tool_choice, NamedToolChoice)
    return MAX_PARALLEL_CALLS if several else 1


def _call_rule(tool: Tool, tokenize: Callable[[str], Sequence[int] | None] | None, values: Values = NO_VALUES) -> str:
    """One tool's call, `{"name": NAME, "arguments": ARGS}`, in the canonical JSON style of the prompt.

    With `tokenize`, the name must come as the tokenizer's own tokens: a small model that may spell a name in
    any pieces ("c" "al" "cul" ...) picks the wrong tool far more often than one choosing among the names as it
    has always seen them tokenized.
    """
    name = tool.function.name
    ids = tokenize(name) if tokenize else None
    spelled = " ".join(f"<[{t}]>" for t in ids) if ids else json.dumps(name)
    schema = argument_schema(tool.function.parameters, for_tool(values, name, tool.function.parameters))
    arguments = json.dumps({**schema, "x-guidance": _JSON_STYLE})
    return f'{_OPEN_NAME} {spelled} {_NAME_TO_ARGUMENTS} %json {arguments} "}}"'


def answer_grammar(body: ChatCompletionRequest, *, grounded: bool = True) -> str | None:
    """The grammar of a text reply when tools are listed but none may be called, or None for other requests.

    Told to answer after a `<tool_response>` turn, SmolLM2-135M echoes the block back (`<tool_response>\\n...`)
    instead of answering. A reply to tool results is therefore plain text that starts with a visible character
    other than `<` and never holds the tags of the call protocol; any other text reply never holds the tags either.
    `grounded`: when the latest results are short values (numbers, dates, ids: `result_values`), the reply starts
    with the results as written where each is one plain line (`_plain_results`: "1 EUR = 0.87 GBP", where
    SmolLM2-135M wrote "1.00000000000000001"), else holds one of their values, starting within its first
    `_VALUE_WITHIN` characters (after `add` returned 5555, SmolLM2-135M answered "123483"; told to hold a value
    anywhere, it wrote about Python until `max_tokens` without one).
    """
    if body.response_format is not None or offered_tools(body):
        return None
    if _has_results(body):
        values = result_values(body) if grounded else []
        if not values:
            return f"%llguidance {{}}\nstart: ANSWER\nANSWER: {_ANSWER}\n"
        # Up to the first value, one lexeme without `<` (so no tag); the rest as any text. Intersecting a counted
        # prefix with the no-tag rule instead made llguidance give up ("too many expressions") on "...USD\n</".
        if (whole := _plain_results(body)) is not None:
            quote = json.dumps("\n".join(whole))
            return f"%llguidance {{}}\nstart: {quote} REST?\nREST: {_PLAIN}\n"
        held = "|".join(_literal(v) for v in values)
        lead = f"/([^<\\s][^<]{{0,{_VALUE_WITHIN - 2}}})?({held})/"  # the value starts within _VALUE_WITHIN
        return f"%llguidance {{}}\nstart: lead REST?\nlead[lazy]: {lead}\nREST: {_PLAIN}\n"
    if body.tools:
        return f"%llguidance {{}}\nstart: PLAIN\nPLAIN: {_PLAIN}\n"
    return None


# A result is a value, not a page, when it is this short; the values are its words that hold a digit.
_VALUE_RESULT_CHARS = 300
_MAX_RESULT_VALUES = 20
_VALUE_WITHIN = 160  # characters of a grounded answer a value starts within (about two sentences)
_VALUE = re.compile(r"[^\s\"'`,;()\[\]{}<>]*\d[^\s\"'`,;()\[\]{}<>]*")  # no tag characters


def answer_stops(body: ChatCompletionRequest) -> tuple[str, ...]:
    """Where a text reply that opens with the tool results (`answer_grammar`) ends besides the client's `stop`: at
    a closing tag on a line of its own (SmolLM2-135M, having answered, closes the `<tool_response>` block it
    imagines itself in: "AAPL: 187.42 USD\\n</item>")."""
    if _has_results(body) and not offered_tools(body) and body.response_format is None and _plain_results(body):
        return ("\n</",)
    return ()


def result_values(body: ChatCompletionRequest) -> list[str]:
    """The values (words holding a digit: numbers, dates, times, ids) of the latest tool results, when each is short
    enough to be a value rather than a page; empty otherwise or when there are too many."""
    results = _latest_results(body)[::-1]  # latest first, as the values were always listed
    if not results or any(len(text) > _VALUE_RESULT_CHARS for text in results):
        return []
    found = dict.fromkeys(v.rstrip(".:") for text in results for v in _VALUE.findall(text))
    values = [v for v in found if v]
    return values if len(values) <= _MAX_RESULT_VALUES else []


def _latest_results(body: ChatCompletionRequest) -> list[str]:
    """The texts of the tool messages that end the conversation, in the order they came."""
    results: list[str] = []
    for message in reversed(body.messages):
        if message.role != "tool":
            break
        results.insert(0, message.text())
    return results


def _plain_results(body: ChatCompletionRequest) -> list[str] | None:
    """The latest tool results in the order they came, each stripped, when there are at most `MAX_PARALLEL_CALLS`
    and each is one short line of plain text holding a value (not JSON, no `<`); None otherwise."""
    results = [text.strip() for text in _latest_results(body)]
    if len(results) > MAX_PARALLEL_CALLS or not result_values(body):
        return None
    if all(
        len(text.splitlines()) == 1 and _VALUE.search(text) and "<" not in text and text[0] not in "{["
        for text in results
    ):
        return results
    return None


def _literal(text: str) -> str:
    """`text` as a Lark regex that matches it literally (any character but letters and digits escaped)."""
    return "".join(c if c.isascii() and c.isalnum() else f"\\x{{{ord(c):x}}}" for c in text)


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
    return f"%llguidance {{}}\nstart: %json {json.dumps({**closed(schema), 'x-guidance': _JSON_STYLE})}\n"
