"""Tools written as one-line signatures for the prompt, instead of their full JSON schemas.

    get_weather(city: string (City name), unit?: "celsius" | "fahrenheit" = "celsius"): Get the weather.

A signature takes far fewer tokens than the tool's JSON schema, so each request reads its prompt faster, and a
small model picks the right tool more often (docs/tool-calling.md). The grammar, not the prompt, guarantees that
arguments match the schema.
"""

from __future__ import annotations

import json
from typing import Any

from autoqwen.local_llm.protocol import Tool

__all__ = ["signature", "type_text"]


def signature(tool: Tool) -> str:
    """`name(arg: type, optional?: type = default): description` for one tool."""
    function = tool.function
    params = function.parameters or {}
    required = set(params.get("required", []))
    args = ", ".join(
        _argument(name, schema, name in required) for name, schema in (params.get("properties") or {}).items()
    )
    head = f"{function.name}({args})"
    description = " ".join((function.description or "").split())
    return f"{head}: {description}" if description else head


def _argument(name: str, schema: Any, required: bool) -> str:
    text = f"{name}{'' if required else '?'}: {type_text(schema)}"
    if isinstance(schema, dict):
        if description := " ".join(str(schema.get("description", "")).split()):
            text += f" ({description})"
        if "default" in schema:
            text += f" = {json.dumps(schema['default'], ensure_ascii=False)}"
    return text


def type_text(schema: Any) -> str:
    """A short, readable type for a JSON schema: `string`, `integer 1..10`, `"a" | "b"`, `{x: number}`."""
    if not isinstance(schema, dict):
        return "any"
    if "const" in schema:
        return json.dumps(schema["const"], ensure_ascii=False)
    if "enum" in schema:
        return " | ".join(json.dumps(v, ensure_ascii=False) for v in schema["enum"])
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return " | ".join(type_text(s) for s in schema[key])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(type_text({**schema, "type": k}) for k in kind)
    if kind == "object" and isinstance(schema.get("properties"), dict):
        required = set(schema.get("required", []))
        inner = ", ".join(_argument(k, v, k in required) for k, v in schema["properties"].items())
        return f"{{{inner}}}"
    if kind == "array":
        return f"array of {type_text(schema.get('items', {}))}"
    if kind in ("integer", "number") and ("minimum" in schema or "maximum" in schema):
        return f"{kind} {schema.get('minimum', '')}..{schema.get('maximum', '')}"
    if kind in ("string", "integer", "number", "boolean", "null", "object"):
        pattern = schema.get("format")
        return f"{kind} ({pattern})" if kind == "string" and pattern else kind
    return json.dumps(schema, ensure_ascii=False)  # $ref and the like: the schema itself says it best
