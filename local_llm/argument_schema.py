"""The JSON schema a tool call's arguments are decoded under: the tool's own, closed, bounded, values copied.

    schema = argument_schema(tool.function.parameters, conversation_values(body))

* Closed: an object schema that lists `properties` and says nothing of `additionalProperties` admits no other
  key, as llama.cpp's grammars and OpenAI's strict mode do (JSON Schema's default is open, and a small model
  fills an open object with keys of its own: `search_papers({"query": ..., "maxResults": 3})`). A schema that
  sets `additionalProperties` keeps it; an object with no `properties` stays open.
* Bounded: a string, integer or array the schema leaves unbounded gets a bound (`MAX_STRING_CHARS`,
  `MAX_INTEGER_DIGITS`, `MAX_ITEMS`, `MAX_STRING_ITEMS`, `MAX_OBJECT_ITEMS`), so a call that starts to repeat
  itself ends well before `max_tokens` instead of being cut off there.
* URLs: a string of format `uri` takes one of the http(s) URLs the user or the system wrote, when they wrote any
  (SmolLM2-135M otherwise invents one); `conversation_urls` finds them, public hosts only.
* Values copied (`Values.spans`, `Values.numbers`): a free string takes a span of the user's words (`spans.py`:
  "New York, NY", not "New York" nor the tool's own name), and a number one the user wrote,
  read as a reader would ("50 million" is 50000000, "2,000,000" is 2000000, "5 %" is 0.05 where the parameter is a
  fraction), plus 0, 1 and the schema's default unless a number the user wrote begins with them (SmolLM2-135M
  wrote the hour of "10:45" as 1). Without such words or numbers in the conversation, the value is
  free; a quoted phrase is a span only whole. An enum whose values the user names ("in fahrenheit", "to JPY",
  "kilometers" for km) offers only those, and parameters that share an enum take them in the order the user names
  them ("miles to kilometers": from mi, to km). An optional property the user names a value of is required.

`response_format` json_schema is closed the same way, but not bounded (a JSON answer may be long).
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from autoqwen.addresses import check_host
from autoqwen.local_llm.enum_names import named_values
from autoqwen.local_llm.examples import examples_named, shaped
from autoqwen.local_llm.name_words import identifier_words, name_words, stems
from autoqwen.local_llm.protocol import ChatCompletionRequest
from autoqwen.local_llm.spans import EDGE as _EDGE
from autoqwen.local_llm.spans import is_address, spans
from autoqwen.local_llm.written_numbers import CLOCK_TIME, counted_numbers, numbers

__all__ = [
    "MAX_INTEGER_DIGITS",
    "MAX_ITEMS",
    "MAX_OBJECT_ITEMS",
    "MAX_STRING_CHARS",
    "MAX_STRING_ITEMS",
    "NO_VALUES",
    "Values",
    "argument_schema",
    "closed",
    "conversation_urls",
    "conversation_values",
    "for_tool",
    "number_fits",
    "schema_number",
    "times_written",
]

MAX_STRING_CHARS = 256  # a string argument without maxLength, enum, const, pattern or format
MAX_ITEMS = 16  # an array without maxItems
MAX_OBJECT_ITEMS = 4  # an array without maxItems of items that are not plain scalars: each costs tens of tokens
# An array of strings without maxItems: a span of up to 8 words costs ten tokens or more; SmolLM2-135M, told to list
# "criminal law" specialisations, repeated "criminal law near" until max_tokens cut the call.
MAX_STRING_ITEMS = 8
MAX_INTEGER_DIGITS = 15  # an integer without minimum and maximum: |n| < 10**15 (JSON's exact integers reach 2**53)

_SPAN_SOURCE_WORDS = 300  # words of the user's turns (latest first) that spans come from
# A number, then up to 2 words that are not "to", "into", "in" nor "from": "50 british " of "50 british pounds".
_COUNTED = re.compile(r"\d\s+(?:(?!(?:to|into|in|from)\s)[^\W\d_]+\s+){0,2}$")
_SCALARS = ("string", "number", "integer", "boolean", "null")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_FRACTION_WORDS = re.compile(r"\b(fraction|ratio|decimal|proportion|between 0 and 1)\b", re.IGNORECASE)
_URL = re.compile(r"https?://[^\s<>\"'`)\]}\\]+")
_URL_ROLES = ("system", "developer", "user")  # where a workflow's task and inputs arrive
# Keywords whose values are subschemas, lists of them, or maps of names to them.
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_MANY = ("prefixItems", "anyOf", "oneOf")  # allOf is left alone: closing each part would refuse their union
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


@dataclass(frozen=True)
class Values:
    """What a call's arguments may copy from the conversation: URLs, spans of the user's words, numbers."""

    urls: tuple[str, ...] = ()
    spans: tuple[str, ...] = ()
    numbers: tuple[tuple[float, bool], ...] = ()  # (value, written as a percentage)
    text: str = ""  # the user's words, lower case: an enum's values the user names are the only choices


NO_VALUES = Values()


def argument_schema(parameters: dict[str, Any], values: Values = NO_VALUES) -> dict[str, Any]:
    """A tool's parameter schema as its arguments are decoded: closed, bounded, values copied."""
    text = values.text
    in_order = _transform(
        parameters, lambda schema: _counted(_in_order_named(_named_required(schema, text), text), text)
    )
    return _transform(in_order, lambda schema: _bound(_close(_copy_values(schema, values))))


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with every object that lists properties closed to other keys, unless it says otherwise."""
    return _transform(schema, _close)


def _transform(schema: Any, change: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """`schema` rebuilt bottom-up with `change` applied to each of its (sub)schemas; the input is not modified."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    for key in _ONE:
        if isinstance(out.get(key), dict):
            out[key] = _transform(out[key], change)
    for key in _MANY:
        if isinstance(out.get(key), list):
            out[key] = [_transform(sub, change) for sub in out[key]]
    if isinstance(out.get("items"), list):  # draft 4-7 tuples
        out["items"] = [_transform(sub, change) for sub in out["items"]]
    for key in _MAPS:
        if isinstance(out.get(key), dict):
            out[key] = {name: _transform(sub, change) for name, sub in out[key].items()}
    return change(out)


def _close(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("properties"), dict) and "additionalProperties" not in schema:
        return schema | {"additionalProperties": False}
    return schema


def _bound(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if "enum" in schema or "const" in schema:
        return schema
    if kind == "string" and not {"maxLength", "pattern", "format"} & schema.keys():
        return schema | {"maxLength": MAX_STRING_CHARS}
    if kind == "array" and "maxItems" not in schema:
        items = schema.get("items")
        nested = isinstance(items, dict) and not ({"enum", "const"} & items.keys() or items.get("type") in _SCALARS)
        worded = isinstance(items, dict) and (
            items.get("type") == "string" or all(isinstance(v, str) for v in _enum(items) or [0])
        )
        given = schema.get("minItems")
        least = given if isinstance(given, int) and not isinstance(given, bool) else 0
        most = MAX_OBJECT_ITEMS if nested else MAX_STRING_ITEMS if worded else MAX_ITEMS
        return schema | {"maxItems": max(most, least)}
    if kind == "integer":
        limit = 10**MAX_INTEGER_DIGITS - 1
        bounds = {"minimum": -limit, "maximum": limit}
        given = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} & schema.keys()
        if not {"minimum", "exclusiveMinimum"} & given:
            schema = schema | {"minimum": min(bounds["minimum"], schema.get("maximum", 0))}
        if not {"maximum", "exclusiveMaximum"} & given:
            schema = schema | {"maximum": max(bounds["maximum"], schema.get("minimum", 0))}
    return schema


def _copy_values(schema: dict[str, Any], values: Values) -> dict[str, Any]:
    """A string or number limited to what the conversation holds, where the schema leaves it free.

    Asked to fetch "the link of the first paper" listed a turn earlier, SmolLM2-135M invents a URL of its own;
    choosing among the conversation's URLs, it fetches one that exists. Asked for "papers on protein folding", it
    writes `protein_folding_protein_protein...`; choosing among the user's words, it writes "protein folding".
    """
    kind = schema.get("type")
    if isinstance(schema.get("enum"), list):
        named = named_values(values.text, schema["enum"])
        return schema | {"enum": [v for v in schema["enum"] if isinstance(v, str) and v in named]} if named else schema
    if "const" in schema:
        return schema
    if kind == "string" and schema.get("format") in ("uri", "url"):
        return _limited(schema, list(values.urls))
    if kind == "string" and not {"format", "pattern"} & schema.keys():
        low, high = schema.get("minLength", 1), schema.get("maxLength", MAX_STRING_CHARS)
        return _limited(schema, [span for span in shaped(schema, values.spans) if low <= len(span) <= high])
    if kind in ("number", "integer"):
        found = [value / 100 if percent and _is_fraction(schema) else value for value, percent in values.numbers]
        if not found:
            return schema
        default = schema.get("default")
        written = [n for n in map(_json_number, found) if number_fits(schema, n)]
        spares = [0, 1, *([default] if isinstance(default, int | float) else [])]
        spares = [n for n in map(_json_number, spares) if number_fits(schema, n) and not _begins_any(n, written)]
        return _limited(schema, list(dict.fromkeys([*written, *spares])))
    return schema


def _is_fraction(schema: dict[str, Any]) -> bool:
    """Whether a number parameter takes a percentage as a fraction ("5 %" as 0.05)."""
    return bool(_FRACTION_WORDS.search(str(schema.get("description", "")))) or schema.get("maximum") == 1


def _counted(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """A number or integer property takes the numbers the user writes before the last word of its name, when there
    are any ("for 3 nights for 2 guests" gives `nights` 3: SmolLM2-135M wrote 2)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    out = dict(properties)
    for name, sub in properties.items():
        if isinstance(sub, dict) and sub.get("type") in ("number", "integer") and "enum" not in sub:
            found = [v / 100 if percent and _is_fraction(sub) else v for v, percent in counted_numbers(text, name)]
            if fitting := [n for n in dict.fromkeys(map(_json_number, found)) if number_fits(sub, n)]:
                out[name] = sub | {"enum": fitting}
    return schema | {"properties": out}


def _begins_any(spare: int | float, written: list[int | float]) -> bool:
    """Whether `spare` (0, 1 or the default, which the user did not write) is how a number the user wrote begins:
    offered both, SmolLM2-135M wrote 1 for "10:45" and for "1.267 billion", stopping after the first digit."""
    text = json.dumps(spare)
    return any(n != spare and json.dumps(n).startswith(text) for n in written)


def _in_order_named(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """Properties that share one enum ("from_unit" and "to_unit") take the values the user names in the order the
    user names them ("26.2 miles to kilometers": mi, then km) when the user names one distinct value for each, once;
    a small model otherwise writes the same value for both. The one value written after a number comes first,
    though: it is what the number counts ("How many yen is 50 GBP?": GBP, then JPY). Otherwise (parallel calls:
    "100 USD to EUR and 100 USD to GBP") each keeps every value named."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, sub in properties.items():
        enum = sub.get("enum") if isinstance(sub, dict) else None
        if isinstance(enum, list) and len(enum) > 1 and all(isinstance(v, str) for v in enum):
            groups.setdefault(tuple(enum), []).append(name)
    out = dict(properties)
    for enum, names in groups.items():
        named = named_values(text, list(enum))
        found = sorted((at, v) for v, hits in named.items() for at in hits)
        counted = [v for at, v in found if _COUNTED.search(text[max(0, at - 64) : at])]
        mentions = [v for _, v in sorted(found, key=lambda hit: (len(counted) != 1 or hit[1] != counted[0], hit))]
        if len(names) < 2 or len(mentions) != len(names) or len(set(mentions)) < len(names):
            continue  # not one mention a parameter: each keeps every named value
        for name, value in zip(names, mentions, strict=True):
            out[name] = properties[name] | {"enum": [value]}
    return schema | {"properties": out}


def _named_required(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """An object whose optional property the user gives a value by naming it is required to have it, limited to
    what the user names: an enum value of 4 letters or more the user writes as a word ("in heat mode"; not "new" of
    "New York", nor "desc" of "describe"), or an example of 3 characters or more the property's description quotes
    ("Format, e.g. 'IMAX'": "IMAX movie releases"); SmolLM2-135M left them out. Not a value another property's
    enum holds too (a source language is not the target language the user names)."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return schema
    required = schema.get("required", [])
    if not isinstance(required, list):
        return schema

    def given(name: str, sub: Any) -> list[Any]:  # the values the user names for an optional property
        if not isinstance(sub, dict) or name in required:
            return []
        if not isinstance(enum := sub.get("enum"), list):
            return examples_named(sub, text)
        others = [v for key, p in properties.items() if key != name and isinstance(p, dict) for v in _enum(p)]
        return [
            value
            for value in named_values(text, enum)
            if value not in others and len(value) >= 4 and re.search(rf"(?<!\w){re.escape(value.lower())}(?!\w)", text)
        ]

    named = {name: values for name, sub in properties.items() if (values := given(name, sub))}
    if not named:
        return schema
    limited = {name: properties[name] | {"enum": values} for name, values in named.items()}
    return schema | {"required": [*required, *named], "properties": properties | limited}


def _enum(schema: dict[str, Any]) -> list[Any]:
    return enum if isinstance(enum := schema.get("enum"), list) else []


def for_tool(values: Values, name: str, parameters: dict[str, Any] | None = None) -> Values:
    """`values` for a call of the tool `name`: without the spans that hold a word of its name (SmolLM2-135M read
    "What does the file notes.txt say?" as `read_file({"path": "file"})`, wrote a search's own name as its query
    and "Set a reminder" as a reminder's text), unless the word is a capitalised one inside the span (a name's:
    "Louvre Museum") or the span is quoted or an address; nor, where its `parameters` take an hour and a minute,
    the spans that hold a clock time or a word of one (it wrote "7:15", then "7:15 to take my pills", as a
    reminder's text); nor, where they take a date, the spans that hold a date and more ("Team lunch on 2025-03-14"
    as an event's title)."""
    parts = name_words(name)
    keys = [identifier_words(key) for key in _keys(parameters)]
    lasts = {words[-1].lower() for words in keys if words}
    clock = bool(lasts & {"hour", "hours"}) and bool(lasts & {"minute", "minutes"})
    dated = bool(lasts & {"date", "dates"})
    times = {w for m in CLOCK_TIME.finditer(values.text) for w in m.group().split()} if clock else set()

    def own(span: str) -> bool:
        written = {w.strip(_EDGE) for w in span.lower().split()}
        if (dated and _ISO_DATE.search(span) and " " in span) or times & written:
            return True
        words = re.findall(r"[\w']+", span)
        named = any(
            w.isalpha() and (i == 0 or not w[0].isupper()) and any(stems(w.lower(), p) for p in parts)
            for i, w in enumerate(words)
        )
        # An address or a quoted phrase is the user's value as written (looked up only for the few that name it).
        return named and not (
            is_address(span) or re.search(rf"[\"'\u2018\u201c]{re.escape(span.lower())}[\"'\u2019\u201d]", values.text)
        )

    return dataclasses.replace(values, spans=tuple(span for span in values.spans if not own(span)))


def _keys(schema: Any) -> Iterator[str]:
    """The property names of an object schema and of the objects it holds."""
    if isinstance(schema, dict):
        if isinstance(properties := schema.get("properties"), dict):
            yield from (key for key in properties if isinstance(key, str))
        for value in schema.values():
            yield from _keys(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _keys(value)


def times_written(values: Values) -> Callable[[object], int]:
    """How many times the user wrote an argument value: a word or phrase of theirs, or one of their numbers (0 for
    a value not theirs)."""
    numbers = [{value, value / 100} if percent else {value} for value, percent in values.numbers]

    def times(value: object) -> int:
        if isinstance(value, bool):
            return 0
        if isinstance(value, int | float):
            return sum(any(math.isclose(value, n, rel_tol=1e-9) for n in readings) for readings in numbers)
        if not isinstance(value, str) or not value.strip():
            return 0
        return len(re.findall(rf"(?<!\w){re.escape(value.lower())}(?!\w)", values.text))

    return times


def _limited(schema: dict[str, Any], choices: list[Any]) -> dict[str, Any]:
    if not choices:
        return schema
    kept = {key: value for key, value in schema.items() if key in ("description", "title", "default")}
    return kept | {"enum": choices}


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else value


_CHECKS = (
    ("minimum", operator.ge, -math.inf),
    ("maximum", operator.le, math.inf),
    ("exclusiveMinimum", operator.gt, -math.inf),
    ("exclusiveMaximum", operator.lt, math.inf),
)


def number_fits(schema: Mapping[str, Any], number: float) -> bool:
    """Whether `number` is a value of the number or integer `schema`."""
    if not math.isfinite(number) or (schema.get("type") == "integer" and not float(number).is_integer()):
        return False
    if isinstance(enum := schema.get("enum"), list) and number not in enum:
        return False
    if "const" in schema and number != schema["const"]:
        return False
    step = schema_number(schema, "multipleOf", 0)
    if step > 0 and (not math.isfinite(ratio := number / step) or not math.isclose(ratio, round(ratio))):
        return False
    if schema.get("exclusiveMinimum") is True and number <= schema_number(schema, "minimum", -math.inf):
        return False  # draft 4: a flag on `minimum`
    if schema.get("exclusiveMaximum") is True and number >= schema_number(schema, "maximum", math.inf):
        return False
    return all(check(number, schema_number(schema, key, default)) for key, check, default in _CHECKS)


def schema_number(schema: Mapping[str, Any], key: str, default: float) -> float:
    """The schema's number under `key`, or `default` when it has none (or something else there)."""
    value = schema.get(key)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else default


def conversation_values(body: ChatCompletionRequest) -> Values:
    """The URLs (system and user turns), spans and numbers (user turns, latest first) a call may copy."""
    words: list[str] = []
    for message in reversed(body.messages):
        if message.role == "user" and len(words) < _SPAN_SOURCE_WORDS:
            try:
                text = message.text()
            except ValueError:  # content the model cannot read: the prompt refuses it
                continue
            words = [*text.split()[: _SPAN_SOURCE_WORDS - len(words)], *words]
    text = " ".join(words)
    return Values(tuple(conversation_urls(body)), tuple(spans(words)), tuple(numbers(text)), text.lower())


def conversation_urls(body: ChatCompletionRequest) -> list[str]:
    """The http(s) URLs the user or the system wrote, in order of appearance, each once, public hosts only.

    Tool results and the assistant's own turns do not count: a fetched page that mentions an internal address
    must not make it the next call's only choice. Hosts are judged as written (no DNS): internal IP literals and
    local or metadata names are dropped unless `AUTOQWEN_ALLOW_HOSTS` allows them.
    """
    found: dict[str, None] = {}
    turns = [m.model_dump(mode="json") for m in body.messages if m.role in _URL_ROLES]
    for text in _strings(turns):
        for url in _URL.findall(text):
            url = url.rstrip(".,;:!?")
            if _public_host(url):
                found.setdefault(url, None)
    return list(found)


def _public_host(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
        if host is None:
            return False
        check_host(host)
    except ValueError:  # AddressRefused, or a malformed bracketed host
        return False
    return True


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
