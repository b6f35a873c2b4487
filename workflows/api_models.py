"""The HTTP API's wire types for workflows and sessions (the OpenAI endpoints' own are in local_llm.protocol).

    POST /v1/workflows/write-review/runs   {"inputs": {"topic": "local LLMs"}, "max_turns": 2, "stream": true}
    POST /v1/sessions/ID/input             {"request_id": "9f0c...", "text": "Shorter, please."}
    POST /v1/sessions/ID/resume            {"max_turns": 4, "human": "terminate", "stream": true}

Requests refuse fields they do not know (`extra="forbid"`): a mistyped option is a 400 naming it, not a run with
defaults.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from autoqwen.agents import HumanMode
from autoqwen.local_llm.protocol import SEED_MAX, SEED_MIN
from autoqwen.workflows.records import Message, Session, SessionStatus

__all__ = [
    "InputAccepted",
    "InputAnswer",
    "InputInfo",
    "ResumeRequest",
    "ResumeStarted",
    "RunOutcome",
    "RunRequest",
    "RunSummary",
    "SessionList",
    "WorkflowInfo",
    "WorkflowList",
]

_HUMAN = (
    "human input mode: never (user proxies give their auto_reply), always (each user proxy turn asks for an "
    "answer: an `input_request` event, answered with POST /v1/sessions/{id}/input), terminate (asked for feedback "
    "when the team stops: an answer runs it again with it as the task, an empty one ends the run); default never, "
    "so a client that does not answer never blocks a run"
)


class RunRequest(BaseModel):
    """Body of POST /v1/workflows/{name}/runs: the options of `autoqwen run`."""

    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, str] = Field(default_factory=dict, description="the task's inputs, by name")
    max_turns: Annotated[int, Field(ge=1, le=100)] | None = Field(default=None, description="cap on agent turns")
    human: HumanMode = Field(default="never", description=_HUMAN)
    seed: Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX)] | None = Field(default=None, description="sampling seed")
    stream: bool = Field(default=False, description="answer with the run's events as SSE, else one JSON result")


class ResumeRequest(BaseModel):
    """Body of POST /v1/sessions/{id}/resume: the options of `autoqwen run --resume`."""

    model_config = ConfigDict(extra="forbid")
    max_turns: Annotated[int, Field(ge=1, le=100)] | None = Field(default=None, description="cap on agent turns")
    human: HumanMode = Field(default="never", description=_HUMAN)
    seed: Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX)] | None = Field(default=None, description="sampling seed")
    stream: bool = Field(default=False, description="answer with the run's events as SSE, else its session id")


class ResumeStarted(BaseModel):
    """The answer to a resume that is not streamed: the session now running (its events: GET .../events)."""

    session_id: str
    workflow: str


class InputAnswer(BaseModel):
    """Body of POST /v1/sessions/{id}/input: the answer to the run's pending `input_request`."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(max_length=200, description="the `request_id` of the input_request event answered")
    text: str = Field(max_length=100_000, description="the answer; what an empty one means depends on the mode")


class InputAccepted(BaseModel):
    """The answer to POST /v1/sessions/{id}/input: the request answered; the run goes on."""

    session_id: str
    request_id: str


class InputInfo(BaseModel):
    """One input of a workflow's task."""

    description: str = ""
    default: str | None = None
    required: bool


class WorkflowInfo(BaseModel):
    """A named workflow as GET /v1/workflows lists it; `problem` says why it cannot run."""

    name: str
    source: Literal["builtin", "user"]
    description: str
    inputs: dict[str, InputInfo] = Field(default_factory=dict)
    model: str = Field(description='"workflow:NAME": the name to ask /v1/chat/completions for')
    problem: str | None = None


class WorkflowList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WorkflowInfo]


class RunSummary(BaseModel):
    """How a run ended: the `end` event of a stream, and the head of a JSON result."""

    session_id: str
    workflow: str
    status: SessionStatus
    stop_reason: str | None = None
    by_cap: bool = Field(default=False, description="stopped by the turn cap rather than its termination rule")
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    summary: str | None = Field(default=None, description="the last agent message (500 characters at most)")
    error: str | None = None

    @classmethod
    def of(cls, session: Session, *, by_cap: bool = False, seconds: float = 0.0) -> RunSummary:
        """The summary of a stored session."""
        return cls(
            session_id=session.id,
            workflow=session.workflow,
            status=session.status,
            stop_reason=session.stop_reason,
            by_cap=by_cap,
            turns=session.turns,
            prompt_tokens=session.prompt_tokens,
            completion_tokens=session.completion_tokens,
            seconds=round(seconds, 3),
            summary=session.summary,
            error=session.error,
        )


class RunOutcome(RunSummary):
    """The JSON result of a run that is not streamed: its summary and every message."""

    messages: list[Message] = Field(default_factory=list)


class SessionList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Session]
