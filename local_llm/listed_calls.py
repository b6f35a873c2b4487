"""One more call for each further item the user lists: "in Oslo and in Cairo", "15, 20 and 30 years", "into French
and into Spanish", "100 USD to EUR and 100 USD to GBP".

    more = listed_calls(text, calls, tools, limit)   # calls to add to a reply, each its first call with other items

SmolLM2-135M answers a request that lists items with one call, for the first item: asked to convert "100 USD to EUR
and 100 USD to GBP", it made the EUR call only; made to write a second call, it copied the first call's other values
into it ("from EUR"). So the server writes the further calls itself, from the first call and the user's words:

* where the first call's values stand in the user's latest message (a number as written, an enum value the user
  names, a string as a run of the user's words), the message from the first of them to the last is the pattern of
  one item: "100 USD to EUR" is `<amount> <from> to <to>`;
* after it, each item joined on by "and", "or", a comma... that repeats the end of the pattern, with other values
  in its slots ("and into Spanish" after "into French", ", 20" after "of 15"), is one more call: the first call's
  arguments with those values in place, kept only where they fit the parameter (a number within its bounds, an
  enum value the item names, a string of the same capitalisation that does not start with "the", "my"...).

A call the reply already has for an item is not made again; array, object and boolean values are not items.
"""

from __future__ import annotations

import bisect
import json
import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoqwen.local_llm.argument_schema import number_fits, schema_number
from autoqwen.local_llm.enum_names import named_values
from autoqwen.local_llm.protocol import FunctionCall, ToolCall
from autoqwen.local_llm.spans import MAX_SPAN_WORDS
from autoqwen.local_llm.tool_parse import call_arguments
from autoqwen.local_llm.written_numbers import number_at

__all__ = ["listed_calls"]

# A token: a run of word characters, which may hold inner "." "," ":" "/" "-" "@" ("400,000", "2025-03-14",
# "18:30", "bob@example.com"), or any other single visible character.
_TOKEN = re.compile(r"[^\W_]+(?:[.,:/@_-][^\W_]+)*|\S")
_QUOTES = {"'": "'", '"': '"', "\u2018": "\u2019", "\u201c": "\u201d", "(": ")"}  # opening marks, closing ones
_JOINS = frozenset({",", ";", "and", "or", "&", "then", "also", "vs", "versus"})
# Words an item never starts with: "weather in Paris and the stock price of AAPL" lists no second city.
_NOT_ITEMS = frozenset(
    {"the", "a", "an", "my", "your", "our", "their", "his", "her", "its", "me", "it", "them", "us", "this", "that"}
    | {"these", "those", "some", "any", "what", "how", "when", "where", "who", "tell", "give", "show", "find", "get"}
)


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str

    @property
    def is_word(self) -> bool:
        return self.text[:1].isalnum()


class _Tokens(list[_Token]):
    """The message's tokens, in order."""

    def __init__(self, tokens: Iterable[_Token]) -> None:
        super().__init__(tokens)
        self._starts = [t.start for t in self]

    def at(self, offset: int) -> int:
        """The index of the first token that starts at or after `offset`."""
        return bisect.bisect_left(self._starts, offset)


@dataclass(frozen=True)
class _Slot:
    """Where a value of the first call stands in the message: a parameter, its schema and value, its tokens."""

    name: str
    schema: Mapping[str, Any]
    value: Any
    start: int
    end: int
    hundredths: bool = False  # a number written as a percentage, passed as a fraction ("4 %" is 0.04)


_Element = _Slot | str  # a pattern's slot, or a word or mark it must repeat (lower case)


def listed_calls(
    text: str, calls: Sequence[ToolCall], tools: Mapping[str, Mapping[str, Any]], limit: int
) -> list[ToolCall]:
    """The calls to add to a reply whose calls are `calls`, for the items the user's latest message (`text`) lists
    after the first call's, while the reply holds at most `limit` calls. `tools`: each tool's parameter schema."""
    if not calls or len(calls) >= limit or (schema := tools.get(calls[0].function.name)) is None:
        return []
    arguments = call_arguments(calls[0])
    properties = schema.get("properties")
    if arguments is None or not isinstance(properties, dict):
        return []
    tokens = _Tokens(_Token(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text))
    slots = sorted(_slots(text, tokens, arguments, properties), key=lambda slot: slot.start)
    runs = [slots[i:j] for n in range(len(slots), 0, -1) for i, j in ((i, i + n) for i in range(len(slots) - n + 1))]
    used = {i for slot in slots for i in range(slot.start, slot.end)}  # an item is none of the call's own values
    items = next((found for run in runs if (found := _items(text, tokens, *_pattern(tokens, run), used))), [])
    made: list[ToolCall] = []
    for values in items:
        if len(calls) + len(made) >= limit:
            break
        if any(c.function.name == calls[0].function.name and _covers(c, values) for c in [*calls, *made]):
            continue  # the reply has this item's call already
        new = json.dumps(arguments | values, ensure_ascii=False)
        function = FunctionCall(name=calls[0].function.name, arguments=new)
        made.append(ToolCall(id=f"call_{secrets.token_hex(12)}", function=function))
    return made


def _slots(text: str, tokens: _Tokens, arguments: dict[str, Any], properties: dict[str, Any]) -> list[_Slot]:
    """Where the message first holds each of the call's number, enum and free string values, without overlaps."""
    found: list[_Slot] = []
    for name, value in arguments.items():
        schema = properties.get(name)
        if not isinstance(schema, dict) or isinstance(value, bool):
            continue
        slot = _locate(text, tokens, name, schema, value)
        if slot is not None and not any(s.start < slot.end and slot.start < s.end for s in found):
            found.append(slot)
    return found


def _locate(text: str, tokens: _Tokens, name: str, schema: dict[str, Any], value: Any) -> _Slot | None:
    if isinstance(value, int | float) and schema.get("type") in ("number", "integer"):
        for i, token in enumerate(tokens):
            if (read := number_at(text, token.start)) is not None:
                number, percent, end = read
                if _same(number, value) or (percent and _same(number / 100, value)):
                    return _Slot(name, schema, value, i, tokens.at(end), not _same(number, value))
        return None
    if not isinstance(value, str):
        return None
    if isinstance(enum := schema.get("enum"), list):
        if len(lower := text.lower()) != len(text):  # where the enum is named would not be where in `text`
            return None
        starts = named_values(lower, enum).get(value, [])
        return next((_Slot(name, schema, value, i, i + 1) for i, t in enumerate(tokens) if t.start in starts), None)
    if schema.get("type") != "string" or {"format", "pattern", "const"} & schema.keys():
        return None
    wanted = [m.group().lower() for m in _TOKEN.finditer(value)]
    for i in range(len(tokens) - len(wanted) + 1):
        first = wanted and tokens[i].text.lower() == wanted[0]  # the first token alone, before the slice
        if first and [t.text.lower() for t in tokens[i : i + len(wanted)]] == wanted:
            return _Slot(name, schema, value, i, i + len(wanted))
    return None


def _same(number: float, value: float) -> bool:
    try:
        return math.isclose(number, value)
    except OverflowError:  # an integer too large for a float
        return False


def _pattern(tokens: _Tokens, slots: list[_Slot]) -> tuple[list[_Element], int]:
    """The message from the first of `slots` to the last, each slot standing for its tokens, with the word or
    opening quote before it ("in <city>", "'<task>'"), and a closing quote or up to 2 words after it that a join
    word follows ("for <12> months and ..."); and the token after the pattern."""
    by_start = {s.start: s for s in slots}
    i, end = min(by_start), max(s.end for s in slots)
    if i > 0 and (tokens[i - 1].text in _QUOTES or _is_lower_word(tokens[i - 1])):
        i -= 1
    if end < len(tokens) and tokens[end].text in _QUOTES.values():
        end += 1
    words = next((n for n in (1, 2) if end + n < len(tokens) and tokens[end + n].text.lower() in _JOINS), 0)
    if all(_is_lower_word(t) for t in tokens[end : end + words]):
        end += words
    pattern: list[_Element] = []
    while i < end:
        if (slot := by_start.get(i)) is not None:
            pattern.append(slot)
            i = slot.end
        else:
            pattern.append(tokens[i].text.lower())
            i += 1
    return pattern, end


def _items(text: str, tokens: _Tokens, pattern: list[_Element], at: int, used: set[int]) -> list[dict[str, Any]]:
    """The values of each item after `at` that join words lead to and that repeats an end of `pattern`, the longest
    end that matches, up to the first that does not or that holds a `used` token. Items joined by commas only count
    where a join word ("and", "or"...) comes after them: "Chicago, IL" lists no second city, "AAPL, MSFT and NVDA"
    does."""
    items: list[tuple[dict[str, Any], bool]] = []
    while True:
        joined = at
        while joined < len(tokens) and tokens[joined].text.lower() in _JOINS:
            joined += 1
        worded = any(t.is_word for t in tokens[at:joined])
        found = next(
            (found for k in range(len(pattern)) if (found := _match(text, tokens, pattern[k:], joined)) is not None),
            None,
        )
        if joined == at or found is None or used & set(range(joined, found[0])):
            break
        at = found[0]
        items.append((found[1], worded))
    while items and not items[-1][1]:
        items.pop()
    return [values for values, _ in items]


def _is_lower_word(token: _Token) -> bool:
    return token.text.isalpha() and token.text.islower()


def _match(text: str, tokens: _Tokens, part: list[_Element], at: int) -> tuple[int, dict[str, Any]] | None:
    """The values of the item at `at` that repeats `part` (which holds a slot), and the token after it."""
    slots = sum(isinstance(element, _Slot) for element in part)
    if not slots or (slots > 1 and all(isinstance(element, _Slot) for element in part)):
        return None  # "5 minutes and 30 seconds" is one duration: an item of several values repeats a word too
    values: dict[str, Any] = {}
    for k, element in enumerate(part):
        if at >= len(tokens):
            return None
        if isinstance(element, str):
            if tokens[at].text.lower() != element:
                return None
            at += 1
            continue
        following = part[k + 1] if k + 1 < len(part) else None
        read = _read(text, tokens, at, element, following if isinstance(following, str) else None)
        if read is None:
            return None
        at, values[element.name] = read
    return at, values


def _read(text: str, tokens: _Tokens, at: int, slot: _Slot, following: str | None) -> tuple[int, Any] | None:
    """The value of `slot`'s kind that the message holds from token `at`, and the token after it."""
    schema = slot.schema
    if isinstance(slot.value, int | float):
        if (read := number_at(text, tokens[at].start)) is None:
            return None
        number, percent, end = read
        if slot.hundredths and not percent:
            return None
        number = number / 100 if slot.hundredths else number
        if not number_fits(schema, number):
            return None
        return tokens.at(end), int(number) if float(number).is_integer() else number
    if isinstance(enum := schema.get("enum"), list):
        for n in range(1, 4):  # the fewest words that name one value: "Spanish", "British pounds"
            words = tokens[at : at + n]
            if len(words) < n or not all(t.text.isalpha() for t in words) or words[0].text.lower() in _NOT_ITEMS:
                return None
            named = named_values(text[words[0].start : words[-1].end].lower(), enum)
            if len(named) == 1:
                return at + n, next(iter(named))
        return None
    return _read_string(text, tokens, at, slot, following)


def _read_string(text: str, tokens: _Tokens, at: int, slot: _Slot, following: str | None) -> tuple[int, str] | None:
    """A run of the user's words in the slot's capitalisation: up to the word the pattern goes on with, or else to
    the next mark or join word (capitalised words only, after a capitalised value: "Madrid" of "Madrid's")."""
    first = tokens[at]
    capital = slot.value[:1].isupper()
    if not first.is_word or first.text.lower() in _NOT_ITEMS or first.text[:1].isupper() != capital:
        return None
    end = at
    if following is not None:
        while end < len(tokens) and end - at < MAX_SPAN_WORDS and tokens[end].text.lower() != following:
            end += 1
        if end >= len(tokens) or tokens[end].text.lower() != following:
            return None
    else:  # as many words as the value, one more or fewer for a name ("Seattle", "Los Angeles"), then a mark
        words = len(_TOKEN.findall(slot.value))
        while (
            end < len(tokens)
            and end - at <= words
            and tokens[end].is_word
            and tokens[end].text.lower() not in _JOINS
            and (not capital or not tokens[end].text[:1].islower())
        ):
            end += 1
        stopped = end == len(tokens) or not tokens[end].is_word or tokens[end].text.lower() in _JOINS
        if abs(end - at - words) > capital or not (stopped or (capital and tokens[end].text[:1].islower())):
            return None
    value = text[first.start : tokens[end - 1].end]
    if (
        not schema_number(slot.schema, "minLength", 1)
        <= len(value)
        <= schema_number(slot.schema, "maxLength", math.inf)
    ):
        return None
    return end, value


def _covers(call: ToolCall, values: dict[str, Any]) -> bool:
    arguments = call_arguments(call)
    return arguments is not None and all(arguments.get(name) == value for name, value in values.items())
