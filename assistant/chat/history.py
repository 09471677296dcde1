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

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from assistant.chat.migrations import iso, migrate, open_connection, transaction, utc_now
from assistant.errors import ConversationNotFoundError, HistoryError, ImportFormatError

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "interrupted", "error")
EXPORT_FORMAT = "offline-assistant.chat.conversation"
EXPORT_VERSION = 1
SNIPPET_START = "«"
SNIPPET_END = "»"
# SQLITE_BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB: problems of the machine.
_ENVIRONMENT_ERROR_CODES = {5, 6, 8, 10, 11, 13, 14, 26}
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


@dataclass
class SearchHit:
    """One search result. ``message_id`` is ``None`` when the conversation title matched."""

    conversation_id: int
    conversation_title: str
    message_id: int | None
    snippet: str


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


def fts_query(text: str) -> str:
    """Turn what a user typed into a safe FTS5 query: every word is a quoted string (so ``AND``,
    ``"``, ``*``, ``(`` or ``-`` mean nothing special), all must match, the last as a prefix.
    Returns ``""`` when the text holds no word at all."""
    words = [w for w in text.split() if any(ch.isalnum() for ch in w)]
    if not words:
        return ""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    quoted[-1] += "*"
    return " ".join(quoted)


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _loads(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")


def _conversation(row: sqlite3.Row) -> Conversation:
    values = {f.name: row[f.name] for f in fields(Conversation)}
    return Conversation(**{**values, "settings": _loads(row["settings"])})


def _message(row: sqlite3.Row) -> Message:
    values = {f.name: row[f.name] for f in fields(Message)}
    return Message(**{**values, "stats": _loads(row["stats"])})


# --- the store -------------------------------------------------------------------------------


class HistoryStore:
    """All conversations of one user, in one SQLite file. See the module docstring for threads."""

    def __init__(self, db_path: Path, *, busy_timeout_s: float = 10.0) -> None:
        self.db_path = Path(db_path)
        self._lock = threading.RLock()
        self._last_stamp = utc_now() - timedelta(days=1)
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = open_connection(self.db_path, busy_timeout_s)
        except (OSError, sqlite3.DatabaseError) as err:
            raise self._open_error(err) from err
        try:
            migrate(self._conn)
        except sqlite3.DatabaseError as err:
            self._conn.close()
            raise self._open_error(err) from err

    def _open_error(self, err: OSError | sqlite3.DatabaseError) -> HistoryError:
        if isinstance(err, (OSError, sqlite3.OperationalError)):
            return HistoryError(
                f"Could not open the chat history file {self.db_path}.",
                hint=f"Check that it can be read and written ({err}).",
            )
        return HistoryError(
            f"The chat history file {self.db_path} is damaged or is not a chat history.",
            hint="Move the file aside to start a fresh history; the old file is left untouched.",
        )

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
        too long, or damage found on the way is a ``HistoryError``; anything else is a bug."""
        with self._lock:
            try:
                with transaction(self._conn):
                    yield self._conn
            except sqlite3.DatabaseError as err:
                if getattr(err, "sqlite_errorcode", 0) & 0xFF not in _ENVIRONMENT_ERROR_CODES:
                    raise
                raise HistoryError(
                    f"Could not save to the chat history file {self.db_path}.",
                    hint=f"The disk may be full, or another program may be using the file ({err}).",
                ) from err

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

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
        with self._lock:
            return _conversation(self._live_conversation_row(self._conn, conversation_id))

    def list_conversations(self, limit: int | None = None) -> list[Conversation]:
        """Conversations not deleted, most recently updated first."""
        rows = self._read(
            "SELECT * FROM conversations WHERE deleted_at IS NULL"
            " ORDER BY updated_at DESC, id DESC LIMIT ?",
            (-1 if limit is None else limit,),
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
        with self._lock:
            self._live_conversation_row(self._conn, conversation_id)
            rows = self._conn.execute(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY position",
                (conversation_id,),
            ).fetchall()
        return [_message(row) for row in rows]

    # -- search

    def search(self, query: str, limit: int = 50) -> list[SearchHit]:
        """Messages and titles containing every word of ``query`` (the last word as a prefix),
        best match first. Matches in the snippet are wrapped in ``SNIPPET_START``/``SNIPPET_END``.
        Any text is a valid query; punctuation and FTS operators are taken as plain words."""
        match = fts_query(query)
        if not match:
            return []
        marks = (SNIPPET_START, SNIPPET_END, "…")
        rows = self._read(
            """SELECT c.id AS cid, c.title, m.id AS mid, c.updated_at,
                      snippet(messages_fts, 0, ?, ?, ?, 16) AS snip, bm25(messages_fts) AS score
               FROM messages_fts
               JOIN messages m ON m.id = messages_fts.rowid
               JOIN conversations c ON c.id = m.conversation_id
               WHERE messages_fts MATCH ? AND c.deleted_at IS NULL
               UNION ALL
               SELECT c.id, c.title, NULL, c.updated_at,
                      snippet(conversations_fts, 0, ?, ?, ?, 16), bm25(conversations_fts)
               FROM conversations_fts
               JOIN conversations c ON c.id = conversations_fts.rowid
               WHERE conversations_fts MATCH ? AND c.deleted_at IS NULL
               ORDER BY score, updated_at DESC
               LIMIT ?""",
            (*marks, match, *marks, match, limit),
        )
        return [SearchHit(row["cid"], row["title"], row["mid"], row["snip"]) for row in rows]

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
            if message.status == "interrupted":
                lines += ["*(answer stopped before it was finished)*", ""]
            elif message.status == "error":
                lines += ["*(answer failed)*", ""]
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
