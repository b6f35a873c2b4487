"""Errors raised by workflows, the session store and the gallery; the CLI prints their message and exits with 1.

* WorkflowError                 root: catch this
  + StoreError                  the sessions database could not be opened, read, written or migrated
    + SessionNotFound           no session has this id
    + SessionExists             a session with this id is already in the store (importing without replace)
    + SessionRunning            the session is still being written by a live process
  + GalleryError                a gallery folder could not be written, or an exported session could not be read back
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "GalleryError",
    "InteropError",
    "RunError",
    "SessionExists",
    "SessionNotFound",
    "SessionRunning",
    "SpecError",
    "StoreError",
    "WorkflowError",
    "WorkflowNotFound",
]


class WorkflowError(Exception):
    """Base class of every error the workflows package raises on purpose; its message is meant for the user."""


class StoreError(WorkflowError):
    """The sessions database failed (locked, corrupt, unwritable, or from a newer autoqwen); `path` is the file."""

    def __init__(self, message: str, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path


class SessionNotFound(StoreError):
    """No session in the store has the id `session_id`."""

    def __init__(self, session_id: str, *, path: Path | None = None) -> None:
        super().__init__(f"no session {session_id!r} (see `autoqwen sessions list`)", path=path)
        self.session_id = session_id


class SessionExists(StoreError):
    """A session with the id `session_id` is already in the store; importing it again needs replace."""

    def __init__(self, session_id: str, *, path: Path | None = None) -> None:
        super().__init__(f"session {session_id!r} is already in the store (import with --replace to overwrite it)")
        self.session_id = session_id
        self.path = path


class SessionRunning(StoreError):
    """The session `session_id` is still being written by a live process (`pid` on `host`)."""

    def __init__(self, session_id: str, *, pid: int, host: str) -> None:
        super().__init__(f"session {session_id!r} is still running (pid {pid} on {host}); stop that run first")
        self.session_id = session_id
        self.pid = pid
        self.host = host


class GalleryError(WorkflowError):
    """A gallery folder could not be written, or `path` is not an exported session autoqwen can read."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class InteropError(WorkflowError):
    """An AutoGen component file `path` could not be used; `where` is the JSON path of the problem (`$.config...`)."""

    def __init__(self, message: str, *, path: Path | None = None, where: str | None = None) -> None:
        super().__init__(message)
        self.path, self.where = path, where


class SpecError(WorkflowError):
    """A workflow or agent file is invalid; the message starts with `file:line:` and names the field."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None, field: str | None = None):
        super().__init__(message)
        self.path, self.line, self.field = path, line, field


class WorkflowNotFound(SpecError):
    """No builtin, user or file workflow has this name."""


class RunError(WorkflowError):
    """A workflow run could not start, or failed on the way; `session_id` names its session when it has one."""

    def __init__(self, message: str, *, session_id: str | None = None) -> None:
        super().__init__(message)
        self.session_id = session_id
