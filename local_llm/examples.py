"""The examples a string parameter's description gives, and the user's words they pick out.

examples({"description": "Ticker symbol, e.g. AAPL"})                  # ["AAPL"]
shaped({"description": "Ticker symbol, e.g. AAPL"}, ["Tesla's", "TSLA"])   # ["TSLA"]: the example's shape
examples_named({"description": "Format: 'IMAX' or '2D'"}, "imax movies")    # ["IMAX"]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from autoqwen.local_llm.spans import EDGE

__all__ = ["examples", "examples_named", "shaped"]

_QUOTED = re.compile(r"(?<!\w)'([^'\n]{1,40})'(?!\w)|\"([^\"\n]{1,40})\"")
_GIVEN = re.compile(r"\b(?:e\.g\.|eg\.|for example|such as)[,:]?\s+(\S+)", re.IGNORECASE)
_FUNCTION_WORDS = frozenset({"all", "and", "any", "for", "from", "into", "none", "not", "or", "the", "yes", "with"})


def examples(schema: dict[str, Any]) -> list[str]:
    """The values a string parameter's description gives as examples: quoted in a list of two or more ("'IMAX',
    '2D' or '3D'"), or one word after "e.g.", "for example" or "such as" that ends there ("e.g. AAPL", "e.g.
    Europe/Paris,"; not "Hi" of "e.g. Hi Bob")."""
    description = str(schema.get("description", ""))
    quoted = _quoted(schema)
    given = [m.group(1).strip(EDGE) for m in _GIVEN.finditer(description) if _ends_there(m)]
    found = [*(quoted if len(quoted) >= 2 else []), *given]
    return [e for e in dict.fromkeys(found) if e and e.lower() not in _FUNCTION_WORDS]


def _ends_there(match: re.Match[str]) -> bool:
    """Whether the word after "e.g." is a whole example: a sign after it, or the end, "or", "and", "etc"."""
    rest = match.string[match.end() :]
    return match.group(1)[-1] in EDGE or not rest.strip() or bool(re.match(r"\s+(?:or|and|etc)\b", rest))


def examples_named(schema: dict[str, Any], text: str) -> list[str]:
    """The quoted examples of 3 characters or more of a free string's description ("could be 'IMAX', '2D' or
    '3D'") that the user's words `text` (lower case) hold."""
    if schema.get("type") != "string" or {"enum", "const", "format", "pattern"} & schema.keys():
        return []
    quoted = [e for e in _quoted(schema) if len(e) >= 3 and e.lower() not in _FUNCTION_WORDS]
    return [e for e in quoted if re.search(rf"(?<!\w){re.escape(e.lower())}(?!\w)", text)]


def _quoted(schema: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(a or b for a, b in _QUOTED.findall(str(schema.get("description", "")))))


def shaped(schema: dict[str, Any], spans: Sequence[str]) -> list[str]:
    """The `spans` that have the shape of a one-word example of the description unlike most words (capitals,
    digits, signs: "AAPL", "3pm", "Europe/Paris"), when any do; else all. Asked "What is Tesla's share price? Ticker
    TSLA." for a symbol "e.g. AAPL", SmolLM2-135M wrote "Tesla's share price"."""
    shapes = [shape for e in examples(schema) if " " not in e and (shape := _shape(e)) not in _PLAIN]
    if not shapes:
        return list(spans)
    fitting = [
        span
        for span in spans
        if len(span) >= 2 and any(_fits(_shape(span), shape) for shape in shapes) and " " not in span
    ]
    return fitting or list(spans)


Shape = tuple[str, bool, frozenset[str]]
_PLAIN: set[Shape] = {("a", False, frozenset()), ("Aa", False, frozenset())}  # a lower-case or capitalised word


def _shape(text: str) -> Shape:
    """Its letters' case ("A" capitals only, "a" small only, "Aa" both, "" none), whether it holds digits, and its
    other characters: "TSLA" ("A", False, {}), "Europe/Paris" ("Aa", False, {"/"})."""
    letters = "".join(c for c in text if c.isalpha())
    case = "" if not letters else "A" if letters.isupper() else "a" if letters.islower() else "Aa"
    return case, any(c.isdigit() for c in text), frozenset(c for c in text if not c.isalnum())


def _fits(span: Shape, example: Shape) -> bool:
    """Whether a span of this shape is written like the example: the same case and digits, its signs and more
    ("America/New_York" like "Europe/Paris")."""
    return span[:2] == example[:2] and example[2] <= span[2]
