"""Load workflow and agent YAML files into specs; every error names the file, the line and the field.

spec = load_workflow(Path("my-flow.yaml"), skills=load_skills())
spec, problems = check_workflow_text(text, path=folder / "my-flow.yaml", skills=load_skills())  # an editor's text
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from autoqwen.agents import AGENT_KINDS, MCP_TRANSPORTS, AgentSpec, AssistantSpec, EmbeddedModel, ExternalModel
from autoqwen.skills import SkillRegistry
from autoqwen.workflows.errors import InteropError, SpecError
from autoqwen.workflows.spec import TEAM_TYPES, WorkflowSpec

__all__ = [
    "MAX_YAML_BYTES",
    "check_workflow_text",
    "load_agent",
    "load_workflow",
    "read_bounded",
    "read_yaml",
    "read_yaml_text",
]

MAX_YAML_BYTES = 256 * 1024
_SMALLER = "a workflow file is far smaller"

Loc = tuple[str | int, ...]
T = TypeVar("T")

# The tagged unions of the format, by the field that tells their members apart. Pydantic puts the tag in the
# location of an error inside a member (agents.0.assistant.timeout_s); the messages leave it out and name it instead.
_UNIONS: tuple[tuple[str, Mapping[str, type[BaseModel]]], ...] = (
    ("kind", AGENT_KINDS),
    ("type", TEAM_TYPES),
    ("kind", {"embedded": EmbeddedModel, "external": ExternalModel}),
    ("transport", MCP_TRANSPORTS),
)
_WORKFLOW = TypeAdapter(WorkflowSpec)
_AGENT: TypeAdapter[AgentSpec] = TypeAdapter(AgentSpec)


def load_workflow(path: Path, *, skills: SkillRegistry | None = None) -> WorkflowSpec:
    """Read and validate a workflow file; agent refs are loaded; with `skills`, skill names are checked too."""
    spec, problems = _check_workflow(*_read(path), path, skills)
    if spec is None:
        raise problems[0]
    return spec


def check_workflow_text(
    text: str, *, path: Path, skills: SkillRegistry | None = None
) -> tuple[WorkflowSpec | None, list[SpecError]]:
    """Validate workflow YAML `text` as `load_workflow` would the file `path` (which need not exist: it names the
    text in messages, and agent refs are relative to its folder); the spec, or None and every problem found."""
    try:
        data, lines = _mapping(*_parse_text(_bounded(text, path), path), path)
    except SpecError as exc:
        return None, [exc]
    return _check_workflow(data, lines, path, skills)


def _check_workflow(
    data: dict[str, Any], lines: dict[Loc, int], path: Path, skills: SkillRegistry | None
) -> tuple[WorkflowSpec | None, list[SpecError]]:
    """The spec of a workflow's data, or None and its problems (the first is what the CLI reports)."""
    try:
        if isinstance(data.get("agents"), list):
            data["agents"] = [_resolve_ref(item, path, lines, i) for i, item in enumerate(data["agents"])]
    except SpecError as exc:
        return None, [exc]
    try:
        spec = _WORKFLOW.validate_python(data)
    except ValidationError as exc:
        return None, _problems(exc, data, path, lines)
    problems: list[SpecError] = []
    if skills is not None:
        for i, agent in enumerate(spec.agents):
            for j, name in enumerate(agent.skills if isinstance(agent, AssistantSpec) else ()):
                if name not in skills:
                    known = ", ".join(skills.names()) or "none"
                    message = f"unknown skill {name!r} (known: {known})"
                    problems.append(_error(path, lines, ("agents", i, "skills", j), message))
    return (None if problems else spec), problems


def load_agent(path: Path) -> AgentSpec:
    """Read and validate one agent file."""
    data, lines = _read(path)
    return _validate(_AGENT, data, path, lines)


def read_yaml(path: Path) -> Any:
    """The data of a YAML file, read safely: at most MAX_YAML_BYTES, no aliases, no Python tags; else SpecError."""
    return _parse(path)[0]


def read_yaml_text(text: str, *, path: Path) -> Any:
    """`read_yaml` for text already in memory (an editor's); `path` names it in messages."""
    return _parse_text(_bounded(text, path), path)[0]


def _bounded(text: str, path: Path) -> str:
    if len(text.encode("utf-8", errors="replace")) > MAX_YAML_BYTES:
        raise SpecError(f"{path}: larger than {_size(MAX_YAML_BYTES)}; {_SMALLER}", path=path)
    return text


def read_bounded(path: Path, limit: int, error: type[SpecError] | type[InteropError], why: str = "") -> bytes:
    """The bytes of a file that the user named and that may be hostile: at most `limit`, else `error` (also when
    it cannot be read), naming the file; `why` follows the size in the message."""
    try:
        with path.open("rb") as file:
            raw = file.read(limit + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}", path=path) from exc
    if len(raw) > limit:
        raise error(f"{path}: larger than {_size(limit)}" + (f"; {why}" if why else ""), path=path)
    return raw


def _size(limit: int) -> str:
    return f"{limit // 1024 // 1024} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


def _parse(path: Path) -> tuple[Any, yaml.Node | None]:
    """The data of a YAML file and its node tree, from one pass of a safe loader that refuses aliases.

    An alias repeats a whole subtree, so a few hundred bytes of nested aliases expand to millions of nodes ("billion
    laughs"); refusing them, and capping the file size, bounds the work by the size of the file.
    """
    raw = read_bounded(path, MAX_YAML_BYTES, SpecError, _SMALLER)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc}", path=path) from exc
    return _parse_text(text, path)


def _parse_text(text: str, path: Path) -> tuple[Any, yaml.Node | None]:
    """`_parse` of text already read; `path` names it in messages."""
    loader = _SafeNoAliasLoader(text)
    try:
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        raise SpecError(f"{path}:{line}: invalid YAML: {exc.problem}", path=path, line=line) from exc
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: invalid YAML: {exc}", path=path) from exc
    except RecursionError:
        raise SpecError(f"{path}: invalid YAML: nested too deeply", path=path) from None
    finally:
        loader.dispose()


class _SafeNoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses aliases (`*name`, and so `<<: *name` merges) where it meets them."""

    def compose_node(self, parent: yaml.Node | None, index: int | yaml.Node | None) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed: write the value out where it is used", mark
            )
        return super().compose_node(parent, index)  # type: ignore[arg-type]


def _read(path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    return _mapping(*_parse(path), path)


def _mapping(data: Any, node: yaml.Node | None, path: Path) -> tuple[dict[str, Any], dict[Loc, int]]:
    """The top-level mapping of a document and the line of every key and list item in it; else SpecError."""
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


def _validate(adapter: TypeAdapter[T], data: Any, path: Path, lines: dict[Loc, int]) -> T:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise _problems(exc, data, path, lines)[0] from None


def _problems(exc: ValidationError, data: Any, path: Path, lines: dict[Loc, int]) -> list[SpecError]:
    """One SpecError per distinct pydantic error, in pydantic's order (the CLI reports the first).

    An error at a field holding another error's field is left out: it only echoes that one (a list of agents
    "should have at least 1 item" when its only item is invalid).
    """
    found = [_explain(error, data) for error in exc.errors()]
    problems: dict[str, SpecError] = {}
    for loc, message in found:
        if not any(len(other) > len(loc) and other[: len(loc)] == loc for other, _ in found):
            problem = _error(path, lines, loc, message)
            problems.setdefault(str(problem), problem)
    return list(problems.values())


def _explain(error: ErrorDetails, data: Any) -> tuple[Loc, str]:
    """The location (as written in the file) and the message of a pydantic error."""
    loc, tag = _untagged(error["loc"], data)
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
        if tag is not None:
            message = _unknown_for(tag, str(loc[-1]))
    elif error["type"] == "missing":
        message = "field required"
    elif error["type"] == "union_tag_invalid":  # a bad `kind:` or `type:`, reported at its mapping
        context = error.get("ctx", {})
        loc = (*loc, str(context.get("discriminator", "")).strip("'"))
        expected = str(context.get("expected_tags", ""))
        first, _, last = expected.rpartition(", ")
        message = f"Input should be {first} or {last}" if first else f"Input should be {expected}"
    return loc, message


def _untagged(loc: Loc, data: Any) -> tuple[Loc, tuple[str, str] | None]:
    """`loc` without pydantic's union tags and class names, and the last tag it held as (field, tag)."""
    kept: list[str | int] = []
    tag: tuple[str, str] | None = None
    node = data
    for n, part in enumerate(loc):
        if isinstance(part, str) and part[:1].isupper() and not (isinstance(node, dict) and part in node):
            continue  # a member of an untagged union, named by its class (not a key such as an env variable's)
        member = _member(part)
        # A tag is never a key of the data there (the data holds it as the value of `kind:` or `type:`); the
        # last part of a location may be a missing key, so it is never a tag.
        if member is not None and n < len(loc) - 1 and not (isinstance(node, dict) and part in node):
            tag = (member, str(part))
            continue
        kept.append(part)
        node = node.get(part) if isinstance(node, dict) else node[part] if _indexable(node, part) else None
    return tuple(kept), tag


def _member(part: str | int) -> str | None:
    """The field that holds `part` when it is the tag of one of the format's unions."""
    return next((field for field, members in _UNIONS if part in members), None)


def _indexable(node: Any, part: str | int) -> bool:
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _unknown_for(tag: tuple[str, str], key: str) -> str:
    """`unknown field for kind assistant (it belongs to kind code_executor)`."""
    field, value = tag
    members = next(members for name, members in _UNIONS if name == field and value in members)
    owners = [name for name, model in members.items() if key in model.model_fields and name != value]
    hint = f" (it belongs to {field} {' or '.join(owners)})" if owners else ""
    return f"unknown field for {field} {value}{hint}"


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
