"""Where workflows keep user data: `AUTOQWEN_HOME` when set, else the platform's user data dir.

data_dir()            # ~/.local/share/autoqwen on Linux
sessions_db()         # <data dir>/sessions.db
session_files_dir(i)  # <data dir>/sessions/<id>/files/
"""

from __future__ import annotations

from pathlib import Path

from skills import data_dir  # one definition of the data dir for every package

__all__ = ["data_dir", "session_files_dir", "sessions_db"]


def sessions_db(home: Path | None = None) -> Path:
    """The SQLite file holding every session and message."""
    return (home or data_dir()) / "sessions.db"


def session_files_dir(session_id: str, home: Path | None = None) -> Path:
    """The work folder of one session: files the agents produce (charts, code, outputs) go here."""
    return (home or data_dir()) / "sessions" / session_id / "files"
