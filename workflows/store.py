"""The session store: every run and each of its messages in SQLite (stdlib sqlite3, WAL), committed as they arrive.

    with SessionStore() as store:                         # <data dir>/sessions.db
        session = store.create_session("research", inputs={"topic": "agents"}, model="qwen")
        store.append_message(session.id, "assistant", "Hello")  # committed before it returns
        store.finish_session(session.id, "finished", summary="said hello")

A `kill -9` mid-run loses nothing already appended. Each running session records its writer (host, pid, process
start time); opening the store marks `interrupted` the running sessions whose writer process is gone. One thread
may write while other threads and processes (the CLI) read: WAL lets readers run beside the writer.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from autoqwen.paths import data_dir, session_work_dir, sessions_db
from autoqwen.workflows.errors import SessionExists, SessionNotFound, SessionRunning, StoreError
from autoqwen.workflows.migrations import migrate
from autoqwen.workflows.process import process_alive, process_token
from autoqwen.workflows.records import (
    SESSION_ID_PATTERN,
    Content,
    FileEntry,
    Message,
    MessageType,
    Session,
    SessionRecord,
    SessionStatus,
)

__all__ = ["SessionStore"]

_SESSION_SELECT = """
    SELECT s.*, COUNT(m.seq) AS message_count,
           COALESCE(SUM(m.type IN ('text', 'handoff') AND m.source != 'user'), 0) AS turns,
           COALESCE(SUM(m.prompt_tokens), 0) AS prompt_tokens,
           COALESCE(SUM(m.completion_tokens), 0) AS completion_tokens
    FROM sessions AS s LEFT JOIN messages AS m ON m.session_id = s.id
"""
_MESSAGE_COLUMNS = "seq, source, type, content, content_is_json, prompt_tokens, completion_tokens, created_at"


class SessionStore:
    """Sessions and their messages in `<home>/sessions.db`, and their work folders in `<home>/sessions/<id>/files`."""

    def __init__(self, home: Path | None = None, *, timeout: float = 10.0) -> None:
        self.home = home if home is not None else data_dir()
        self.path = sessions_db(self.home)
        self._lock = threading.RLock()
        with self._errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by this object's threads, serialised by self._lock; autocommit mode, so every
            # transaction below is explicit and short.
            conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None, check_same_thread=False)
            try:
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")  # durable even on power loss, not only on a crash
                conn.execute("PRAGMA foreign_keys = ON")
                migrate(conn, self.path)
            except BaseException:
                conn.close()
                raise
        self._conn = conn
        self._mark_interrupted()

    def __enter__(self) -> SessionStore:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    def create_session(
        self,
        workflow: str,
        *,
        title: str | None = None,
        spec: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        model: str = "",
        tags: Sequence[str] = (),
    ) -> Session:
        """Start a session (status `running`, written by this process) and create its work folder."""
        started = _now()
        for _ in range(5):
            session_id = started.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
            try:
                with self._transaction() as conn:
                    conn.execute(
                        "INSERT INTO sessions (id, title, workflow, model, status, tags, inputs, spec, started_at,"
                        " writer_host, writer_pid, writer_token) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                        (
                            session_id,
                            title or workflow,
                            workflow,
                            model,
                            _dumps(list(tags)),
                            _dumps(dict(inputs or {})),
                            _dumps(dict(spec or {})),
                            _stamp(started),
                            socket.gethostname(),
                            os.getpid(),
                            process_token(os.getpid()),
                        ),
                    )
            except StoreError as exc:
                if isinstance(exc.__cause__, sqlite3.IntegrityError):
                    continue  # the same id in the same second: draw another
                raise
            self.work_dir(session_id)
            return self.get_session(session_id)
        raise StoreError("could not draw a unique session id", path=self.path)

    def append_message(
        self,
        session_id: str,
        source: str,
        content: Content,
        *,
        type: MessageType = "text",
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> Message:
        """Add the next message of a session and commit it before returning; text or JSON (list/dict) content."""
        # Through JSON and back: the message holds what a reader will get (an odd object becomes its text).
        stored = content if isinstance(content, str) else json.loads(_dumps(content))
        with self._transaction() as conn:
            self._require(conn, session_id)
            seq = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            message = Message(
                seq=seq,
                source=source,
                type=type,
                content=stored,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                created_at=_now(),
            )
            self._insert_messages(conn, session_id, [message])
        return message

    def finish_session(
        self,
        session_id: str,
        status: SessionStatus,
        *,
        error: str | None = None,
        summary: str | None = None,
        stop_reason: str | None = None,
    ) -> Session:
        """End a session: `finished`, `stopped` (by the user), `failed` (with `error`) or `interrupted`."""
        if status == "running":
            raise ValueError("finish_session needs an end status, not 'running'")
        with self._transaction() as conn:
            self._require(conn, session_id)
            conn.execute(
                "UPDATE sessions SET status = ?, error = ?, summary = ?, stop_reason = ?, ended_at = ? WHERE id = ?",
                (status, error, summary, stop_reason, _stamp(_now()), session_id),
            )
        return self.get_session(session_id)

    def reopen_session(self, session_id: str) -> Session:
        """Make an ended session `running` again, written by this process, so a resumed run can append to it."""
        with self._transaction() as conn:
            row = self._require(conn, session_id)
            if row["status"] == "running":
                raise SessionRunning(session_id, pid=row["writer_pid"] or 0, host=row["writer_host"] or "?")
            conn.execute(
                "UPDATE sessions SET status = 'running', error = NULL, ended_at = NULL, writer_host = ?,"
                " writer_pid = ?, writer_token = ? WHERE id = ?",
                (socket.gethostname(), os.getpid(), process_token(os.getpid()), session_id),
            )
        return self.get_session(session_id)

    def get_session(self, session_id: str) -> Session:
        """One session with its message, turn and token totals; SessionNotFound if there is none."""
        with self._transaction(write=False) as conn:
            return self._session(conn, session_id)

    def get_messages(self, session_id: str) -> list[Message]:
        """Every message of a session, in order."""
        with self._transaction(write=False) as conn:
            self._require(conn, session_id)
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
            )
            return [_message(row) for row in rows]

    def get_record(self, session_id: str) -> SessionRecord:
        """The full record of a session (session, messages, files), read in one consistent snapshot."""
        with self._transaction(write=False) as conn:
            session = self._session(conn, session_id)
            rows = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY seq", (session_id,)
            )
            messages = tuple(_message(row) for row in rows)
        return SessionRecord(session=session, messages=messages, files=tuple(self.session_files(session_id)))

    def list_sessions(self, *, limit: int | None = None) -> list[Session]:
        """Sessions, newest first, with their totals."""
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                f"{_SESSION_SELECT} GROUP BY s.id ORDER BY s.started_at DESC, s.id DESC LIMIT ?",
                (-1 if limit is None else limit,),
            )
            return [_session(row) for row in rows]

    def delete_session(self, session_id: str) -> None:
        """Delete a session, its messages and its work folder; refuses one that a live process is still running."""
        with self._transaction() as conn:
            row = self._require(conn, session_id)
            _refuse_live(row)
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        folder = session_work_dir(session_id, self.home).parent
        with self._errors():
            if folder.exists():
                shutil.rmtree(folder)

    def work_dir(self, session_id: str) -> Path:
        """The work folder of a session (created if missing): files the agents produce go here."""
        _check_id(session_id)
        folder = session_work_dir(session_id, self.home)
        with self._errors():
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def session_files(self, session_id: str) -> list[FileEntry]:
        """The regular files in a session's work folder (symlinks skipped), sorted by relative path."""
        root = session_work_dir(session_id, self.home)
        entries = []
        with self._errors():
            for folder, dirs, names in os.walk(root):
                dirs.sort()
                for name in names:
                    path = Path(folder, name)
                    if path.is_file() and not path.is_symlink():
                        entries.append(FileEntry(path=path.relative_to(root).as_posix(), size=path.stat().st_size))
        return sorted(entries, key=lambda entry: entry.path)

    def restore(self, record: SessionRecord, *, imported_from: str, replace: bool = False) -> Session:
        """Insert a full record as is (same id, messages, times) with an empty work folder; for gallery import.

        The session is marked imported from `imported_from` (the folder it came from), whatever the record says:
        a resume then treats its workflow snapshot as untrusted.
        """
        session = record.session
        _check_id(session.id)
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session.id,)).fetchone()
            if row is not None:
                if not replace:
                    raise SessionExists(session.id, path=self.path)
                _refuse_live(row)
                conn.execute("DELETE FROM sessions WHERE id = ?", (session.id,))
            conn.execute(
                "INSERT INTO sessions (id, title, workflow, model, status, tags, inputs, spec, started_at, ended_at,"
                " error, summary, stop_reason, imported_from, imported_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    session.title,
                    session.workflow,
                    session.model,
                    session.status,
                    _dumps(list(session.tags)),
                    _dumps(session.inputs),
                    _dumps(session.spec),
                    _stamp(session.started_at),
                    _stamp(session.ended_at) if session.ended_at else None,
                    session.error,
                    session.summary,
                    session.stop_reason,
                    imported_from,
                    _stamp(_now()),
                ),
            )
            self._insert_messages(conn, session.id, record.messages)
        folder = self.work_dir(session.id)
        with self._errors():
            shutil.rmtree(folder)
            folder.mkdir()
        return self.get_session(session.id)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"sessions database {self.path}: {exc}", path=self.path) from exc
        except OSError as exc:
            raise StoreError(f"session store in {self.home}: {exc}", path=self.path) from exc

    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; a write takes SQLite's write lock up front, so it never fails half-way on a busy lock."""
        with self._lock, self._errors():
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
            except BaseException:
                with suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _require(self, conn: sqlite3.Connection, session_id: str) -> sqlite3.Row:
        row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id, path=self.path)
        return row

    def _session(self, conn: sqlite3.Connection, session_id: str) -> Session:
        row = conn.execute(f"{_SESSION_SELECT} WHERE s.id = ? GROUP BY s.id", (session_id,)).fetchone()
        if row is None:
            raise SessionNotFound(session_id, path=self.path)
        return _session(row)

    @staticmethod
    def _insert_messages(conn: sqlite3.Connection, session_id: str, messages: Sequence[Message]) -> None:
        conn.executemany(
            f"INSERT INTO messages (session_id, {_MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    session_id,
                    m.seq,
                    m.source,
                    m.type,
                    m.content if isinstance(m.content, str) else _dumps(m.content),
                    not isinstance(m.content, str),
                    m.prompt_tokens,
                    m.completion_tokens,
                    _stamp(m.created_at),
                )
                for m in messages
            ],
        )

    def _mark_interrupted(self) -> None:
        """Mark `interrupted` the running sessions of this host whose writer process has died.

        A running session with no writer (imported, or from before schema version 2) has nobody to finish it either.
        """
        host = socket.gethostname()
        with self._transaction(write=False) as conn:
            rows = conn.execute(
                "SELECT id, writer_pid, writer_token FROM sessions"
                " WHERE status = 'running' AND (writer_host = ? OR writer_host IS NULL)",
                (host,),
            ).fetchall()
        dead = [row for row in rows if not process_alive(row["writer_pid"], row["writer_token"] or "")]
        if not dead:
            return
        with self._transaction() as conn:
            for row in dead:
                conn.execute(
                    "UPDATE sessions SET status = 'interrupted', error = ?, ended_at = COALESCE("
                    " (SELECT MAX(created_at) FROM messages WHERE session_id = sessions.id), started_at)"
                    " WHERE id = ? AND status = 'running'",
                    (_gone(row["writer_pid"], host), row["id"]),
                )


def _session(row: sqlite3.Row) -> Session:
    return Session(
        id=row["id"],
        title=row["title"],
        workflow=row["workflow"],
        model=row["model"],
        status=row["status"],
        tags=tuple(json.loads(row["tags"])),
        inputs=json.loads(row["inputs"]),
        spec=json.loads(row["spec"]),
        started_at=datetime.fromisoformat(row["started_at"]),
        ended_at=datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
        error=row["error"],
        summary=row["summary"],
        stop_reason=row["stop_reason"],
        message_count=row["message_count"],
        turns=row["turns"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        imported_from=row["imported_from"],
        imported_at=datetime.fromisoformat(row["imported_at"]) if row["imported_at"] else None,
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        seq=row["seq"],
        source=row["source"],
        type=row["type"],
        content=json.loads(row["content"]) if row["content_is_json"] else row["content"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )


def _refuse_live(row: sqlite3.Row) -> None:
    live = row["status"] == "running" and row["writer_host"] == socket.gethostname()
    if live and process_alive(row["writer_pid"], row["writer_token"] or ""):
        raise SessionRunning(row["id"], pid=row["writer_pid"], host=row["writer_host"])


def _gone(pid: int | None, host: str) -> str:
    if pid is None:
        return "the run ended unfinished: no process is writing it"
    return f"the run ended unfinished: its process ({pid} on {host}) is gone"


def _check_id(session_id: str) -> None:
    if not SESSION_ID_PATTERN.match(session_id):
        raise SessionNotFound(session_id)


def _dumps(value: Any) -> str:
    # default=str: an odd object in a message becomes its text rather than losing the message.
    return json.dumps(value, ensure_ascii=False, default=str)


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds: the same width everywhere, so text order is time order."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
