"""Enum values that are standard codes, named by the user by their English names: an ISO 4217 currency ("Swiss
francs" is CHF, "yen" JPY) or a language as CLDR names them ("German" is de), through Babel's data.

    standard_name_mentions(words, "chf")   # [(12, False)]: "... into swiss francs", at "francs"

SmolLM2-135M, offered every currency, converted "2500 EUR into Swiss francs" to EUR, and translated "into Spanish"
into English: the codes were named by no word the user wrote.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

__all__ = ["Words", "standard_name_mentions"]

Words = tuple[tuple[int, str], ...]  # words of a text, each with where it starts


@functools.lru_cache(maxsize=4096)  # bounded: enum values come from clients
def _standard_names(code: str) -> tuple[tuple[tuple[str, ...], bool], ...]:
    """The English names (CLDR's, through Babel) of an ISO 4217 currency or a language `code` (lower case), as
    plain words, each with whether it is a currency's: "chf" is (("swiss", "franc"), True), "de" (("german",),
    False); none for other values, nor names with a qualifier in parentheses ("Chinese (Simplified)")."""
    english = _english()
    currency = english.currencies.get(code.upper()) if len(code) == 3 else None
    names = [(currency, True), (english.languages.get(code), False)]
    plain = [
        (re.findall(r"[^\W\d_]+", _plain(name)), is_currency) for name, is_currency in names if name and "(" not in name
    ]
    return tuple((tuple(words), is_currency) for words, is_currency in plain if words)


# Currency units that are also common English words: "in real time" names no Brazilian real.
_COMMON_WORDS = frozenset({"real", "mark", "gold", "won", "sol", "rights", "unit", "units", "code", "day", "funds"})


@functools.cache
def _english() -> Any:
    """Babel's English locale data (read once, when an enum is first named)."""
    from babel import Locale

    return Locale("en")


def standard_name_mentions(words: Words, code: str) -> list[tuple[int, bool]]:
    """Where `words` (the user's, lower case, each with where it starts) name `code` (lower case) by one of its
    standard names: the whole name ("Swiss francs", "German"), at its last word, or else the last word of a
    currency's longer name ("yen", "dollars"), flagged True: it counts as an abbreviation does, not where it
    names another value too ("Canadian dollars" is CAD, not USD)."""
    plain, index = _plain_words(words), _word_index(words)
    whole, last = [], []
    for name, is_currency in _standard_names(code):
        for i in (i for form in _forms(name[0]) for i in index.get(form, ())):
            if i + len(name) <= len(words) and all(plain[i + k] in _forms(part) for k, part in enumerate(name)):
                whole.append((words[i + len(name) - 1][0], False))
        if is_currency and len(name) > 1 and name[-1] not in _COMMON_WORDS:
            last += [(words[i][0], True) for form in _forms(name[-1]) for i in index.get(form, ())]
    return whole or last


def _forms(word: str) -> tuple[str, str, str]:
    return word, word + "s", word + "es"  # "francs", "euros"


def _plain(text: str) -> str:
    """`text` in lower case without accents: users write "krona" for "króna"."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


@functools.lru_cache(maxsize=16)
def _plain_words(words: Words) -> tuple[str, ...]:
    """Each of `words` plain (see `_plain`): read once per request."""
    return tuple(_plain(word) for _, word in words)


@functools.lru_cache(maxsize=16)
def _word_index(words: Words) -> dict[str, list[int]]:
    """The indexes in `words` of each plain word."""
    index: dict[str, list[int]] = {}
    for i, word in enumerate(_plain_words(words)):
        index.setdefault(word, []).append(i)
    return index
