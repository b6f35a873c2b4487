"""The workflow YAML format, as pydantic models; `autoqwen workflows schema` exports it as JSON Schema.

name: write-review
description: A writer drafts, a critic reviews.
inputs:
  topic: {description: What to write about, default: local LLMs}
agents:
  - {name: writer, system_message: You write short articles.}
  - ref: agents/critic.yaml           # an agent file, relative to this one
team: {type: round_robin, max_turns: 4}
termination: {text: APPROVED, max_messages: 10, timeout_s: 300}
task: Write a short article about {topic}.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autoqwen.agents import AgentSpec, EmbeddedModel, HumanMode, ModelSpec

__all__ = ["InputSpec", "TeamSpec", "TerminationSpec", "WorkflowSpec"]

_SPEC = ConfigDict(extra="forbid", frozen=True)
MAX_TURNS_CAP = 100


class InputSpec(BaseModel):
    """One input of the task template; without a default it must be given at run time."""

    model_config = _SPEC
    description: str = ""
    default: str | None = None


class TeamSpec(BaseModel):
    """How the agents take turns."""

    model_config = _SPEC
    type: Literal["two_agent", "round_robin", "selector"] = Field(
        default="round_robin",
        description="two_agent: exactly two agents alternate; round_robin: in order; selector: the model picks",
    )
    max_turns: int = Field(default=10, ge=1, le=MAX_TURNS_CAP, description="hard cap on agent turns")
    selector_prompt: str | None = Field(default=None, description="selector: prompt used to pick the next agent")


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
    team: TeamSpec = TeamSpec()
    termination: TerminationSpec = TerminationSpec()
    human_input: HumanMode = Field(default="never", description="never | terminate | always")
    model: ModelSpec = Field(default_factory=EmbeddedModel, description="'embedded' or {base_url, model, ...}")
    code_execution: bool = Field(default=False, description="let code_executor agents run code")
    task: str = Field(description="the task, with {input} placeholders")

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
