"""The editor's form view of a workflow YAML, and back: the common fields only, everything else kept as written.

    form = read_form(text, path=where)                    # name, agents, team, termination, model, task
    text = apply_form(text, form_edited)                  # only the fields that differ from form_of(text) change
    text = renamed(text, "my-copy")                       # `name:` rewritten in place, comments kept

`apply_form` diffs the edited form against the form of the text it was read from and writes only what changed,
into the parsed data (so an agent's `temperature`, a `ref:` agent, `inputs` or `mcp` stay as they are); with no
change the text comes back byte for byte, comments included. A change rewrites the YAML with `yaml.safe_dump`:
the data is kept, comments and layout are not.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from autoqwen.agents import AGENT_KINDS, ExternalModel
from autoqwen.workflows.errors import SpecError
from autoqwen.workflows.loader import read_yaml_text
from autoqwen.workflows.spec import TEAM_TYPES, TerminationSpec, WorkflowSpec

__all__ = ["AgentForm", "WorkflowForm", "apply_form", "dump_yaml", "form_of", "read_form", "renamed"]

_TERMINATION = TerminationSpec()
_AGENT_FIELDS = ("name", "kind", "description", "system_message", "skills")


class AgentForm(BaseModel):
    """One agent as the form shows it; `source` is its index in the YAML the form was read from (None: new)."""

    model_config = ConfigDict(extra="forbid")
    source: int | None = Field(default=None, description="index in the YAML the form came from; null for a new one")
    editable: bool = Field(default=True, description="false for a `ref:` agent (or a broken item): kept as written")
    label: str = Field(default="", description="what a non-editable agent is, e.g. `ref: agents/critic.yaml`")
    name: str = ""
    kind: str = "assistant"
    description: str = ""
    system_message: str = ""
    skills: list[str] = Field(default_factory=list)


class WorkflowForm(BaseModel):
    """The common parts of a workflow as form fields (an empty text field means "none" where that is allowed)."""

    model_config = ConfigDict(extra="forbid")
    name: str = ""
    description: str = ""
    task: str = ""
    agents: list[AgentForm] = Field(default_factory=list)
    team_type: str = "round_robin"
    max_turns: int | None = 10
    termination_text: str = Field(default="TERMINATE", description="stop when a message mentions it; empty: never")
    max_messages: int | None = Field(default=40, description="stop after this many messages; null: no limit")
    model_kind: str = Field(default="embedded", description="embedded or external")
    model: str = Field(default="auto", description="the model: auto, a hub id, a file (embedded); a server's name")
    base_url: str = Field(default="", description="an external server's OpenAI base URL")


def form_of(data: Any) -> WorkflowForm:
    """The form of a workflow's parsed YAML, missing fields at their defaults; wrong types show as text or empty."""
    data = data if isinstance(data, dict) else {}
    agents = data.get("agents") if isinstance(data.get("agents"), list) else []
    team = data.get("team") if isinstance(data.get("team"), dict) else {}
    end = data.get("termination") if isinstance(data.get("termination"), dict) else {}
    model = data.get("model", "embedded")
    model = model if isinstance(model, dict) else {"kind": "embedded"} if model == "embedded" else {"model": model}
    external = model.get("kind", "external" if "base_url" in model else "embedded") == "external"
    text = end.get("text", _TERMINATION.text)
    return WorkflowForm(
        name=_text(data.get("name")),
        description=_text(data.get("description")),
        task=_text(data.get("task")),
        agents=[_agent_form(i, item) for i, item in enumerate(agents)],
        team_type=_text(team.get("type", "round_robin")),
        max_turns=_number(team.get("max_turns", 10)),
        termination_text="" if text is None else _text(text),
        max_messages=_number(end.get("max_messages", _TERMINATION.max_messages)),
        model_kind="external" if external else _text(model.get("kind", "embedded")),
        model=_text(model.get("model", "" if external else "auto")),
        base_url=_text(model.get("base_url", "")),
    )


def read_form(text: str, *, path: Path) -> WorkflowForm:
    """The form of workflow YAML text; SpecError if it is not YAML holding a mapping (`path` names it)."""
    return form_of(_mapping(text, path))


def apply_form(text: str, form: WorkflowForm, *, path: Path) -> str:
    """`text` with the fields where `form` differs from `read_form(text)` set to the form's values; SpecError if
    `text` is not YAML holding a mapping (`path` names it in messages)."""
    data = _mapping(text, path)
    before = form_of(data)
    if form == before:
        return text
    new = copy.deepcopy(data)
    for key in ("name", "description", "task"):
        if getattr(form, key) != getattr(before, key):
            _place(new, key, getattr(form, key), drop="" if key == "description" else None)
    if form.agents != before.agents:
        new["agents"] = _agents(data.get("agents"), before.agents, form.agents)
    if (form.team_type, form.max_turns) != (before.team_type, before.max_turns):
        team = dict(data["team"]) if isinstance(data.get("team"), dict) else {}
        if form.team_type != before.team_type:
            team["type"] = form.team_type
        if form.max_turns != before.max_turns:
            _set(team, "max_turns", form.max_turns, drop=None)
        _place(new, "team", _own(team, "type", TEAM_TYPES, "round_robin"))
    if (form.termination_text, form.max_messages) != (before.termination_text, before.max_messages):
        end = dict(data["termination"]) if isinstance(data.get("termination"), dict) else {}
        if form.termination_text != before.termination_text:
            end["text"] = form.termination_text or None
        if form.max_messages != before.max_messages:
            end["max_messages"] = form.max_messages
        _place(new, "termination", end)
    if (form.model_kind, form.model, form.base_url) != (before.model_kind, before.model, before.base_url):
        _place(new, "model", _model(data.get("model"), before, form))
    return dump_yaml(new)


def renamed(text: str, name: str) -> str:
    """`text` with its top-level `name:` value replaced by `name` in place (or a `name:` line added first)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)  # the caller has read it safely: no aliases, size capped
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == "name":
                block = isinstance(value, yaml.ScalarNode) and value.style in ("|", ">")
                return _splice(text, value.start_mark.index, value.end_mark.index, name, block)
    return f"name: {name}\n{text}"


def dump_yaml(data: Any) -> str:
    """YAML for a workflow's data: keys in their order, multi-line text as `|` blocks, short lists inline."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)


def _mapping(text: str, path: Path) -> dict[str, Any]:
    """The top-level mapping of `text` (an empty text is an empty one), read as the loader reads files."""
    data = read_yaml_text(text, path=path)
    if data is None:
        return {}
    if not isinstance(data, dict):  # the form would write a mapping over it and lose it
        raise SpecError(f"{path}:1: expected a mapping of fields at the top level", path=path, line=1)
    return data


def _splice(text: str, start: int, end: int, name: str, block: bool) -> str:
    """`text` with [start, end) (a scalar's span) replaced by `name`, keeping a space after the colon."""
    before = text[:start]
    if not before.endswith((" ", "\t", "\n")) and before.endswith(":"):
        before += " "
    return before + name + ("\n" if block else "") + text[end:]


def _agent_form(i: int, item: Any) -> AgentForm:
    if not isinstance(item, dict) or "ref" in item:
        label = f"ref: {_text(item.get('ref'))}" if isinstance(item, dict) else f"not an agent: {_text(item)[:80]}"
        return AgentForm(source=i, editable=False, label=label)
    skills = item.get("skills")
    return AgentForm(
        source=i,
        name=_text(item.get("name")),
        kind=_text(item.get("kind", "assistant")),
        description=_text(item.get("description")),
        system_message=_text(item.get("system_message")),
        skills=[_text(s) for s in skills] if isinstance(skills, list) else [],
    )


def _agents(items: Any, before: list[AgentForm], after: list[AgentForm]) -> list[Any]:
    """The agents list for the edited form: unchanged agents as written, changed ones patched, new ones built."""
    old = items if isinstance(items, list) else []
    agents: list[Any] = []
    for agent in after:
        known = agent.source is not None and 0 <= agent.source < len(old) and agent.source < len(before)
        original = old[agent.source] if known and agent.source is not None else None
        prior = before[agent.source] if known and agent.source is not None else AgentForm()
        if original is not None and (not prior.editable or agent == prior):
            agents.append(copy.deepcopy(original))
            continue
        if not agent.editable:
            continue  # a read-only row with no agent behind it: nothing to keep
        item: dict[str, Any] = copy.deepcopy(original) if isinstance(original, dict) else {}
        for key in _AGENT_FIELDS:
            value = getattr(agent, key)
            if original is None or value != getattr(prior, key):
                _set(item, key, value, drop="assistant" if key == "kind" else [] if key == "skills" else "")
        agents.append(_own(item, "kind", AGENT_KINDS, "assistant"))
    return agents


def _model(old: Any, before: WorkflowForm, form: WorkflowForm) -> Any:
    """The workflow's `model:` for the form's kind, model and base URL (an external server keeps its other fields)."""
    if form.model_kind == "embedded":
        return "embedded" if form.model in ("", "auto") else {"kind": "embedded", "model": form.model}
    if form.model_kind != "external":
        return {"kind": form.model_kind, "model": form.model}  # not a kind: the validator says so at its line
    model = dict(old) if isinstance(old, dict) and before.model_kind == "external" else {}
    model["base_url"], model["model"] = form.base_url, form.model
    return {key: value for key, value in model.items() if key in ExternalModel.model_fields}


def _own(item: dict[str, Any], tag: str, members: dict[str, type[BaseModel]], default: str) -> dict[str, Any]:
    """`item` without the fields its `tag` member does not have (a field of another kind would be an error)."""
    member = members.get(str(item.get(tag, default)))
    if member is None:
        return item
    return {key: value for key, value in item.items() if key in member.model_fields}


def _set(item: dict[str, Any], key: str, value: Any, *, drop: Any) -> None:
    """Set `key`, or remove it when `value` is `drop` (the field's default: written only when it says more)."""
    if value == drop:
        item.pop(key, None)
    else:
        item[key] = value


def _place(data: dict[str, Any], key: str, value: Any, *, drop: Any = None) -> None:
    """`_set` at the top level; a new key goes where the format lists it (`team:` before `task:`), not last."""
    if key in data or value == drop:
        _set(data, key, value, drop=drop)
        return
    order = list(WorkflowSpec.model_fields)
    later = {k for k in order[order.index(key) + 1 :]} if key in order else set()
    items = list(data.items())
    at = next((n for n, (k, _) in enumerate(items) if k in later), len(items))
    data.clear()
    data.update([*items[:at], (key, value), *items[at:]])


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _number(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Dumper(yaml.SafeDumper):
    """SafeDumper that indents lists under their key, writes short lists of plain values on one line (`[a, b]`)
    and multi-line strings as `|` blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.SequenceNode:
    plain = all(isinstance(item, str | int | float | bool) and "\n" not in str(item) for item in value)
    flow = plain and sum(len(str(item)) + 2 for item in value) < 60
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
