"""Which values of an enum a user's message names: the value itself ("in fahrenheit"), a word it begins or stems
("euros", "multiplied"), the word or two it abbreviates ("kilometers" for km), its English name for a standard
code (`code_names`: "Swiss francs" for CHF), or another word for the same arithmetic operation ("times").

    named_values("convert 26.2 miles to kilometers", ["km", "mi", "kg"])   # {"km": [22], "mi": [13]}
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import Any

from autoqwen.local_llm.code_names import Words, standard_name_mentions

__all__ = ["named_values"]


def named_values(text: str, enum: list[Any]) -> dict[str, list[int]]:
    """The string values of `enum` the user (`text`, lower case) names, each with where the user does: the value as
    a word or phrase, a word it begins or stems ("eur": "euros", "multiply": "multiplied"), or, for a code of 2 to
    4 letters, the word or two it abbreviates ("km": "kilometers", "jpy": "Japanese yen") unless that word names
    another value itself ("fahrenheit" is not "ft") or abbreviates several ("english": en or es?). Asked to convert
    "26.2 miles to kilometers", SmolLM2-135M chose `km` for both units among all ten."""
    found = {v: _mentions_of(text, v) for v in enum if isinstance(v, str)}
    direct = {at for hits in found.values() for at, by_abbreviation in hits if not by_abbreviation}
    abbreviated = Counter(at for hits in found.values() for at, by_abbreviation in hits if by_abbreviation)
    ambiguous = direct | {at for at, count in abbreviated.items() if count > 1}  # "english": en or es?
    kept = {v: [at for at, abbr in hits if not (abbr and at in ambiguous)] for v, hits in found.items()}
    return {v: hits for v, hits in kept.items() if hits}


def _mentions_of(text: str, value: str) -> list[tuple[int, bool]]:
    """Where `value` is named in `text` (see `named_values`), each with whether by abbreviation."""
    value = value.lower().strip()
    if not value:
        return []
    whole = rf"(?<![\w'\u2019]){re.escape(value)}(?![\w'\u2019])"  # not the m of "I'm"
    if found := [(m.start(), False) for m in re.finditer(whole, text)]:
        return found
    if not (value.isalpha() and len(value) >= 2):
        return []
    words = _words(text)
    if found := standard_name_mentions(words, value):
        return found
    if found := [(at, False) for at, word in words if _same_operation(value, word)]:
        return found
    stem = value if len(value) < 5 else value[:-1]  # "multiply": "multiplied"
    if len(value) >= 3 and (found := [(at, False) for at, word in words if word.startswith(stem)]):
        return found  # two letters begin too many words by chance: "fr" is not "from"
    quoted = _quoted_text(text)  # words to act on, not choices: "'Where is the station?' into German" is not `it`
    return [
        (at, True)
        for i, (at, word) in enumerate(words)
        if len(value) <= 4
        and word[0] == value[0]
        and not any(a <= at < b for a, b in quoted)
        and _abbreviates(value, word, words[i + 1][1] if i + 1 < len(words) else "")
    ]


# Words that name the same arithmetic operation: "12 times 7" names `multiply`, "the sum of" `add`.
_OPERATIONS = (
    frozenset({"add", "addition", "plus", "sum"}),
    frozenset({"subtract", "subtraction", "sub", "minus", "difference"}),
    frozenset({"multiply", "multiplication", "mul", "times"}),
    frozenset({"divide", "division", "div", "divided", "quotient"}),
)


def _same_operation(value: str, word: str) -> bool:
    """Whether the enum `value` and the user's `word` name the same arithmetic operation (as different words)."""
    return value != word and any(value in group and word in group for group in _OPERATIONS)


@functools.lru_cache(maxsize=16)
def _quoted_text(text: str) -> tuple[tuple[int, int], ...]:
    """Where `text` holds quoted phrases (from an opening quote after no letter to its closing one)."""
    found = re.finditer(r"(?<!\w)(?:'[^']+'|\"[^\"]+\"|\u2018[^\u2019]+\u2019|\u201c[^\u201d]+\u201d)", text)
    return tuple(m.span() for m in found)


@functools.lru_cache(maxsize=16)
def _words(text: str) -> Words:
    """The words of `text` with where each starts (not the m of "I'm"): read once per request, not once for each
    value of each enum, which the schema's two passes each look up."""
    return tuple((m.start(), m.group()) for m in re.finditer("(?<!['\u2019])[^\\W\\d_]+", text))


def _abbreviates(code: str, word: str, following: str) -> bool:
    """Whether `code` takes its first letter from `word`'s, then letters of `word` in order, then perhaps the first
    letter of `following` and letters of it in order ("km": "kilometers", "usd": "us dollars"), from words at least
    3 letters longer than the code."""

    def subsequence(letters: str, text: str) -> bool:
        rest = iter(text)
        return all(letter in rest for letter in letters)

    for cut in range(1, len(code) + 1):
        head, tail = code[1:cut], code[cut:]
        used = word + following if tail else word
        if (
            len(used) >= len(code) + 3  # shorter words abbreviate by chance: "it" is not "into"
            and subsequence(head, word[1:])
            and (not tail or (following[:1] == tail[0] and subsequence(tail[1:], following[1:])))
        ):
            return True
    return False
