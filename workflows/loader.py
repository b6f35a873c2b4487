"""Load workflow and agent YAML files into specs; every error names the file, the line and the field.

spec = load_workflow(Path("my-flow.yaml"), skills=load_skills())
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from autoqwen.agents import AgentSpec
from autoqwen.skills import SkillRegistry
from autoqwen.workflows.errors import SpecError
from autoqwen.workflows.spec import WorkflowSpec

__all__ = ["load_agent", "load_workflow"]

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


def load_workflow(path: Path, *, skills: SkillRegistry | None = None) -> WorkflowSpec:
    """Read and validate a workflow file; agent refs are loaded; with `skills`, skill names are checked too."""
    data, lines = _read(path)
    if isinstance(data, dict) and isinstance(data.get("agents"), list):
        data["agents"] = [_resolve_ref(item, path, lines, i) for i, item in enumerate(data["agents"])]
    spec = _validate(WorkflowSpec, data, path, lines)
    if skills is not None:
        for i, agent in enumerate(spec.agents):
            for j, name in enumerate(agent.skills):
                if name not in skills:
                    known = ", ".join(skills.names()) or "none"
                    raise _error(path, lines, ("agents", i, "skills", j), f"unknown skill {name!r} (known: {known})")
    return spec


def load_agent(path: Path) -> AgentSpec:
    """Read and validate one agent file."""
    data, lines = _read(path)
    return _validate(AgentSpec, data, path, lines)


def _read(path: Path) -> tuple[Any, dict[Loc, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read: {exc.strerror}", path=path) from exc
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError(f"{path}:{line}: invalid YAML: {exc.problem}", path=path, line=line) from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: expected a mapping of fields at the top level", path=path, line=1)
    lines: dict[Loc, int] = {}
    _index(node, (), lines)
    return data, lines


def _index(node: yaml.Node | None, loc: Loc, lines: dict[Loc, int]) -> None:
    """Record the line of every key and list item, by its location in the document."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*loc, key.value)] = key.start_mark.line + 1
            _index(value, (*loc, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), lines)


def _validate(model: type[M], data: Any, path: Path, lines: dict[Loc, int]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = tuple(part for part in first["loc"] if not (isinstance(part, str) and part[:1].isupper()))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown field"
        elif first["type"] == "missing":
            message = "field required"
        raise _error(path, lines, loc, message) from None


def _error(path: Path, lines: dict[Loc, int], loc: Loc, message: str) -> SpecError:
    line = next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), 1)
    field = ".".join(str(part) for part in loc) or None
    where = f"{field}: " if field else ""
    return SpecError(f"{path}:{line}: {where}{message}", path=path, line=line, field=field)


def _resolve_ref(item: Any, path: Path, lines: dict[Loc, int], i: int) -> Any:
    if not (isinstance(item, dict) and "ref" in item):
        return item
    if set(item) != {"ref"}:
        raise _error(path, lines, ("agents", i), "an agent ref takes only `ref: path/to/agent.yaml`")
    target = (path.parent / str(item["ref"])).resolve()
    if not target.is_file():
        raise _error(path, lines, ("agents", i, "ref"), f"agent file not found: {target}")
    return load_agent(target).model_dump()
