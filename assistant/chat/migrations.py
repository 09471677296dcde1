"""The history database's schema: named, append-only migrations, and how to open the file.

Each migration is recorded in ``_migrations`` and applied once, in its own transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

# --- migrations ------------------------------------------------------------------------------
# Append only: never edit or reorder a migration that has shipped; add a new one instead.


def _run(conn: sqlite3.Connection, *statements: str) -> None:
    # Not executescript(): it commits first, which would break the migration's transaction.
    for statement in statements:
        conn.execute(statement)


def _m001_initial_schema(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            model TEXT,
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}'
        )""",
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            text TEXT NOT NULL DEFAULT '',
            model TEXT,
            provider TEXT,
            stats TEXT NOT NULL DEFAULT '{}',
            status TEXT NOT NULL DEFAULT 'complete'
                CHECK (status IN ('complete', 'interrupted', 'error')),
            created_at TEXT NOT NULL,
            UNIQUE (conversation_id, position)
        )""",
        "CREATE INDEX conversations_by_update ON conversations (updated_at)",
    )


def _m002_full_text_search(conn: sqlite3.Connection) -> None:
    # External-content FTS5 tables: the text is stored once, in the real tables, and triggers keep
    # the index in step with every insert, edit and delete (also deletes by ON DELETE CASCADE).
    _run(
        conn,
        """CREATE VIRTUAL TABLE messages_fts USING fts5(
            text, content='messages', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2')""",
        """CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
            INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
        END""",
        """CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text)
                VALUES ('delete', old.id, old.text);
        END""",
        """CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
            INSERT INTO messages_fts (messages_fts, rowid, text)
                VALUES ('delete', old.id, old.text);
            INSERT INTO messages_fts (rowid, text) VALUES (new.id, new.text);
        END""",
        """CREATE VIRTUAL TABLE conversations_fts USING fts5(
            title, content='conversations', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2')""",
        """CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
            INSERT INTO conversations_fts (rowid, title) VALUES (new.id, new.title);
        END""",
        """CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
            INSERT INTO conversations_fts (conversations_fts, rowid, title)
                VALUES ('delete', old.id, old.title);
        END""",
        """CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
            INSERT INTO conversations_fts (conversations_fts, rowid, title)
                VALUES ('delete', old.id, old.title);
            INSERT INTO conversations_fts (rowid, title) VALUES (new.id, new.title);
        END""",
        # Index whatever an older database already holds.
        "INSERT INTO messages_fts (messages_fts) VALUES ('rebuild')",
        "INSERT INTO conversations_fts (conversations_fts) VALUES ('rebuild')",
    )


def _m003_soft_delete(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        "ALTER TABLE conversations ADD COLUMN deleted_at TEXT",
        "CREATE INDEX conversations_by_deletion ON conversations (deleted_at)",
    )


def _m004_cloud_consent(conn: sqlite3.Connection) -> None:
    # Each conversation's cloud mode (no row: Local only), and the ledger of every request
    # that left the machine. A ledger row outlives its conversation (SET NULL): what was sent
    # stays on record after the chat is deleted.
    _run(
        conn,
        """CREATE TABLE cloud_modes (
            conversation_id INTEGER PRIMARY KEY
                REFERENCES conversations(id) ON DELETE CASCADE,
            mode TEXT NOT NULL CHECK (mode IN ('local', 'ask', 'allowed')),
            provider TEXT,
            changed_at TEXT NOT NULL
        )""",
        """CREATE TABLE cloud_ledger (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
            message_id INTEGER,
            provider TEXT NOT NULL,
            model TEXT NOT NULL,
            endpoint TEXT NOT NULL DEFAULT '',
            sent TEXT NOT NULL DEFAULT '[]',
            sent_messages INTEGER NOT NULL DEFAULT 0,
            sent_chars INTEGER NOT NULL DEFAULT 0,
            received_chars INTEGER NOT NULL DEFAULT 0,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            cost_usd REAL,
            status TEXT NOT NULL DEFAULT 'sending'
                CHECK (status IN ('sending', 'complete', 'interrupted', 'error')),
            error TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX cloud_ledger_by_time ON cloud_ledger (created_at)",
    )


Migration = tuple[str, Callable[[sqlite3.Connection], None]]

MIGRATIONS: list[Migration] = [
    ("001_initial_schema", _m001_initial_schema),
    ("002_full_text_search", _m002_full_text_search),
    ("003_soft_delete", _m003_soft_delete),
    ("004_cloud_consent", _m004_cloud_consent),
]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def migrate(conn: sqlite3.Connection, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations not yet recorded in ``_migrations``; return the names applied.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Each migration runs in its own
    ``BEGIN IMMEDIATE`` transaction, so a failure leaves the database as the last one left it, and
    two processes opening the same file at once cannot apply one twice.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
    )
    applied: list[str] = []
    for name, apply in MIGRATIONS if migrations is None else migrations:
        with transaction(conn):
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (name,)).fetchone():
                continue
            apply(conn)
            conn.execute(
                "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, iso(utc_now()))
            )
        applied.append(name)
    return applied


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` on an autocommit connection; roll back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # SQLite may already have rolled back (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise


def open_connection(db_path: Path, busy_timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open ``db_path`` in autocommit mode, WAL journal, foreign keys on. A write waits up to
    ``busy_timeout_s`` for another process's write to finish."""
    conn = sqlite3.connect(
        db_path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def open_read_only(db_path: Path, busy_timeout_s: float = 10.0) -> sqlite3.Connection:
    """Open ``db_path`` for reading only. On a read-only folder SQLite cannot create the WAL
    index (``-shm``); then the file is opened as immutable, which reads it as it is on disk."""
    uri = Path(db_path).resolve().as_uri()
    last: sqlite3.Error | None = None
    for flags in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(
            f"{uri}?{flags}",
            uri=True,
            timeout=busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as err:
            conn.close()
            last = err
            if getattr(err, "sqlite_errorcode", 0) & 0xFF in (11, 26):  # damaged: say so
                raise
            continue
        return conn
    assert last is not None
    raise last
