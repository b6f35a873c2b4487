"""The JSON schema a tool call's arguments are decoded under: the tool's own, closed, bounded, URLs copied.

    schema = argument_schema(tool.function.parameters, urls=conversation_urls(body))

* Closed: an object schema that lists `properties` and says nothing of `additionalProperties` admits no other
  key, as llama.cpp's grammars and OpenAI's strict mode do (JSON Schema's default is open, and a small model
  fills an open object with keys of its own: `search_papers({"query": ..., "maxResults": 3})`). A schema that
  sets `additionalProperties` keeps it; an object with no `properties` stays open.
* Bounded: a string, integer or array the schema leaves unbounded gets a bound (`MAX_STRING_CHARS`,
  `MAX_INTEGER_DIGITS`, `MAX_ITEMS`), so a call that starts to repeat itself ends well before `max_tokens`
  instead of being cut off there.
* URLs: a string of format `uri` takes one of the http(s) URLs the user or the system wrote, when they wrote any
  (SmolLM2-135M otherwise invents one); `conversation_urls` finds them, public hosts only.

`response_format` json_schema is closed the same way, but not bounded (a JSON answer may be long).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from autoqwen.addresses import check_host
from autoqwen.local_llm.protocol import ChatCompletionRequest

__all__ = ["MAX_INTEGER_DIGITS", "MAX_ITEMS", "MAX_STRING_CHARS", "argument_schema", "closed", "conversation_urls"]

MAX_STRING_CHARS = 256  # a string argument without maxLength, enum, const, pattern or format
MAX_ITEMS = 16  # an array without maxItems
MAX_INTEGER_DIGITS = 15  # an integer without minimum and maximum: |n| < 10**15 (JSON's exact integers reach 2**53)

_URL = re.compile(r"https?://[^\s<>\"'`)\]}\\]+")
_URL_ROLES = ("system", "developer", "user")  # where a workflow's task and inputs arrive
# Keywords whose values are subschemas, lists of them, or maps of names to them.
_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")
_MANY = ("prefixItems", "anyOf", "oneOf")  # allOf is left alone: closing each part would refuse their union
_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def argument_schema(parameters: dict[str, Any], *, urls: Sequence[str] = ()) -> dict[str, Any]:
    """A tool's parameter schema as its arguments are decoded: closed, bounded, URL strings copied."""
    return _transform(parameters, lambda schema: _bound(_close(_copy_url(schema, urls))))


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
        return schema | {"maxItems": max(MAX_ITEMS, schema.get("minItems", 0))}
    if kind == "integer":
        limit = 10**MAX_INTEGER_DIGITS - 1
        bounds = {"minimum": -limit, "maximum": limit}
        given = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"} & schema.keys()
        if not {"minimum", "exclusiveMinimum"} & given:
            schema = schema | {"minimum": min(bounds["minimum"], schema.get("maximum", 0))}
        if not {"maximum", "exclusiveMaximum"} & given:
            schema = schema | {"maximum": max(bounds["maximum"], schema.get("minimum", 0))}
    return schema


def _copy_url(schema: dict[str, Any], urls: Sequence[str]) -> dict[str, Any]:
    """A string of format "uri" limited to the conversation's URLs, when it has any.

    Asked to fetch "the link of the first paper" listed a turn earlier, SmolLM2-135M invents a URL of its own;
    choosing among the conversation's URLs, it fetches one that exists.
    """
    if urls and schema.get("type") == "string" and schema.get("format") in ("uri", "url"):
        kept = {key: value for key, value in schema.items() if key not in ("type", "format", "pattern", "maxLength")}
        return kept | {"enum": list(urls)}
    return schema


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
