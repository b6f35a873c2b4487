"""A skill as AutoGen component source code: a small function that calls the installed skill by name.

AutoGen serialises a `FunctionTool` as the source code of its function, which the loader `exec`s. A skill's own
source would not run on its own (it uses its module's imports and helpers, and injected arguments), so the
component carries this wrapper instead: the skill's name, description and parameters, and a body that asks
autoqwen's registry for the skill and calls it, validating its arguments there. It runs wherever autoqwen (and the
skill) is installed, AutoGen Studio's environment included, and the JSON holds no copy of the skill's code.
"""

from __future__ import annotations

import keyword
import math
import re
from typing import Any

from autoqwen.skills._skill import Skill

__all__ = ["WRAPPER_IMPORTS", "portable_source"]

WRAPPER_IMPORTS = ("typing",)
"""What the wrapper's annotations need (AutoGen's `global_imports`)."""

_JSON_TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}


def portable_source(skill: Skill) -> str:
    """The source of an async function with the skill's parameters that calls the installed skill by name."""
    properties: dict[str, Any] = skill.parameters.get("properties", {})
    required = set(skill.parameters.get("required", ()))
    params = [_parameter(name, schema, name in required) for name, schema in properties.items()]
    arguments = ", ".join(f"{name!r}: {name}" for name in properties)
    signature = f"*, {', '.join(params)}" if params else ""
    return (
        f"async def {_identifier(skill.name)}({signature}) -> typing.Any:\n"
        f"    {skill.description!r}\n"
        "    from autoqwen.skills import load_skills\n\n"
        f"    return await load_skills().get({skill.name!r}).acall({{{arguments}}})\n"
    )


def _parameter(name: str, schema: dict[str, Any], required: bool) -> str:
    """`name: annotation` with its default (None for an optional parameter the schema gives no default)."""
    annotation = _annotation(schema)
    if isinstance(schema.get("description"), str):  # AutoGen reads an Annotated string as the description
        annotation = f"typing.Annotated[{annotation}, {schema['description']!r}]"
    text = f"{name}: {annotation}"
    if required:
        return text
    return f"{text} = {_literal(schema.get('default'))}"


def _annotation(schema: dict[str, Any]) -> str:
    """A Python annotation for a JSON Schema: enums as typing.Literal, simple types as builtins, else Any."""
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str | int | bool) for v in enum):
        return f"typing.Literal[{', '.join(_literal(v) for v in enum)}]"
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        return _JSON_TYPES[kind]
    options = schema.get("anyOf")
    if isinstance(options, list):
        kinds = list(dict.fromkeys(_annotation(option) for option in options if isinstance(option, dict)))
        if kinds and "typing.Any" not in kinds:
            return f"typing.Union[{', '.join(kinds)}]" if len(kinds) > 1 else kinds[0]
    if kind == "null":
        return "None"
    return "typing.Any"


def _literal(value: Any) -> str:
    """Python source for a JSON value (a default or an enum member)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "None"
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    if isinstance(value, list):
        return f"[{', '.join(_literal(v) for v in value)}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(str(k))}: {_literal(v)}" for k, v in value.items()) + "}"
    return "None"


def _identifier(name: str) -> str:
    """A Python function name for a skill name (skill names may hold '-')."""
    text = re.sub(r"\W", "_", name)
    if not text or text[0].isdigit() or keyword.iskeyword(text):
        text = f"skill_{text}"
    return text
