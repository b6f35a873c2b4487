"""Turn `k=v` strings from the command line into JSON-style skill arguments, guided by the skill's schema."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from autoqwen.skills._skill import Skill
from autoqwen.skills.errors import SkillArgumentError

__all__ = ["parse_arguments"]


def parse_arguments(skill: Skill, pairs: Iterable[str]) -> dict[str, Any]:
    """`["url=http://x", "max_length=100", "y=[1,2]"]` → `{"url": "http://x", "max_length": 100, "y": [1, 2]}`.

    A parameter whose schema only takes strings keeps the text as is; any other value is read as JSON when it
    parses (numbers, booleans, lists, objects) and kept as text otherwise. Repeating a key makes a list.
    """
    properties: dict[str, Any] = skill.parameters["properties"]
    arguments: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SkillArgumentError(f"expected KEY=VALUE, got {pair!r}", skill=skill.name)
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
