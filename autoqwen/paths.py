"""Where autoqwen keeps its files: the one module that says so, for every layer.

data_dir()              # AUTOQWEN_HOME, else the platform's user data dir (~/.local/share/autoqwen on Linux)
user_skills_dir()       # <data dir>/skills: `autoqwen skills add/remove`
user_workflows_dir()    # <data dir>/workflows: the user's named workflows
user_models_dir()       # <data dir>/models: the user's own .gguf files and model folders (`autoqwen models list`)
sessions_db()           # <data dir>/sessions.db: every session and message
session_work_dir(id)    # <data dir>/sessions/<id>/files: what one session's agents produce
current_work_dir()      # where a skill writes now: the running session's work dir (see use_work_dir)
cache_dir()             # AUTOQWEN_CACHE_DIR, else the platform's user cache dir + /models (~/.cache/autoqwen/models)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path

__all__ = [
    "cache_dir",
    "current_work_dir",
    "data_dir",
    "session_work_dir",
    "sessions_db",
    "use_work_dir",
    "user_models_dir",
    "user_skills_dir",
    "user_workflows_dir",
]

# Set by the workflow runner while a session runs; it beats AUTOQWEN_SESSION_DIR, so two sessions in one process
# each get their own folder.
_WORK_DIR: ContextVar[Path | None] = ContextVar("autoqwen_work_dir", default=None)


def data_dir() -> Path:
    """The folder holding all user data: `AUTOQWEN_HOME` when set, else the platform's user data dir."""
    if home := os.environ.get("AUTOQWEN_HOME"):
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("autoqwen", appauthor=False))


def cache_dir() -> Path:
    """Where converted models and compiled kernels live: `AUTOQWEN_CACHE_DIR`, else the user cache dir."""
    if folder := os.environ.get("AUTOQWEN_CACHE_DIR"):
        return Path(folder).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("autoqwen", appauthor=False)) / "models"


def user_skills_dir() -> Path:
    """The user skills folder, managed by `autoqwen skills add/remove`."""
    return data_dir() / "skills"


def user_workflows_dir() -> Path:
    """Where users keep their own workflow files."""
    return data_dir() / "workflows"


def user_models_dir() -> Path:
    """The user's models folder: .gguf files and Hugging Face model folders put there are listed and served by name."""
    return data_dir() / "models"


def sessions_db(home: Path | None = None) -> Path:
    """The SQLite file holding every session and message."""
    return (home or data_dir()) / "sessions.db"


def session_work_dir(session_id: str, home: Path | None = None) -> Path:
    """The work folder of one stored session: files its agents produce (charts, code, outputs)."""
    return (home or data_dir()) / "sessions" / session_id / "files"


def current_work_dir() -> Path:
    """The folder where skills write files now (created on demand): the running session's work folder, else
    `AUTOQWEN_SESSION_DIR`, else `<data dir>/files`."""
    folder = _WORK_DIR.get() or Path(os.environ.get("AUTOQWEN_SESSION_DIR") or data_dir() / "files")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def use_work_dir(folder: Path) -> Iterator[Path]:
    """Make `folder` the current work folder inside the `with` block (sync skills run by `as_tool` see it too)."""
    token = _WORK_DIR.set(Path(folder))
    try:
        yield Path(folder)
    finally:
        _WORK_DIR.reset(token)
