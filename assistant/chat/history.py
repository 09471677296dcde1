"""Conversations and their messages, kept in SQLite.

The database runs in WAL mode so a reader (the sidebar, a search) never waits behind a writer (a
worker saving an answer). Its schema grows only through the named, append-only migrations in
:mod:`assistant.chat.migrations`.

Thread safety: a ``HistoryStore`` holds one connection opened with ``check_same_thread=False``
and guards every use of it with a lock, so the GUI thread and a worker thread may share one store.
Each write is one ``BEGIN IMMEDIATE`` transaction, which also serializes writes between processes
(the CLI and the GUI open the same file).

Deleting a conversation is a soft delete: it disappears from lists, lookups and search but can be
restored until ``purge_deleted`` removes it for good. Timestamps are ISO-8601 UTC strings with
microseconds, so they sort as text.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from assistant.chat import search as _search
from assistant.chat.migrations import (
    iso,
    migrate,
    open_connection,
    open_read_only,
    transaction,
    utc_now,
)

# Re-exported: search results and their markers were first defined here.
from assistant.chat.search import SNIPPET_END as SNIPPET_END
from assistant.chat.search import SNIPPET_START as SNIPPET_START
from assistant.chat.search import SearchHit as SearchHit
from assistant.chat.search import fts_query as fts_query
from assistant.errors import (
    ConversationNotFoundError,
    DiskFullError,
    EmptyQuestionError,
    HistoryDamagedError,
    HistoryError,
    HistoryReadOnlyError,
    ImportFormatError,
    InvalidTextError,
)
from assistant.paths import PRIVATE_FILE_MODE, make_private_dir, tighten

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "interrupted", "error")
# stats["stop_reason"] of an answer cut short because the app was quitting (next to the
# engine's "stop", "length", "cancelled" and "error").
APP_CLOSED = "app_closed"
EXPORT_FORMAT = "offline-assistant.chat.conversation"
EXPORT_VERSION = 1
# SQLITE_BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB: problems of the machine.
_ENVIRONMENT_ERROR_CODES = {5, 6, 8, 10, 11, 13, 14, 26}
_SQLITE_READONLY, _SQLITE_FULL = 8, 13
# SQLITE_CORRUPT, SQLITE_NOTADB: the file is damaged, not merely busy or unwritable.
_DAMAGE_CODES = {11, 26}
_DAMAGE_WORDS = ("malformed", "file is not a database", "Could not decode to UTF-8")
SQLITE_HEADER = b"SQLite format 3\x00"
# What an export carries of each conversation and message.
_CONVERSATION_KEYS = ("title", "created_at", "model", "system_prompt", "settings")
_MESSAGE_KEYS = ("role", "text", "model", "provider", "stats", "status", "created_at")


@dataclass
class Conversation:
    id: int
    title: str
    created_at: str
    updated_at: str
    model: str | None = None
    system_prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    """One turn. ``stats`` holds what the answer cost (``GenerationStats.to_dict()``: tokens,
    ``ttft_s``, ``tokens_per_s``…); ``status`` is ``complete``, ``interrupted`` or ``error``."""

    id: int
    conversation_id: int
    role: str
    text: str
    model: str | None = None
    provider: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    status: str = "complete"
    created_at: str = ""

    @property
    def outcome(self) -> str:
        """What happened to an answer, in a few words; "" for one that ended normally.

        ``stats["stop_reason"]`` tells a stop by the user (``cancelled``) from the app closing
        mid-answer (``app_closed``) and a cut at the length limit (``length``); an answer left
        ``interrupted`` with no reason at all was being written when the process died.
        ``stats["error"]`` holds why an answer failed, when known."""
        if self.role != "assistant":
            return ""
        reason = self.stats.get("stop_reason")
        if self.status == "error" or reason == "error":
            error = str(self.stats.get("error") or "").strip()
            return f"failed: {error}" if error else "failed"
        if self.status == "interrupted":
            if reason == "cancelled":
                return "stopped by you"
            if reason == APP_CLOSED:
                return "interrupted when the app closed"
            return "interrupted: the app stopped before it finished"
        if reason == "length":
            return "cut at the length limit"
        return ""

    @property
    def can_continue(self) -> bool:
        """An answer with text that stopped before the model meant to end it."""
        return (
            self.role == "assistant"
            and bool(self.text)
            and (self.stats.get("stop_reason") == "length" or self.status == "interrupted")
        )


# --- helpers ---------------------------------------------------------------------------------


def title_from_question(text: str, limit: int = 60) -> str:
    """A conversation title from its first question: the first non-blank line, whitespace
    collapsed, cut at a word boundary with an ellipsis when longer than ``limit`` characters."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if len(line) <= limit:
        return line
    cut = line[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    # Cut inside a word: drop that word, unless it is so long that too little would be left.
    if line[len(cut)] != " " and space > limit // 3:
        cut = cut[:space]
    return cut.rstrip(" ,;:.-–—") + "…"


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _loads(text: str | None) -> dict[str, Any]:
    """A JSON column as a dict; garbage (a damaged or hand-edited row) reads as empty."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _check_text(text: str) -> None:
    """Text that cannot be stored as UTF-8 (lone surrogates: bytes that were not UTF-8 where it
    came from) is refused with the position, instead of failing inside SQLite."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTextError(
            f"The text is not valid UTF-8 (an invalid character at position {exc.start}).",
            hint="Use UTF-8 text.",
        ) from None


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _conversation(row: sqlite3.Row) -> Conversation:
    values = {f.name: row[f.name] for f in fields(Conversation)}
    return Conversation(**{**values, "settings": _loads(row["settings"])})


def _message(row: sqlite3.Row) -> Message:
    values = {f.name: row[f.name] for f in fields(Message)}
    return Message(**{**values, "stats": _loads(row["stats"])})


def damage_marker(db_path: Path) -> Path:
    """The note left beside the history when damage was found while the app ran."""
    return db_path.with_name(db_path.name + ".damage-found")


def side_files(db_path: Path) -> tuple[Path, Path]:
    """The WAL and shared-memory files SQLite keeps beside the database."""
    return (db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm"))


def _create_private(db_path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite would make it 0644 under the
    usual umask). SQLite gives its ``-wal`` and ``-shm`` files the database file's mode."""
    try:
        fd = os.open(db_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(fd)


def _writable(db_path: Path) -> bool:
    """Whether the history can be written: the file (if any) and its folder (SQLite writes
    the ``-wal``/``-shm`` files beside it). Also false on a read-only disk, even for root."""
    folder = db_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    return not db_path.exists() or os.access(db_path, os.W_OK)


# --- the store -------------------------------------------------------------------------------


class HistoryStore:
    """All conversations of one user, in one SQLite file. See the module docstring for threads.

    With ``read_only`` the file is opened for reading only (its folder or the file cannot be
    written): every change raises ``HistoryReadOnlyError``. :meth:`open` picks that by itself.

    Damage (a file that is not a database, a malformed page, text that is not UTF-8), found
    when opening or by any later read or write, raises ``HistoryDamagedError``; from then on
    the store refuses to write to the file, so nothing more is built on a broken page. The
    front ends then offer :mod:`assistant.chat.recovery`.
    """

    def __init__(
        self, db_path: Path, *, busy_timeout_s: float = 10.0, read_only: bool = False
    ) -> None:
        self.db_path = Path(db_path)
        self.read_only = read_only
        self.damaged = False
        self._lock = threading.RLock()
        self._last_stamp = utc_now() - timedelta(days=1)
        in_memory = str(db_path) == ":memory:"
        if not in_memory:
            self._check_header()
        try:
            if read_only:
                self._conn = open_read_only(self.db_path, busy_timeout_s)
            else:
                if not in_memory:
                    make_private_dir(self.db_path.parent)
                    _create_private(self.db_path)
                self._conn = open_connection(self.db_path, busy_timeout_s)
                if not in_memory:
                    for side in (self.db_path, *side_files(self.db_path)):
                        tighten(side, PRIVATE_FILE_MODE)
        except OSError as err:
            raise self._open_error(err) from err
        except sqlite3.DatabaseError as err:
            raise self._classify(err, self._open_error(err)) from err
        try:
            with self._guard(self._open_error):
                if not read_only:
                    migrate(self._conn)
                self._probe()
            if not in_memory and damage_marker(self.db_path).exists():
                self._recheck()
        except BaseException:
            self._conn.close()
            raise

    def _recheck(self) -> None:
        """Damage was found during an earlier run: check the whole file now. Still damaged:
        ``HistoryDamagedError``; whole again (repaired by another tool): forget the note."""
        problems = self.check_integrity()
        if problems:
            raise self._damaged_error(problems[0])
        with contextlib.suppress(OSError):
            damage_marker(self.db_path).unlink()

    @classmethod
    def open(cls, db_path: Path, *, busy_timeout_s: float = 10.0) -> HistoryStore:
        """The history for a front end: writable when it can be, else read-only (a read-only
        folder or file, a read-only disk). With no file and no way to create one, an empty
        read-only history in memory, so the app still starts and says changes are not saved.
        Damage still raises ``HistoryDamagedError``."""
        db_path = Path(db_path)
        if _writable(db_path):
            return cls(db_path, busy_timeout_s=busy_timeout_s)
        if db_path.exists():
            log.warning("The chat history %s cannot be written; opened read-only.", db_path)
            return cls(db_path, busy_timeout_s=busy_timeout_s, read_only=True)
        log.warning("The chat history %s cannot be created; nothing will be saved.", db_path)
        store = cls(Path(":memory:"), busy_timeout_s=busy_timeout_s)
        store.read_only = True
        store.db_path = db_path
        return store

    def _check_header(self) -> None:
        """A file that does not start like SQLite is damaged: tell it before SQLite says "file
        is not a database" in its own words. A missing or empty file is a new history."""
        try:
            with self.db_path.open("rb") as handle:
                header = handle.read(len(SQLITE_HEADER))
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno == errno.EISDIR:
                raise HistoryError(
                    f"Could not open the chat history file {self.db_path}: it is a folder.",
                    hint="Move the folder elsewhere or rename it, so a history file can be "
                    "made in its place.",
                ) from None
            raise self._open_error(err) from err
        if header and header != SQLITE_HEADER:
            raise self._damaged_error("it does not start like a database")

    def _probe(self) -> None:
        """The cheap integrity check at start: the schema and the most recent conversations
        (what the sidebar shows first) must read. A full ``PRAGMA quick_check`` reads every
        page (0.4 s on a warm 145 MB file, far more cold), so it runs only on request
        (:meth:`check_integrity`)."""
        self._conn.execute("SELECT name, sql FROM sqlite_master").fetchall()
        self._conn.execute(
            "SELECT id, title, updated_at FROM conversations ORDER BY updated_at DESC LIMIT 100"
        ).fetchall()

    def check_integrity(self, max_errors: int = 20) -> list[str]:
        """SQLite's ``quick_check`` over the whole file: the problems found (empty when whole).
        Reads every page, so it takes a while on a large history."""
        with self._lock:
            try:
                rows = self._conn.execute(f"PRAGMA quick_check({int(max_errors)})").fetchall()
            except sqlite3.DatabaseError as err:  # too damaged to check: that is the answer
                rows = [(str(err),)]
        problems = [str(row[0]) for row in rows if row[0] != "ok"]
        if problems:
            self.damaged = True
        return problems

    def _open_error(self, err: BaseException) -> HistoryError:
        return HistoryError(
            f"Could not open the chat history file {self.db_path}.",
            hint=f"Check that it can be read and written ({err}).",
        )

    def _read_error(self, err: BaseException) -> HistoryError:
        return HistoryError(
            f"Could not read the chat history file {self.db_path}.",
            hint=f"Another program may be using the file ({err}).",
        )

    def _save_error(self, err: BaseException) -> HistoryError:
        return HistoryError(
            f"Could not save to the chat history file {self.db_path}.",
            hint=f"The disk may be full, or another program may be using the file ({err}).",
        )

    def _damaged_error(self, detail: str) -> HistoryDamagedError:
        if not self.damaged and str(self.db_path) != ":memory:":
            # Damage in a page the next start's quick probe does not read would go unseen
            # until it is read again: leave a note so the next start checks the whole file.
            with contextlib.suppress(OSError):
                damage_marker(self.db_path).touch()
        self.damaged = True
        return HistoryDamagedError(
            self.db_path,
            f"The chat history file {self.db_path} is damaged ({detail}).",
            hint="Nothing more is written to it. Recover it: the damaged file is moved aside "
            "and kept, and every conversation that can still be read is copied into a fresh "
            "history (the app offers this when it starts).",
            command="offline-assistant history recover",
        )

    def _classify(self, err: sqlite3.DatabaseError, otherwise: HistoryError) -> Exception:
        """The known problem ``err`` is, or ``err`` itself when it is a bug (bad SQL)."""
        code = getattr(err, "sqlite_errorcode", 0) & 0xFF
        text = str(err)
        if code in _DAMAGE_CODES or any(words in text for words in _DAMAGE_WORDS):
            return self._damaged_error(text)
        if code == _SQLITE_READONLY:
            return HistoryReadOnlyError(
                f"The chat history file {self.db_path} cannot be written; changes are not saved.",
                hint="Check that its folder and the file can be written, and that the disk is "
                "not read-only.",
            )
        if code == _SQLITE_FULL:
            return DiskFullError(
                f"The disk holding the chat history ({self.db_path.parent}) is full; "
                "nothing was saved.",
                hint="Free some space and try again.",
            )
        if code in _ENVIRONMENT_ERROR_CODES:
            return otherwise
        return err

    @contextmanager
    def _guard(self, otherwise: Callable[[BaseException], HistoryError]) -> Iterator[None]:
        """Turn SQLite's complaints about the machine and the file into known problems."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            known = self._classify(err, otherwise(err))
            if known is err:
                raise
            raise known from err

    # -- plumbing

    def _now(self) -> str:
        """Strictly increasing timestamps (called under the lock), so "most recent first" holds
        even where the system clock ticks coarsely."""
        now = utc_now()
        if now <= self._last_stamp:
            now = self._last_stamp + timedelta(microseconds=1)
        self._last_stamp = now
        return iso(now)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, under the lock. A full disk, a file another program holds
        too long, or damage found on the way is a ``HistoryError``; anything else is a bug.
        A store found damaged, or opened read-only, refuses before touching the file."""
        with self._lock:
            if self.damaged:
                raise self._damaged_error("found earlier; it is no longer written to")
            if self.read_only:
                raise HistoryReadOnlyError(
                    f"The chat history {self.db_path} is open read-only; changes are not saved.",
                    hint="Check that its folder and the file can be written, then start the "
                    "app again.",
                )
            with self._guard(self._save_error), transaction(self._conn):
                yield self._conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads, under the lock, with damage told as damage."""
        with self._lock, self._guard(self._read_error):
            yield self._conn

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._reading() as conn:
            return conn.execute(sql, params).fetchall()

    def _live_conversation_row(self, conn: sqlite3.Connection, conversation_id: int) -> sqlite3.Row:
        row = conn.execute(
            "SELECT * FROM conversations WHERE id = ? AND deleted_at IS NULL", (conversation_id,)
        ).fetchone()
        if row is None:
            raise self._not_found(conversation_id)
        return row

    def _touch(self, conn: sqlite3.Connection, conversation_id: int, **columns: Any) -> None:
        """Set ``columns`` of a conversation (``updated_at`` to now unless given)."""
        columns.setdefault("updated_at", self._now())
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(
            f"UPDATE conversations SET {assignments} WHERE id = ?",
            (*columns.values(), conversation_id),
        )

    def _insert_conversation(self, conn: sqlite3.Connection, **columns: Any) -> Conversation:
        columns["updated_at"] = now = self._now()
        columns["created_at"] = columns.get("created_at") or now
        columns["settings"] = _dumps(columns.get("settings") or {})
        cur = conn.execute(
            f"INSERT INTO conversations ({', '.join(columns)})"
            f" VALUES ({', '.join('?' * len(columns))})",
            tuple(columns.values()),
        )
        return _conversation(self._live_conversation_row(conn, cur.lastrowid or 0))

    def _insert_message(
        self, conn: sqlite3.Connection, conversation_id: int, **columns: Any
    ) -> Message:
        (position,) = conn.execute(
            "SELECT COALESCE(MAX(position), 0) + 1 FROM messages WHERE conversation_id = ?",
            (conversation_id,),
        ).fetchone()
        columns.update(conversation_id=conversation_id, position=position)
        columns["created_at"] = columns.get("created_at") or self._now()
        columns["status"] = columns.get("status") or "complete"
        columns["stats"] = _dumps(columns.get("stats") or {})
        cur = conn.execute(
            f"INSERT INTO messages ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            tuple(columns.values()),
        )
        row = conn.execute("SELECT * FROM messages WHERE id = ?", (cur.lastrowid,)).fetchone()
        return _message(row)

    @staticmethod
    def _not_found(conversation_id: int) -> ConversationNotFoundError:
        return ConversationNotFoundError(f"There is no conversation number {conversation_id}.")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversations

    def create_conversation(
        self,
        *,
        title: str = "",
        model: str | None = None,
        system_prompt: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Conversation:
        with self._write() as conn:
            return self._insert_conversation(
                conn, title=title, model=model, system_prompt=system_prompt, settings=settings
            )

    def get_conversation(self, conversation_id: int) -> Conversation:
        """The conversation; ``ConversationNotFoundError`` if it never existed or was deleted."""
        with self._reading() as conn:
            return _conversation(self._live_conversation_row(conn, conversation_id))

    def list_conversations(self, limit: int | None = None, offset: int = 0) -> list[Conversation]:
        """Conversations not deleted, most recently updated first (``limit`` of them, after
        the first ``offset``)."""
        # "+deleted_at": walk the updated_at index newest first and stop after ``limit``;
        # through the deleted_at index, SQLite sorted every conversation first (7 ms of the
        # window's start with 5,000 of them, growing with the history).
        rows = self._read(
            "SELECT * FROM conversations WHERE +deleted_at IS NULL"
            " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
            (-1 if limit is None else limit, offset),
        )
        return [_conversation(row) for row in rows]

    def rename_conversation(self, conversation_id: int, title: str) -> None:
        """Set the title. Renaming does not move the conversation up the list."""
        with self._write() as conn:
            self._live_conversation_row(conn, conversation_id)
            conn.execute(
                "UPDATE conversations SET title = ? WHERE id = ?",
                (title, conversation_id),
            )

    def delete_conversation(self, conversation_id: int) -> None:
        """Hide the conversation; ``restore_conversation`` undoes this until a purge."""
        with self._write() as conn:
            self._live_conversation_row(conn, conversation_id)
            conn.execute(
                "UPDATE conversations SET deleted_at = ? WHERE id = ?",
                (self._now(), conversation_id),
            )

    def restore_conversation(self, conversation_id: int) -> None:
        """Undo a delete. Restoring a conversation that is not deleted does nothing."""
        with self._write() as conn:
            cur = conn.execute(
                "UPDATE conversations SET deleted_at = NULL WHERE id = ?", (conversation_id,)
            )
            if cur.rowcount == 0:
                raise self._not_found(conversation_id)

    def purge_deleted(self) -> int:
        """Remove deleted conversations and their messages for good; return how many."""
        with self._write() as conn:
            cur = conn.execute("DELETE FROM conversations WHERE deleted_at IS NOT NULL")
            return cur.rowcount

    # -- messages

    def add_message(
        self,
        conversation_id: int,
        role: str,
        text: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        stats: dict[str, Any] | None = None,
        status: str = "complete",
    ) -> Message:
        """Append a message. The first user message names an untitled conversation.

        Saving into a deleted (not yet purged) conversation is allowed, so an answer that finishes
        after the user deleted its conversation is still there after an undo.
        """
        _check(role, ROLES, "role")
        _check(status, STATUSES, "status")
        if role == "user" and not text.strip():
            # Every front end's questions pass here: none may save an empty one (nor name a
            # conversation "(untitled)" after it).
            raise EmptyQuestionError("The question is empty.", hint="Type a question first.")
        _check_text(text)
        with self._write() as conn:
            row = conn.execute(
                "SELECT title FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            if row is None:
                raise self._not_found(conversation_id)
            values = {"model": model, "provider": provider, "stats": stats, "status": status}
            message = self._insert_message(conn, conversation_id, role=role, text=text, **values)
            title = row["title"] or (title_from_question(text) if role == "user" else "")
            self._touch(conn, conversation_id, updated_at=message.created_at, title=title)
            return message

    def update_message(
        self,
        message_id: int,
        *,
        text: str | None = None,
        status: str | None = None,
        stats: dict[str, Any] | None = None,
    ) -> Message:
        """Change a saved message (an answer that finished streaming, or was stopped) and
        return it as saved. Works on a message of a deleted conversation, so an answer that
        finishes after a delete is there after an undo."""
        if status is not None:
            _check(status, STATUSES, "status")
        stats_json = None if stats is None else _dumps(stats)
        changes = {"text": text, "status": status, "stats": stats_json}
        changes = {column: value for column, value in changes.items() if value is not None}
        with self._write() as conn:
            row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise HistoryError(f"Message {message_id} is no longer in the chat history.")
            if not changes:
                return _message(row)
            assignments = ", ".join(f"{column} = ?" for column in changes)
            conn.execute(
                f"UPDATE messages SET {assignments} WHERE id = ?", (*changes.values(), message_id)
            )
            self._touch(conn, row["conversation_id"])
            updated = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
        return _message(updated)

    def delete_messages_from(self, conversation_id: int, message_id: int) -> None:
        """Remove this message and every later one in its conversation (regenerate, edit)."""
        with self._write() as conn:
            row = conn.execute(
                "SELECT position FROM messages WHERE id = ? AND conversation_id = ?",
                (message_id, conversation_id),
            ).fetchone()
            if row is None:
                raise HistoryError(
                    f"Message {message_id} is not in conversation {conversation_id}."
                )
            conn.execute(
                "DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                (conversation_id, row["position"]),
            )
            self._touch(conn, conversation_id)

    def messages(self, conversation_id: int) -> list[Message]:
        """The messages of a conversation, oldest first."""
        with self._reading() as conn:
            self._live_conversation_row(conn, conversation_id)
            rows = conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        return [_message(row) for row in rows]

    # -- search

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages and titles containing every word of ``query`` (the last word as a prefix
        from three letters on), best match first. Matches in the snippet are wrapped in
        ``SNIPPET_START``/``SNIPPET_END``. Any text is a valid query; punctuation and FTS
        operators are taken as plain words. A window searches with
        ``assistant.chat.search.HistorySearcher`` instead, on a thread of its own."""
        with self._reading() as conn:  # damage found while searching is told as damage
            return _search.search(conn, query, limit)

    # -- export and import

    def export_markdown(self, conversation_id: int) -> str:
        """The conversation as a Markdown document a person can read or share."""
        conversation = self.get_conversation(conversation_id)
        lines = [f"# {conversation.title or 'Untitled conversation'}", ""]
        lines.append(f"- Started: {conversation.created_at}")
        if conversation.model:
            lines.append(f"- Model: {conversation.model}")
        lines.append("")
        if conversation.system_prompt:
            lines += ["## System prompt", "", conversation.system_prompt, ""]
        headings = {"system": "System", "user": "You", "assistant": "Assistant"}
        for message in self.messages(conversation_id):
            heading = headings[message.role]
            if message.role == "assistant" and message.model:
                heading += f" ({message.model})"
            if message.role == "assistant" and message.provider not in (None, "local"):
                heading += f" — cloud: {message.provider}"
            lines += [f"## {heading}", "", message.text, ""]
            if message.outcome:
                lines += [f"*(answer {message.outcome})*", ""]
        return "\n".join(lines).rstrip() + "\n"

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation in the versioned exchange format ``import_json`` reads."""
        conversation = asdict(self.get_conversation(conversation_id))
        del conversation["id"]
        messages = [asdict(m) for m in self.messages(conversation_id)]
        for message in messages:
            del message["id"], message["conversation_id"]
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "exported_at": iso(utc_now()),
            "conversation": conversation,
            "messages": messages,
        }

    def import_json(self, data: dict[str, Any]) -> Conversation:
        """Add the exported conversation ``data`` as a new conversation, all or nothing.

        Creation times are kept; ``updated_at`` is now, so it shows at the top of the list.
        Raises ``ImportFormatError`` naming the first thing that is wrong.
        """
        conv, messages = _validate_export(data)
        if not conv["title"]:
            first = next((m["text"] for m in messages if m["role"] == "user"), "")
            conv["title"] = title_from_question(first)
        with self._write() as conn:
            conversation = self._insert_conversation(
                conn, **{k: conv.get(k) for k in _CONVERSATION_KEYS}
            )
            for m in messages:
                self._insert_message(conn, conversation.id, **{k: m.get(k) for k in _MESSAGE_KEYS})
            return conversation


# --- import validation -----------------------------------------------------------------------


def _fail(where: str, problem: str) -> ImportFormatError:
    return ImportFormatError(
        f"This is not a conversation file this app can import: {where} {problem}.",
        hint="Pick a file exported by Offline Assistant (JSON format).",
    )


def _check_optional(obj: dict[str, Any], key: str, kind: type, where: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    if not isinstance(value, kind):
        raise _fail(f"{where}.{key}", "should be " + ("text" if kind is str else "an object"))
    if key.endswith("_at"):
        try:
            datetime.fromisoformat(str(value))
        except ValueError:
            raise _fail(f"{where}.{key}", f"is not a date and time ({value!r})") from None


def _validate_export(data: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Check the shape of an export; return its conversation part and its messages."""
    if not isinstance(data, dict):
        raise _fail("the file", "does not hold a JSON object")
    if data.get("format") != EXPORT_FORMAT:
        raise _fail("'format'", f"should be {EXPORT_FORMAT!r}")
    version = data.get("version")
    if type(version) is not int or version != EXPORT_VERSION:
        raise _fail("'version'", f"is {version!r}; this app reads version {EXPORT_VERSION}")
    conv = data.get("conversation")
    if not isinstance(conv, dict):
        raise _fail("'conversation'", "is missing or not an object")
    for key in ("title", "model", "system_prompt", "created_at", "updated_at"):
        _check_optional(conv, key, str, "conversation")
    conv = {**conv, "title": conv.get("title") or ""}
    _check_optional(conv, "settings", dict, "conversation")
    messages = data.get("messages")
    if not isinstance(messages, list):
        raise _fail("'messages'", "is missing or not a list")
    for index, m in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(m, dict):
            raise _fail(where, "is not an object")
        if m.get("role") not in ROLES:
            raise _fail(f"{where}.role", f"should be one of {', '.join(ROLES)}")
        if not isinstance(m.get("text"), str):
            raise _fail(f"{where}.text", "is missing or not text")
        if m.get("status", "complete") not in STATUSES:
            raise _fail(f"{where}.status", f"should be one of {', '.join(STATUSES)}")
        for key in ("model", "provider", "created_at"):
            _check_optional(m, key, str, where)
        _check_optional(m, "stats", dict, where)
    return conv, messages
