"""Scoring of the tool-use suite: calls against accepted answers, closed schemas, markup, final answers.

The rules follow BFCL's AST checker, simplified:

- a call is right when its name is the expected one, it has no key the answer does not list, every listed key
  without `""` among its values is present, and every present value matches one accepted value;
- strings match after BFCL's standardisation (lowercase; spaces and `,./-_*^` removed), so "New York" is not
  "New York, NY"; numbers match numerically (50 and 50.0 alike, 50 not 50000000), never a string for a number;
  booleans only booleans; lists element by element, in order; objects key by key with the same rules;
- calls of a parallel answer match in any order (the best pairing is scored);
- irrelevance: right when the reply makes no call.

Each wrong reply gets error kinds (`ERROR_KINDS`), the first one per reply counted in the breakdown.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from eval_cases import ANY, OPTIONAL, Case

__all__ = [
    "ERROR_KINDS",
    "FAILED",
    "IN_CONTENT",
    "MARKUP",
    "Error",
    "ParsedCall",
    "answer_holds",
    "closed",
    "has_markup",
    "parse_call",
    "score_case",
    "standardize",
    "validates",
    "value_matches",
]

WRONG_TOOL = "wrong tool"
EXTRA_KEY = "extra key"  # a key the tool's schema does not have: invented
UNASKED_KEY = "unasked key"  # a key of the schema the answer does not list
MISSING = "missing required"
WRONG_VALUE = "wrong value"
WRONG_COUNT = "wrong number of calls"
NO_CALL = "no call"
CALLED = "called when none fit"
UNPARSED = "arguments not JSON"
IN_CONTENT = "markup in content"
FAILED = "request failed"
ERROR_KINDS = (
    WRONG_TOOL, EXTRA_KEY, UNASKED_KEY, MISSING, WRONG_VALUE, WRONG_COUNT, NO_CALL, CALLED, UNPARSED, IN_CONTENT, FAILED
)  # fmt: skip
MARKUP = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
_BFCL_STRIP = re.compile(r"[ ,./\-_*^]")
_NUMBER_TEXT = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_IS_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class ParsedCall:
    """One tool call of a reply: its name, its arguments (None when they are not a JSON object) and their text."""

    name: str
    arguments: dict[str, Any] | None
    raw: str


@dataclass(frozen=True)
class Error:
    """What is wrong with a reply: one of `ERROR_KINDS`, and where."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


def parse_call(name: str, arguments: str) -> ParsedCall:
    """A call as the client receives it (arguments as a JSON string)."""
    try:
        args = json.loads(arguments)
    except (json.JSONDecodeError, TypeError):
        args = None
    return ParsedCall(name, args if isinstance(args, dict) else None, arguments)


def standardize(text: str) -> str:
    """BFCL's string standardisation: lowercase, without spaces and `,./-_*^`, single quotes as double."""
    return _BFCL_STRIP.sub("", text).lower().replace("'", '"')


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def value_matches(actual: Any, accepted: Any) -> bool:
    """Whether one value matches one accepted value (see the module docstring)."""
    if isinstance(accepted, str) and accepted == ANY:
        return actual is not None
    if isinstance(accepted, bool) or isinstance(actual, bool):
        return isinstance(accepted, bool) and isinstance(actual, bool) and actual == accepted
    if _is_number(accepted):
        return _is_number(actual) and math.isclose(actual, accepted, rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(accepted, str):
        return isinstance(actual, str) and standardize(actual.strip()) == standardize(accepted.strip())
    if isinstance(accepted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(accepted)
            and all(value_matches(a, b) for a, b in zip(actual, accepted, strict=True))
        )
    if isinstance(accepted, dict):
        return isinstance(actual, dict) and not _argument_errors(actual, accepted, None, "")
    return bool(actual == accepted)


def _argument_errors(
    actual: dict[str, Any], accepted: dict[str, list[Any]], schema: dict[str, Any] | None, where: str
) -> list[Error]:
    """Errors of one object of arguments against BFCL-style accepted values (key -> list of values)."""
    errors = []
    known = set((schema or {}).get("properties", {}))
    for key in actual:
        if key not in accepted:
            errors.append(Error(UNASKED_KEY if key in known else EXTRA_KEY, f"{where}{key}"))
    for key, values in accepted.items():
        if key not in actual:
            if OPTIONAL not in values:
                errors.append(Error(MISSING, f"{where}{key}"))
            continue
        options = [v for v in values if not (isinstance(v, str) and v == OPTIONAL)]
        if not any(value_matches(actual[key], v) for v in options):
            shown = json.dumps(actual[key], ensure_ascii=False)
            errors.append(Error(WRONG_VALUE, f"{where}{key}={shown[:60]} (accepted {json.dumps(options)[:80]})"))
    return errors


def _call_errors(call: ParsedCall, expected: dict[str, Any], schemas: dict[str, dict[str, Any]]) -> list[Error]:
    if call.name != expected["name"]:
        return [Error(WRONG_TOOL, f"{call.name} instead of {expected['name']}")]
    if call.arguments is None:
        return [Error(UNPARSED, call.raw[:60])]
    return _argument_errors(call.arguments, expected["arguments"], schemas.get(call.name), f"{call.name}.")


def score_case(case: Case, calls: list[ParsedCall]) -> list[Error]:
    """Everything wrong with a reply's calls to this case; empty when the reply is right."""
    if not case.answer:
        return [Error(CALLED, ", ".join(c.name for c in calls))] if calls else []
    if not calls:
        return [Error(NO_CALL)]
    if len(calls) != len(case.answer):
        return [Error(WRONG_COUNT, f"{len(calls)} instead of {len(case.answer)}")]
    best: list[Error] | None = None
    for order in itertools.permutations(case.answer):
        errors = [e for call, want in zip(calls, order, strict=True) for e in _call_errors(call, want, case.schemas)]
        if best is None or len(errors) < len(best):
            best = errors
        if not best:
            break
    return best or []


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JSON schema with `additionalProperties: false` on every object that lists properties and does
    not say whether it takes others (as the server's grammar, llama.cpp's and OpenAI's strict mode close them)."""
    out = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                close(item)
        elif isinstance(node, dict):
            if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for key, sub in node.items():
                if key in ("properties", "$defs", "definitions"):
                    for item in sub.values():
                        close(item)
                elif key in ("items", "anyOf", "oneOf", "allOf", "additionalProperties", "prefixItems"):
                    close(sub)

    close(out)
    return out


def validates(call: ParsedCall, schemas: dict[str, dict[str, Any]]) -> bool:
    """Whether a call names an offered tool and its arguments validate against the tool's closed schema."""
    import jsonschema

    schema = schemas.get(call.name)
    if schema is None or call.arguments is None:
        return False
    return bool(jsonschema.Draft202012Validator(closed(schema)).is_valid(call.arguments))


def has_markup(text: str | None) -> bool:
    """Whether a reply's content holds tool-calling protocol markup."""
    return text is not None and any(tag in text for tag in MARKUP)


def _number_holds(text: str, expected: str) -> bool:
    decimals = len(expected.split(".")[1]) if "." in expected else 0
    want = float(expected)
    for found in _NUMBER_TEXT.findall(text):
        if abs(float(found.replace(",", "")) - abs(want)) <= 0.5 * 10**-decimals + 1e-9:
            return True
    return False


def answer_holds(answer: str, expected: list[str]) -> bool:
    """Whether a final answer holds every expected value: numbers numerically ("5,555" is 5555, and a number
    rounded as the expected one is written counts), other values as case-insensitive substrings."""
    for value in expected:
        if _IS_NUMBER.match(value):
            if not _number_holds(answer, value):
                return False
        elif value.lower() not in answer.lower():
            return False
    return True
