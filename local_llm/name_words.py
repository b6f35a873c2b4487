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
_READ_CHARS = 4096  # the start of a message read for the words of tool names (scoring reads 256 tokens of it)


def naming_words(tools: Sequence[tuple[str, Any]]) -> list[set[str]]:
    """For each tool, given as (name, parameter schema), the words that name it and no other offered tool: the
    words of its name (split at `_`, digits and camelCase, 3 letters or more, not generic ones such as "get" or
    "search") and the values of its enums that are words ("add" of a calculator's operation, "driving" of a
    travel mode), unless another tool's name or enums hold the same stem ("file" names neither read_file nor
    write_file)."""
    every = [name_words(name) | _enum_words(parameters) for name, parameters in tools]
    own = [(name_words(name) - GENERIC_WORDS) | _enum_words(parameters) for name, parameters in tools]
    out = []
    for i, words in enumerate(own):
        shared = {_stem(word) for j, other in enumerate(every) if j != i for word in other}
        out.append({word for word in words if _stem(word) not in shared})
    return out


def named_words(own: set[str], words: frozenset[str]) -> int:
    """How many of a tool's `own` words (`naming_words`) a message's `words` (`message_words`) hold, as a word
    they stem: send_email's "send" and "email" are 2 in "Send an email"."""
    return sum(any(stems(w, p) for w in words) for p in own)


def _enum_words(schema: Any) -> set[str]:
    """The enum values of a schema and its subschemas that are words of 3 letters or more, lower case."""
    found: set[str] = set()
    if isinstance(schema, dict):
        values = schema.get("enum")
        for value in values if isinstance(values, list) else ():
            if isinstance(value, str) and _WORD.fullmatch(value) and value.lower() not in _VAGUE_VALUES:
                found.add(value.lower())
        for sub in schema.values():
            found |= _enum_words(sub)
    elif isinstance(schema, list):
        for sub in schema:
            found |= _enum_words(sub)
    return found


def message_words(text: str) -> frozenset[str]:
    """The words of 3 letters or more, lower case, that the start of a message holds."""
    return frozenset(w for w in re.findall(r"[a-z]+", text[:_READ_CHARS].lower()) if len(w) >= 3)


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
