"""Where skills keep things: the data dir, the user skills folder, and the current session's files folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

__all__ = ["data_dir", "session_files_dir", "use_session_dir", "user_skills_dir"]

# Set by the workflow runner for the duration of a session; it beats AUTOQWEN_SESSION_DIR, so two sessions in one
# process each get their own folder.
_SESSION_DIR: ContextVar[Path | None] = ContextVar("autoqwen_session_dir", default=None)


def data_dir() -> Path:
    """The folder holding all user data: `AUTOQWEN_HOME` when set, else the platform's user data dir."""
    home = os.environ.get("AUTOQWEN_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("autoqwen", appauthor=False))


def user_skills_dir() -> Path:
    """The user skills folder, `<data dir>/skills`, managed by `autoqwen skills add/remove`."""
    return data_dir() / "skills"


def session_files_dir() -> Path:
    """The folder where skills write files for the current session (created on demand)."""
    folder = _SESSION_DIR.get() or Path(os.environ.get("AUTOQWEN_SESSION_DIR") or data_dir() / "files")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def use_session_dir(folder: Path) -> Iterator[Path]:
    """Make `folder` the session files folder inside the `with` block (sync skills run by `as_tool` see it too)."""
    token = _SESSION_DIR.set(Path(folder))
    try:
        yield Path(folder)
    finally:
        _SESSION_DIR.reset(token)
