"""The sessions database schema, as a list of migrations applied in order; `PRAGMA user_version` counts them.

Never edit a migration that has shipped: append a new one. `migrate()` runs the pending ones in one transaction.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from autoqwen.workflows.errors import StoreError

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: sessions and their messages, in order.
    (
        """CREATE TABLE sessions (
            id          TEXT PRIMARY KEY,
            title       TEXT NOT NULL,
            workflow    TEXT NOT NULL,
            model       TEXT NOT NULL DEFAULT '',
            status      TEXT NOT NULL,
            tags        TEXT NOT NULL DEFAULT '[]',
            inputs      TEXT NOT NULL DEFAULT '{}',
            spec        TEXT NOT NULL DEFAULT '{}',
            started_at  TEXT NOT NULL,
            ended_at    TEXT,
            error       TEXT,
            summary     TEXT,
            stop_reason TEXT
        )""",
        "CREATE INDEX sessions_by_start ON sessions (started_at DESC, id DESC)",
        """CREATE TABLE messages (
            session_id        TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            seq               INTEGER NOT NULL,
            source            TEXT NOT NULL,
            type              TEXT NOT NULL,
            content           TEXT NOT NULL,
            content_is_json   INTEGER NOT NULL DEFAULT 0,
            prompt_tokens     INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            created_at        TEXT NOT NULL,
            PRIMARY KEY (session_id, seq)
        ) WITHOUT ROWID""",
    ),
    # 2: who writes a running session (host, pid, process start time), so that a later open can tell a live run
    # in another process from one whose process died, and mark only the latter `interrupted`.
    (
        "ALTER TABLE sessions ADD COLUMN writer_host TEXT",
        "ALTER TABLE sessions ADD COLUMN writer_pid INTEGER",
        "ALTER TABLE sessions ADD COLUMN writer_token TEXT",
    ),
    # 3: where an imported session came from (NULL: it ran here). Its workflow snapshot is someone else's, so a
    # resume must not let it run code or reach a model server by itself.
    (
        "ALTER TABLE sessions ADD COLUMN imported_from TEXT",
        "ALTER TABLE sessions ADD COLUMN imported_at TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the database up to SCHEMA_VERSION and return the version it had; refuse one from a newer autoqwen."""
    version = _version(conn)
    if version == SCHEMA_VERSION:
        return version
    conn.execute("BEGIN IMMEDIATE")  # another process may be migrating the same file: take the write lock first
    try:
        version = _version(conn)
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path} has schema version {version}, newer than this autoqwen knows ({SCHEMA_VERSION}); "
                "upgrade autoqwen",
                path=path,
            )
        for number in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
