"""The words of a tool's or a parameter's name that a user's message holds: "Send an email" names send_email,
"for 3 nights" gives `nights` its value.

    named_words("send_email", message_words("Send an email to Bob"))   # 2
    stems("remind", "reminder")                       # True: they share a stem
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["GENERIC_WORDS", "identifier_words", "message_words", "name_words", "named_words", "stems"]

# Words of tool names that name no tool in particular.
GENERIC_WORDS = frozenset(
    {"get", "set", "find", "search", "create", "list", "make", "show", "calculate", "compute", "fetch", "retrieve"}
    | {"check", "update", "delete", "add", "info", "data", "for", "the", "and", "from", "with", "tool", "current"}
    | {"details", "name", "number", "random"}
)
_READ_CHARS = 4096  # the start of a message read for the words of tool names (scoring reads 256 tokens of it)


def named_words(name: str, words: frozenset[str], others: list[str] | None = None) -> int:
    """How many words of a tool's `name` (split at `_`, digits and camelCase, 3 letters or more, not generic ones
    such as "get" or "search", nor words of the `others` tools' names: "file" names neither read_file nor
    write_file) a message's `words` (`message_words`) hold, as a word they stem: "send_email" has 2 in "Send an
    email"."""
    shared = {_stem(part) for other in others or [] for part in name_words(other)}
    own = [p for p in name_words(name) - GENERIC_WORDS if _stem(p) not in shared]
    return sum(any(stems(w, p) for w in words) for p in own)


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
