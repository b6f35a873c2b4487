"""The records the session store returns and the gallery writes: Session, Message, and the full SessionRecord.

Message content is text (`str`) or JSON (a list or dict). Tool calls and results use AutoGen's shapes, so the
runner can store `[call.model_dump() for call in event.content]` as is:

    append_message(sid, "assistant", [{"id": "c1", "name": "add", "arguments": '{"a": 1}'}], type="tool_call")
    append_message(sid, "assistant", [{"call_id": "c1", "name": "add", "content": "2", "is_error": False}],
                   type="tool_result")
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "LOCAL_FIELDS",
    "RECORD_SCHEMA_VERSION",
    "SESSION_ID_PATTERN",
    "FileEntry",
    "Message",
    "MessageType",
    "Session",
    "SessionRecord",
    "SessionStatus",
    "ToolCall",
    "ToolResult",
]

# Version of the session.json format; bump it (and teach import to read the old one) when the shape changes.
RECORD_SCHEMA_VERSION = 1
# Ids become folder names in the data dir and in galleries, so they never contain a path separator or `..`.
SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# Session fields that describe this store's copy, not the run: left out of session.json (see SessionRecord).
LOCAL_FIELDS = frozenset({"imported_from", "imported_at"})

SessionStatus = Literal["running", "finished", "stopped", "failed", "interrupted"]
MessageType = Literal["text", "tool_call", "tool_result", "handoff", "system", "other"]
Content = str | list[Any] | dict[str, Any]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCall(BaseModel):
    """One function call an agent asked for; `arguments` is the JSON text the model wrote."""

    model_config = ConfigDict(frozen=True)  # extra keys are ignored: the content stays as stored

    id: str = ""
    name: str
    arguments: str = ""


class ToolResult(BaseModel):
    """The result of one tool call, as the agent saw it."""

    model_config = ConfigDict(frozen=True)

    call_id: str = ""
    name: str = ""
    content: str
    is_error: bool = False


class Message(_Record):
    """One message of a session, in order: who said it, what kind it is, and what it cost."""

    seq: int = Field(description="Position in the session, from 1.")
    source: str = Field(description="The agent (or `user`) that produced it.")
    type: MessageType = "text"
    content: Content
    prompt_tokens: int = 0
    completion_tokens: int = 0
    created_at: datetime

    def tool_calls(self) -> list[ToolCall] | None:
        """The calls of a `tool_call` message in AutoGen's shape, or None when the content has another shape."""
        return _parse_list(self, "tool_call", ToolCall)

    def tool_results(self) -> list[ToolResult] | None:
        """The results of a `tool_result` message in AutoGen's shape, or None when the content has another shape."""
        return _parse_list(self, "tool_result", ToolResult)

    def text(self) -> str:
        """The content as text: itself when it is text, else indented JSON."""
        if isinstance(self.content, str):
            return self.content
        return json.dumps(self.content, indent=2, ensure_ascii=False)


class Session(_Record):
    """One run of a workflow: what ran, on which model, how it ended, and its message and token totals."""

    id: str
    title: str
    workflow: str
    model: str = ""
    status: SessionStatus = "running"
    tags: tuple[str, ...] = ()
    inputs: dict[str, Any] = {}
    spec: dict[str, Any] = Field(default={}, description="Snapshot of the workflow spec the run used.")
    started_at: datetime
    ended_at: datetime | None = None
    error: str | None = None
    summary: str | None = None
    stop_reason: str | None = None
    message_count: int = 0
    turns: int = Field(
        default=0, description="Text or handoff messages from agents (not the user's task): the turns agents took."
    )
    prompt_tokens: int = 0
    completion_tokens: int = 0
    imported_from: str | None = Field(
        default=None,
        description="The gallery folder it was imported from; its workflow snapshot is untrusted. None: run here.",
    )
    imported_at: datetime | None = None

    @property
    def imported(self) -> bool:
        """Whether the session came from a gallery import (someone else's run), rather than a run on this machine."""
        return self.imported_from is not None

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens over the whole session."""
        return self.prompt_tokens + self.completion_tokens


class FileEntry(_Record):
    """A file in a session's work folder; `path` is relative to it, with `/` separators."""

    path: str
    size: int


class SessionRecord(_Record):
    """Everything about a session: what `session.json` in a gallery holds, and what import reads back.

    Where a session was imported from is this store's own knowledge: `session.json` never carries it
    (LOCAL_FIELDS), and import sets it whatever the file says.
    """

    schema_version: int = RECORD_SCHEMA_VERSION
    session: Session
    messages: tuple[Message, ...] = ()
    files: tuple[FileEntry, ...] = ()


def _parse_list(message: Message, kind: str, model: type[BaseModel]) -> list[Any] | None:
    if message.type != kind or not isinstance(message.content, list):
        return None
    try:
        return [model.model_validate(item) for item in message.content]
    except ValidationError:
        return None
