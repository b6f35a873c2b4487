"""The words of a tool's or a parameter's name that a user's message holds: "Send an email" names send_email,
"for 3 nights" gives `nights` its value.

    own = naming_words([("send_email", None), ("calculator", {"enum": ["add", "multiply"]})])
    named_words(own[0], message_words("Send an email to Bob"))   # 2
    named_words(own[1], message_words("Add 1543 and 2981."))     # 1: a value of its enum
    stems("remind", "reminder")                                  # True: they share a stem
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["GENERIC_WORDS", "identifier_words", "message_words", "name_words", "named_words", "naming_words", "stems"]

# Words of tool names that name no tool in particular.
GENERIC_WORDS = frozenset(
    {"get", "set", "find", "search", "create", "list", "make", "show", "calculate", "compute", "fetch", "retrieve"}
    | {"check", "update", "delete", "add", "info", "data", "for", "the", "and", "from", "with", "tool", "current"}
    | {"details", "name", "number", "random"}
)
_WORD = re.compile(r"[A-Za-z]{3,}")
_VAGUE_VALUES = frozenset({"all", "any", "none", "auto", "default", "other", "both", "true", "false", "yes"})
_MAX_NAMING_VALUES = 32
_READ_CHARS = 4096  # the start of a message read for the words of tool names (scoring reads 256 tokens of it)


def naming_words(tools: Sequence[tuple[str, Any]]) -> list[set[str]]:
    """For each tool, given as (name, parameter schema), the English stems of the words that name it and no other
    offered tool: the words of its name (split at `_`, digits and camelCase, 3 letters or more, not generic ones
    such as "get" or "search") and the values of its enums that are words ("add" of a calculator's operation,
    "driving" of a travel mode), unless another tool's name or enums hold the same stem ("file" names neither
    read_file nor write_file)."""
    named = [(name_words(name), sorted(_enum_words(parameters))[:_MAX_NAMING_VALUES]) for name, parameters in tools]
    every = [{_stem(w) for w in [*words, *values]} for words, values in named]
    own = [{_stem(w) for w in [*(words - GENERIC_WORDS), *values]} for words, values in named]
    holders = Counter(stem for stems_of_tool in every for stem in stems_of_tool)
    return [{stem for stem in mine if holders[stem] == 1} for mine in own]


def named_words(own: set[str], words: frozenset[str]) -> int:
    """How many of a tool's `own` stems (`naming_words`) a message's stems (`message_words`) hold: send_email's
    "send" and "email" are 2 in "Send an email"."""
    return len(own & words)


def _enum_words(schema: Any) -> set[str]:
    """The values that are words of 3 letters or more, lower case, of the enums of a parameter schema, its
    properties, items and alternatives; an enum of more than `_MAX_NAMING_VALUES` values (countries, codes) names
    nothing, and a tool's first `_MAX_NAMING_VALUES` such words in order are all that name it."""
    found: set[str] = set()
    if not isinstance(schema, dict):
        return found
    values = schema.get("enum")
    if isinstance(values, list) and len(values) <= _MAX_NAMING_VALUES:
        found |= {v.lower() for v in values if isinstance(v, str) and _WORD.fullmatch(v)} - _VAGUE_VALUES
    properties, items = schema.get("properties"), schema.get("items")
    subs: list[Any] = [*properties.values()] if isinstance(properties, dict) else []
    subs.append(items)
    for key in ("anyOf", "oneOf"):
        if isinstance(alternatives := schema.get(key), list):
            subs.extend(alternatives)
    for sub in subs:
        found |= _enum_words(sub)
    return found


def message_words(text: str) -> frozenset[str]:
    """The English stems of the words of 3 letters or more that the start of a message holds."""
    return frozenset(_stem(w) for w in re.findall(r"[a-z]+", text[:_READ_CHARS].lower()) if len(w) >= 3)


def name_words(name: str) -> set[str]:
    """The words of an identifier, lower case, 3 letters or more: "searchPapers" has "search" and "papers"."""
    return {p.lower() for p in identifier_words(name) if len(p) >= 3}


def identifier_words(name: str) -> list[str]:
    """The words of an identifier as written, split at `_`, digits and camelCase: "periodsPerYear", "HOUR"."""
    return re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", name)


def stems(word: str, part: str) -> bool:
    """Whether the user's `word` and the name's `part` share an English stem (Snowball's: "emails" and "email",
    "remind" and "reminder"; not "current" and "currency")."""
    return _stem(word) == _stem(part)


@functools.lru_cache(maxsize=4096)  # bounded: the words come from clients
def _stem(word: str) -> str:
    return str(_stemmer().stemWord(word))


@functools.cache
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")
