"""Turn `KEY=VALUE` strings from the command line into values: the one parser of `--arg`, `--input` and the like.

split_pairs(["topic=owls", "q=a=b"])           # [("topic", "owls"), ("q", "a=b")]
parse_arguments(skill, ["max_length=100"])     # {"max_length": 100}, typed by the skill's schema
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from autoqwen.skills._skill import Skill
from autoqwen.skills.errors import SkillArgumentError

__all__ = ["parse_arguments", "split_pairs"]


def split_pairs(items: Iterable[str]) -> list[tuple[str, str]]:
    """`["a=1", "b=x=y"]` → `[("a", "1"), ("b", "x=y")]`, in order; the key is stripped, the value kept as is.

    Raises ValueError("expected KEY=VALUE, got 'x'") for an item with no `=` or an empty key; callers add which
    option or skill it was given to.
    """
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected KEY=VALUE, got {item!r}")
        pairs.append((key.strip(), value))
    return pairs


def parse_arguments(skill: Skill, pairs: Iterable[str]) -> dict[str, Any]:
    """`["url=http://x", "max_length=100", "y=[1,2]"]` → `{"url": "http://x", "max_length": 100, "y": [1, 2]}`.

    A parameter whose schema only takes strings keeps the text as is; any other value is read as JSON when it
    parses (numbers, booleans, lists, objects) and kept as text otherwise. Repeating a key makes a list.
    """
    properties: dict[str, Any] = skill.parameters["properties"]
    arguments: dict[str, Any] = {}
    try:
        split = split_pairs(pairs)
    except ValueError as exc:
        raise SkillArgumentError(f"skill {skill.name!r}: {exc}", skill=skill.name) from None
    for key, text in split:
        if key not in properties:
            known = ", ".join(properties) or "none"
            raise SkillArgumentError(
                f"skill {skill.name!r} has no parameter {key!r} (parameters: {known})", skill=skill.name
            )
        value = text if _types(properties[key]) == {"string"} else _json_or_text(text)
        if key in arguments:
            previous = arguments[key]
            arguments[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            arguments[key] = value
    return arguments


def _types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema node accepts at its top level ("any" when it does not say)."""
    found: set[str] = set()
    kind = schema.get("type")
    if isinstance(kind, str):
        found.add(kind)
    elif isinstance(kind, list):
        found.update(kind)
    for value in schema.get("enum", []):
        found.add("string" if isinstance(value, str) else "other")
    if "const" in schema:
        found.add("string" if isinstance(schema["const"], str) else "other")
    for key in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(key, []):
            found |= _types(member)
    return found or {"any"}


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
