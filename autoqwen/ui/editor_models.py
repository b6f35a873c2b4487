"""The wire types of the workflow editor's API (autoqwen/ui/editor_api.py): requests, answers, the 400 body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from autoqwen.local_llm.protocol import ErrorResponse
from autoqwen.ui.workflow_form import WorkflowForm

__all__ = [
    "DuplicateBody",
    "FormAnswer",
    "FormBody",
    "InvalidWorkflow",
    "Problem",
    "SaveBody",
    "SavedWorkflow",
    "SpecSummary",
    "Validation",
    "YamlBody",
]


class YamlBody(BaseModel):
    """A workflow's YAML text; `name` is the workflow it will be saved as (its folder anchors agent refs)."""

    model_config = ConfigDict(extra="forbid")
    yaml: str
    name: str | None = None


class SaveBody(BaseModel):
    """The YAML to save; `overwrite` lets it replace the user's file of that name (else 409 when there is one)."""

    model_config = ConfigDict(extra="forbid")
    yaml: str
    overwrite: bool = False


class DuplicateBody(BaseModel):
    """The name of the copy."""

    model_config = ConfigDict(extra="forbid")
    new_name: str


class FormBody(BaseModel):
    """The YAML the form was read from and the form as edited."""

    model_config = ConfigDict(extra="forbid")
    yaml: str
    form: WorkflowForm


class Problem(BaseModel):
    """One problem of a workflow text: its line (None when it has none), field (`agents[1].system_message`), why."""

    line: int | None
    field: str | None = None
    message: str


class SpecSummary(BaseModel):
    """What a valid workflow holds, in short."""

    name: str
    description: str
    agents: list[str]
    team: str
    max_turns: int
    skills: list[str]


class Validation(BaseModel):
    """The validator's answer; `taken` says whether a builtin or a user workflow already has the YAML's name."""

    ok: bool
    errors: list[Problem]
    spec: SpecSummary | None = None
    taken: str | None = Field(default=None, description="builtin | user | null")


class FormAnswer(BaseModel):
    """The form view's fields, and the YAML they were read from or written into."""

    form: WorkflowForm
    yaml: str | None = None


class SavedWorkflow(BaseModel):
    """A workflow file the editor wrote (or deleted)."""

    name: str
    path: str
    created: bool = False
    etag: str | None = None


class InvalidWorkflow(ErrorResponse):
    """The body of a 400 for a workflow that does not validate: the error, plus every problem (`errors`)."""

    errors: list[Problem]
