"""The session store: round trip, ordering and totals, crash safety (SIGKILL), interrupted runs, migrations."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from session_samples import HOSTILE, make_session

from autoqwen.workflows import SessionNotFound, SessionRunning, SessionStore, StoreError
from autoqwen.workflows.migrations import MIGRATIONS, SCHEMA_VERSION
from autoqwen.workflows.process import process_alive, process_token


@pytest.fixture
def store() -> Iterator[SessionStore]:
    with SessionStore() as store:
        yield store


def test_store_lives_in_the_data_dir(store: SessionStore) -> None:
    home = Path(os.environ["AUTOQWEN_HOME"])
    assert store.path == home / "sessions.db"
    session = store.create_session("w")
    assert store.work_dir(session.id) == home / "sessions" / session.id / "files"
    assert store.work_dir(session.id).is_dir()
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_round_trip(store: SessionStore) -> None:
    session = make_session(store)
    with SessionStore() as again:  # another connection sees everything
        got = again.get_session(session.id)
        messages = again.get_messages(session.id)
        record = again.get_record(session.id)
    assert got == session
    assert got.title == "Research on agents" and got.workflow == "research" and got.model == "SmolLM2-135M-Instruct"
    assert got.inputs == {"topic": "small language models", "depth": 2} and got.tags == ("demo", "tools")
    assert got.spec["team"] == {"type": "round_robin"}
    assert got.status == "finished" and got.ended_at is not None and got.ended_at >= got.started_at
    assert got.summary == f"A report; {HOSTILE}" and got.stop_reason == "Text 'TERMINATE'" and got.error is None
    assert (got.message_count, got.turns) == (6, 2)  # turns: the handoff and the writer's text (not the task)
    assert (got.prompt_tokens, got.completion_tokens, got.tokens) == (620, 98, 718)

    assert [m.seq for m in messages] == [1, 2, 3, 4, 5, 6]
    assert [m.type for m in messages] == ["text", "tool_call", "tool_result", "handoff", "text", "other"]
    assert [m.source for m in messages] == ["user", "planner", "planner", "planner", "writer", "system"]
    assert messages[1].tool_calls()[0].name == "paper_search"  # type: ignore[index]
    assert messages[2].tool_results()[0].content.startswith("1. TinyLlama")  # type: ignore[index]
    assert messages[5].content == {"event": "termination", "reason": "TERMINATE"}
    assert messages[4].tool_calls() is None and HOSTILE in messages[4].text()
    assert all(a.created_at <= b.created_at for a, b in itertools.pairwise(messages))
    assert [f.path for f in record.files] == ["chart.png", "notes/report draft.txt"]
    assert record.messages == tuple(messages) and record.session == got


def test_list_is_newest_first_with_counts(store: SessionStore) -> None:
    first = make_session(store, "first")
    second = store.create_session("other", title="second")
    store.append_message(second.id, "user", "hi", prompt_tokens=5)
    listed = store.list_sessions()
    assert [s.id for s in listed] == [second.id, first.id]
    assert (listed[0].status, listed[0].message_count, listed[0].turns, listed[0].tokens) == ("running", 1, 0, 5)
    assert [s.id for s in store.list_sessions(limit=1)] == [second.id]


def test_delete_removes_messages_and_files(store: SessionStore) -> None:
    session = make_session(store)
    folder = store.work_dir(session.id).parent
    store.delete_session(session.id)
    assert not folder.exists()
    with pytest.raises(SessionNotFound, match=session.id):
        store.get_session(session.id)
    with pytest.raises(SessionNotFound):
        store.delete_session(session.id)
    assert store._conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_unknown_and_bad_ids_are_session_not_found(store: SessionStore) -> None:
    for bad in ("nope", "../etc", ""):
        with pytest.raises(SessionNotFound):
            store.get_record(bad)
    with pytest.raises(SessionNotFound):
        store.append_message("nope", "a", "b")
    with pytest.raises(SessionNotFound):
        store.work_dir("../escape")


def test_a_live_run_cannot_be_deleted_and_running_is_not_an_end(store: SessionStore) -> None:
    session = store.create_session("w")
    with pytest.raises(SessionRunning, match="still running"):
        store.delete_session(session.id)
    with pytest.raises(ValueError):
        store.finish_session(session.id, "running")
    assert store.finish_session(session.id, "failed", error="boom").error == "boom"
    store.delete_session(session.id)


def test_a_writer_is_alive_only_with_its_own_start_time() -> None:
    me = os.getpid()
    token = process_token(me)
    assert process_alive(me, token) and process_alive(me, "")  # no token: the pid alone decides
    assert not process_alive(me, repr(float(token) - 3600))  # the pid of a writer that died, reused since
    assert not process_alive(None, "") and not process_alive(0, "")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    if hasattr(os, "waitid"):
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # it has exited and is not reaped: a zombie
        assert not process_alive(child.pid, "")
    child.wait()
    assert not process_alive(child.pid, "")


def test_files_skip_symlinks(store: SessionStore, tmp_path: Path) -> None:
    session = store.create_session("w")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not export")
    (store.work_dir(session.id) / "link.txt").symlink_to(secret)
    (store.work_dir(session.id) / "out.txt").write_text("ok")
    assert [f.path for f in store.session_files(session.id)] == ["out.txt"]


def test_one_writer_thread_and_readers_elsewhere(store: SessionStore) -> None:
    session = store.create_session("w")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(100):
                store.append_message(session.id, "a", f"m{i}")
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen = []
    with SessionStore() as reader:
        while writer.is_alive():
            messages = reader.get_messages(session.id)
            assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
            seen.append(len(messages))
            store.list_sessions()  # the writer's own store, from another thread
    writer.join()
    assert not errors and seen == sorted(seen)
    assert store.get_session(session.id).message_count == 100


KILL_SCRIPT = """
from autoqwen.workflows import SessionStore
store = SessionStore()
session = store.create_session("loop", title="killed mid-run")
print(session.id, flush=True)
i = 0
while True:
    i += 1
    store.append_message(session.id, "assistant", f"message {i}", prompt_tokens=1, completion_tokens=2)
    print(i, flush=True)  # printed only once the message is committed
"""


def test_sigkill_mid_run_loses_nothing_and_shows_interrupted(tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        session_id = child.stdout.readline().strip()
        confirmed = 0
        while confirmed < 25:
            confirmed = int(child.stdout.readline())
        with SessionStore() as store:  # the writer is alive: its session stays running
            assert store.get_session(session_id).status == "running"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    with SessionStore() as store:
        session = store.get_session(session_id)
        messages = store.get_messages(session_id)
    assert session.status == "interrupted"
    assert f"({child.pid} on {socket.gethostname()}) is gone" in (session.error or "")
    assert len(messages) >= confirmed and session.message_count == len(messages)
    assert [m.content for m in messages] == [f"message {i}" for i in range(1, len(messages) + 1)]
    assert session.ended_at == messages[-1].created_at
    assert session.tokens == 3 * len(messages)


def test_migrations_upgrade_an_old_database(tmp_path: Path) -> None:
    home = tmp_path / "old"
    home.mkdir()
    with sqlite3.connect(home / "sessions.db") as conn:
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO sessions (id, title, workflow, status, started_at) VALUES"
            " ('20240101-000000-aaaa', 'old', 'w', 'finished', '2024-01-01T00:00:00.000000+00:00'),"
            " ('20240101-000001-bbbb', 'stuck', 'w', 'running', '2024-01-01T00:00:01.000000+00:00')"
        )
        conn.execute(
            "INSERT INTO messages (session_id, seq, source, type, content, created_at) VALUES"
            " ('20240101-000000-aaaa', 1, 'user', 'text', 'kept', '2024-01-01T00:00:00.500000+00:00')"
        )
    conn.close()
    with SessionStore(home) as store:
        assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(MIGRATIONS)
        assert [m.content for m in store.get_messages("20240101-000000-aaaa")] == ["kept"]
        assert store.get_session("20240101-000000-aaaa").status == "finished"
        stuck = store.get_session("20240101-000001-bbbb")  # a run from before writers were recorded: nobody owns it
        assert stuck.status == "interrupted" and stuck.ended_at == stuck.started_at
        store.append_message("20240101-000000-aaaa", "assistant", "new")
        assert store.get_session("20240101-000000-aaaa").message_count == 2


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "new"
    home.mkdir()
    with sqlite3.connect(home / "sessions.db") as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this autoqwen"):
        SessionStore(home)


def test_a_corrupt_database_is_a_store_error(tmp_path: Path) -> None:
    home = tmp_path / "bad"
    home.mkdir()
    (home / "sessions.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="sessions database") as caught:
        SessionStore(home)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_a_version_2_database_learns_which_sessions_were_imported(tmp_path: Path) -> None:
    home = tmp_path / "v2"
    home.mkdir()
    with sqlite3.connect(home / "sessions.db") as conn:
        for statement in (*MIGRATIONS[0], *MIGRATIONS[1]):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute(
            "INSERT INTO sessions (id, title, workflow, status, started_at) VALUES"
            " ('20240101-000000-aaaa', 'ran here', 'w', 'finished', '2024-01-01T00:00:00.000000+00:00')"
        )
    conn.close()
    with SessionStore(home) as store:
        old = store.get_session("20240101-000000-aaaa")
        assert not old.imported and old.imported_from is None and old.imported_at is None
        record = store.get_record(old.id).model_copy(
            update={"session": old.model_copy(update={"id": "20240101-000000-bbbb", "imported_from": None})}
        )
        restored = store.restore(record, imported_from="/galleries/theirs/20240101-000000-bbbb")
        assert restored.imported and restored.imported_from == "/galleries/theirs/20240101-000000-bbbb"
        assert restored.imported_at is not None
        reopened = store.reopen_session(restored.id)  # a resume keeps the mark
        assert reopened.imported_from == restored.imported_from
