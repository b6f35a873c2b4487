"""Turn a skill function's signature into a pydantic argument model and the tool's JSON schema."""

from __future__ import annotations

import inspect
import json
import typing
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from autoqwen.skills.errors import SkillDefinitionError

__all__ = ["Injected", "build_args_model", "injected_names", "parameters_schema"]

T = TypeVar("T")


class _InjectedMarker:
    """Metadata that hides a parameter from the model: callers (tests, the runner) may pass it, the model may not."""

    def __repr__(self) -> str:
        return "Injected"


_INJECTED = _InjectedMarker()

Injected = Annotated[T, _INJECTED]
"""`client: Injected[httpx.Client | None] = None`: a parameter left out of the tool schema (it must have a default)."""

# Keys whose values are data, not schema nodes: never strip a "title" inside them.
_DATA_KEYS = frozenset({"default", "enum", "const", "examples"})
_MAPPING_KEYS = frozenset({"properties", "$defs", "patternProperties"})


def _is_injected(annotation: Any) -> bool:
    return typing.get_origin(annotation) is Annotated and any(m is _INJECTED for m in annotation.__metadata__)


def _split_description(annotation: Any) -> tuple[Any, str | None]:
    """`Annotated[int, "How many", Field(ge=1)]` → (`Annotated[int, Field(ge=1)]`, "How many")."""
    if typing.get_origin(annotation) is not Annotated:
        return annotation, None
    base, *metadata = typing.get_args(annotation)
    texts = [m for m in metadata if isinstance(m, str)]
    rest = [m for m in metadata if not isinstance(m, str)]
    stripped = Annotated[(base, *rest)] if rest else base
    return stripped, (texts[0] if texts else None)


def _signature(func: Callable[..., Any], name: str) -> tuple[inspect.Signature, dict[str, Any]]:
    try:
        hints = typing.get_type_hints(func, include_extras=True)
    except Exception as exc:
        raise SkillDefinitionError(f"skill {name!r}: its type hints cannot be resolved ({exc})", skill=name) from exc
    return inspect.signature(func), hints


def injected_names(func: Callable[..., Any], name: str) -> frozenset[str]:
    """Names of the parameters marked `Injected`, which the model never sees."""
    signature, hints = _signature(func, name)
    return frozenset(p for p in signature.parameters if _is_injected(hints.get(p)))


def build_args_model(func: Callable[..., Any], name: str) -> type[BaseModel]:
    """A pydantic model of the arguments the model may pass (unknown ones are rejected)."""
    signature, hints = _signature(func, name)
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        where = f"skill {name!r}, parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise SkillDefinitionError(f"{where}: *args and **kwargs cannot be described to a model", skill=name)
        if param.kind is param.POSITIONAL_ONLY:
            raise SkillDefinitionError(f"{where}: positional-only parameters cannot be passed by name", skill=name)
        if param.name not in hints:
            raise SkillDefinitionError(f"{where}: add a type hint (it becomes the tool schema)", skill=name)
        annotation = hints[param.name]
        if _is_injected(annotation):
            if param.default is param.empty:
                raise SkillDefinitionError(f"{where}: an Injected parameter needs a default", skill=name)
            continue
        if param.name.startswith("_"):
            raise SkillDefinitionError(f"{where}: parameter names may not start with '_'", skill=name)
        annotation, description = _split_description(annotation)
        default = param.default
        if isinstance(default, FieldInfo):
            if description and not default.description:
                default = FieldInfo.merge_field_infos(default, description=description)
            fields[param.name] = (annotation, default)
        else:
            value = ... if default is param.empty else default
            # An explicit description=None would erase one given inside Annotated[..., Field(description=...)].
            info = Field(value, description=description) if description else Field(value)
            fields[param.name] = (annotation, info)
    try:
        return create_model(f"{name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
    except Exception as exc:
        raise SkillDefinitionError(f"skill {name!r}: its parameters do not form a schema ({exc})", skill=name) from exc


def parameters_schema(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The OpenAI `parameters` object: references inlined and pydantic's generated titles dropped (short prompts)."""
    try:
        raw = model.model_json_schema()
        defs = raw.get("$defs", {})
        schema = _clean(_inline(raw, defs, ()))
        json.dumps(schema)
    except Exception as exc:
        raise SkillDefinitionError(f"skill {name!r}: no JSON schema for its parameters ({exc})", skill=name) from exc
    return {
        "type": "object",
        "properties": schema.get("properties", {}),
        "required": schema.get("required", []),
        "additionalProperties": False,
    }


def _inline(node: Any, defs: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_inline(item, defs, seen) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        key = ref.removeprefix("#/$defs/")
        if key in seen:
            raise ValueError(f"the recursive type {key!r} cannot be inlined into a tool schema")
        out.update(_inline(defs[key], defs, (*seen, key)))
    for key, value in node.items():
        if key in ("$ref", "$defs"):
            continue
        out[key] = value if key in _DATA_KEYS else _inline(value, defs, seen)
    return out


def _clean(node: Any, *, mapping: bool = False) -> Any:
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if not isinstance(node, dict):
        return node
    if mapping:
        return {key: _clean(value) for key, value in node.items()}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in _DATA_KEYS:
            out[key] = value
        else:
            out[key] = _clean(value, mapping=key in _MAPPING_KEYS)
    return out
