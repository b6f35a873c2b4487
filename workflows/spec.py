"""The workflow YAML format, as pydantic models; `autoqwen workflows schema` exports it as JSON Schema.

name: write-review
description: A writer drafts, a critic reviews.
inputs:
  topic: {description: What to write about, default: local LLMs}
agents:
  - {name: writer, system_message: You write short articles.}
  - ref: agents/critic.yaml           # an agent file, relative to this one
team: {type: round_robin, max_turns: 4}   # or {type: selector, selector_prompt: ...}
termination: {text: APPROVED, max_messages: 10, timeout_s: 300}
task: Write a short article about {topic}.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from autoqwen.agents import AGENT_KINDS, AgentSpec, AssistantSpec, EmbeddedModel, HumanMode, McpServerSpec, ModelSpec

__all__ = [
    "TEAM_TYPES",
    "InputSpec",
    "RoundRobinTeam",
    "SelectorTeam",
    "TeamSpec",
    "TerminationSpec",
    "TwoAgentTeam",
    "WorkflowSpec",
]

_SPEC = ConfigDict(extra="forbid", frozen=True)
MAX_TURNS_CAP = 100


class InputSpec(BaseModel):
    """One input of the task template; without a default it must be given at run time."""

    model_config = _SPEC
    description: str = ""
    default: str | None = None


class _Team(BaseModel):
    """The fields every team type has."""

    model_config = _SPEC
    type: str
    max_turns: int = Field(default=10, ge=1, le=MAX_TURNS_CAP, description="hard cap on agent turns")


class RoundRobinTeam(_Team):
    """The agents speak in the order they are listed."""

    type: Literal["round_robin"] = Field(default="round_robin", description="in order (the default type)")


class TwoAgentTeam(_Team):
    """Exactly two agents, taking turns."""

    type: Literal["two_agent"] = Field(description="exactly two agents alternate")


class SelectorTeam(_Team):
    """The model picks who speaks next, from the agents' names and descriptions."""

    type: Literal["selector"] = Field(description="the model picks the next agent")
    selector_prompt: str | None = Field(default=None, description="prompt used to pick the next agent")


TEAM_TYPES: dict[str, type[BaseModel]] = {
    "two_agent": TwoAgentTeam,
    "round_robin": RoundRobinTeam,
    "selector": SelectorTeam,
}


def _default_type(data: Any) -> Any:
    # A discriminated union needs its tag present; a team without `type` has always been round_robin.
    if isinstance(data, dict) and "type" not in data:
        return {**data, "type": "round_robin"}
    return data


TeamSpec = Annotated[
    Annotated[TwoAgentTeam | RoundRobinTeam | SelectorTeam, Field(discriminator="type")],
    BeforeValidator(_default_type),
]
"""How the agents take turns: a union on `type` (two_agent; round_robin, the default; selector)."""


class TerminationSpec(BaseModel):
    """When the run stops (any condition ends it; team.max_turns always caps it)."""

    model_config = _SPEC
    text: str | None = Field(default="TERMINATE", description="stop when a message mentions this text")
    after: tuple[str, ...] = Field(default=(), description="stop once one of these agents has replied")
    max_messages: int | None = Field(default=40, ge=1, description="stop after this many messages")
    timeout_s: float | None = Field(default=900, gt=0, description="stop after this many seconds")


class WorkflowSpec(BaseModel):
    """A named workflow: agents, how they take turns, when they stop, and the task."""

    model_config = _SPEC
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", description="lower-case, digits, - and _")]
    description: str = ""
    tags: tuple[str, ...] = ()
    inputs: dict[str, InputSpec] = Field(default_factory=dict, description="task template inputs")
    agents: tuple[AgentSpec, ...] = Field(min_length=1, description="inline agents or {ref: path/to/agent.yaml}")
    team: TeamSpec = Field(default_factory=RoundRobinTeam, description="how the agents take turns")
    termination: TerminationSpec = TerminationSpec()
    human_input: HumanMode = Field(default="never", description="never | terminate | always")
    model: ModelSpec = Field(default_factory=EmbeddedModel, description="'embedded' or {base_url, model, ...}")
    code_execution: bool = Field(default=False, description="let code_executor agents run code")
    mcp: tuple[McpServerSpec, ...] = Field(
        default=(), description="MCP servers whose tools every assistant gets: {command, args, env} or {url}"
    )
    task: str = Field(description="the task, with {input} placeholders")

    @classmethod
    def from_snapshot(cls, data: Mapping[str, Any]) -> WorkflowSpec:
        """A workflow from a session's stored snapshot (`model_dump(mode="json")`), for resuming the session.

        Snapshots stored before agent kinds and team types had fields of their own list every field on every agent
        and team; the fields another kind owns are dropped from them, and the rest is validated as usual.
        """
        snapshot = dict(data)
        if isinstance(snapshot.get("agents"), list):
            snapshot["agents"] = [_own_fields(agent, "kind", AGENT_KINDS) for agent in snapshot["agents"]]
        if "team" in snapshot:
            snapshot["team"] = _own_fields(snapshot["team"], "type", TEAM_TYPES)
        return cls.model_validate(snapshot)

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("model") == "embedded":
            return {**data, "model": {"kind": "embedded"}}
        if isinstance(data, dict) and isinstance(data.get("model"), dict) and "base_url" in data["model"]:
            return {**data, "model": {"kind": "external", **data["model"]}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> WorkflowSpec:
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be unique, got {names}")
        if self.team.type == "two_agent" and len(self.agents) != 2:
            raise ValueError(f"a two_agent team needs exactly 2 agents, got {len(self.agents)}")
        for name in self.termination.after:
            if name not in names:
                raise ValueError(f"termination.after names {name!r}, which is not one of the agents {names}")
        for placeholder in self.placeholders():
            if placeholder not in self.inputs:
                raise ValueError(f"task uses {{{placeholder}}} but inputs has no {placeholder!r}")
        return self

    def skill_names(self) -> list[str]:
        """The skills its agents call, in order, each once."""
        return list(dict.fromkeys(s for a in self.agents if isinstance(a, AssistantSpec) for s in a.skills))

    def mcp_servers(self) -> list[McpServerSpec]:
        """The MCP servers of the workflow and of its assistants, each once."""
        servers = [*self.mcp, *(s for a in self.agents if isinstance(a, AssistantSpec) for s in a.mcp)]
        return list({s.model_dump_json(): s for s in servers}.values())

    def placeholders(self) -> list[str]:
        """The `{name}` placeholders of the task template."""
        return [field for _, field, _, _ in string.Formatter().parse(self.task) if field]

    def render_task(self, given: dict[str, str]) -> str:
        """The task with inputs filled in: given values, else defaults; a missing one raises KeyError."""
        values = {name: given.get(name, spec.default) for name, spec in self.inputs.items()}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            raise KeyError(missing[0])
        return self.task.format_map(values)


def _own_fields(item: Any, tag: str, members: Mapping[str, type[BaseModel]]) -> Any:
    """`item` without the fields its union member does not have (left as is when its tag is unknown)."""
    if not isinstance(item, dict) or item.get(tag) not in members:
        return item
    own = members[item[tag]].model_fields
    return {key: value for key, value in item.items() if key in own}
