"""Named YAML workflows, their runner, the session store, the gallery export, and the `autoqwen` CLI."""

from __future__ import annotations

from autoqwen.workflows.errors import (
    GalleryError,
    SessionExists,
    SessionNotFound,
    SessionRunning,
    StoreError,
    WorkflowError,
)
from autoqwen.workflows.gallery import export_sessions, import_session
from autoqwen.workflows.records import (
    FileEntry,
    Message,
    MessageType,
    Session,
    SessionRecord,
    SessionStatus,
    ToolCall,
    ToolResult,
)
from autoqwen.workflows.store import SessionStore

__all__ = [
    "FileEntry",
    "GalleryError",
    "Message",
    "MessageType",
    "Session",
    "SessionExists",
    "SessionNotFound",
    "SessionRecord",
    "SessionRunning",
    "SessionStatus",
    "SessionStore",
    "StoreError",
    "ToolCall",
    "ToolResult",
    "WorkflowError",
    "export_sessions",
    "import_session",
]
