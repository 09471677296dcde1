"""The cloud ledger and each conversation's cloud mode, kept in the history database.

Every request that leaves the machine gets a ledger row *before* it is sent (``start``), with
exactly the messages sent, and is completed when it ends (``finish``): a crash mid-request still
leaves the record that something went out. The rows can be listed and exported (JSON or CSV).

The ledger opens its own connection to the history file (the schema comes from the same
named migrations), guarded by a lock so the UI thread and the remote worker can share it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat.consent import MODES, Mode
from assistant.chat.migrations import iso, migrate, open_connection, transaction, utc_now
from assistant.engine.base import ChatMessage, GenerationStats

log = logging.getLogger(__name__)

LEDGER_FORMAT = "offline-assistant.cloud-ledger"


@dataclass
class LedgerEntry:
    id: int
    created_at: str
    conversation_id: int | None
    message_id: int | None
    provider: str
    model: str
    endpoint: str
    sent: list[dict[str, str]] = field(default_factory=list)
    sent_messages: int = 0
    sent_chars: int = 0
    received_chars: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    status: str = "sending"
    error: str = ""


class CloudLedger:
    """What was sent to which cloud model, and each conversation's cloud mode."""

    def __init__(self, db_path: Path) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = open_connection(db_path)
            migrate(self._conn)
        except (sqlite3.Error, OSError) as exc:
            # The history is read-only, damaged or could not be made (the app then runs on
            # what it can read): keep this session's record in memory rather than not start.
            log.warning("The cloud ledger is kept in memory for this session: %s", exc)
            self._conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            migrate(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- modes -----------------------------------------------------------------------------

    def mode(self, conversation_id: int | None) -> tuple[Mode, str | None]:
        """The conversation's mode and the provider it was allowed for (``local`` for a chat
        not saved yet or never changed)."""
        if conversation_id is None:
            return "local", None
        with self._lock:
            row = self._conn.execute(
                "SELECT mode, provider FROM cloud_modes WHERE conversation_id = ?",
                (conversation_id,),
            ).fetchone()
        if row is None or row["mode"] not in MODES:
            return "local", None
        return row["mode"], row["provider"]

    def set_mode(self, conversation_id: int, mode: Mode, provider: str | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        with self._lock, transaction(self._conn):
            self._conn.execute(
                "INSERT INTO cloud_modes (conversation_id, mode, provider, changed_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (conversation_id) DO UPDATE SET "
                "mode = excluded.mode, provider = excluded.provider, "
                "changed_at = excluded.changed_at",
                (conversation_id, mode, provider if mode == "allowed" else None, iso(utc_now())),
            )

    # --- the ledger --------------------------------------------------------------------------

    def start(
        self,
        conversation_id: int | None,
        provider: str,
        model: str,
        endpoint: str,
        messages: list[ChatMessage],
    ) -> int:
        """Record a request about to be sent (exactly ``messages``); returns its entry id."""
        sent = [m.to_dict() for m in messages]
        with self._lock, transaction(self._conn):
            cursor = self._conn.execute(
                "INSERT INTO cloud_ledger (created_at, conversation_id, provider, model, "
                "endpoint, sent, sent_messages, sent_chars) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    iso(utc_now()),
                    conversation_id,
                    provider,
                    model,
                    endpoint,
                    json.dumps(sent, ensure_ascii=False),
                    len(sent),
                    sum(len(m.content) for m in messages),
                ),
            )
            return int(cursor.lastrowid or 0)

    def finish(
        self,
        entry_id: int,
        *,
        status: str,
        received: str = "",
        stats: GenerationStats | dict[str, Any] | None = None,
        message_id: int | None = None,
        error: str = "",
        cost_usd: float | None = None,
    ) -> None:
        """Complete an entry: how it ended, what came back (characters and tokens)."""
        values = stats.to_dict() if isinstance(stats, GenerationStats) else dict(stats or {})
        with self._lock, transaction(self._conn):
            self._conn.execute(
                "UPDATE cloud_ledger SET status = ?, received_chars = ?, prompt_tokens = ?, "
                "completion_tokens = ?, message_id = COALESCE(?, message_id), error = ?, "
                "cost_usd = ? WHERE id = ?",
                (
                    status,
                    len(received),
                    values.get("prompt_tokens") or None,
                    values.get("completion_tokens") or None,
                    message_id,
                    error,
                    cost_usd,
                    entry_id,
                ),
            )

    def entries(self, conversation_id: int | None = None, limit: int = 1000) -> list[LedgerEntry]:
        """Newest first; only one conversation's when ``conversation_id`` is given."""
        sql = "SELECT * FROM cloud_ledger"
        params: tuple[Any, ...] = ()
        if conversation_id is not None:
            sql += " WHERE conversation_id = ?"
            params = (conversation_id,)
        sql += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._conn.execute(sql, (*params, limit)).fetchall()
        return [_entry(row) for row in rows]

    def export_json(self) -> dict[str, Any]:
        return {
            "format": LEDGER_FORMAT,
            "version": 1,
            "exported_at": iso(utc_now()),
            "entries": [asdict(e) for e in self.entries(limit=1_000_000)],
        }

    def export_csv(self) -> str:
        """One line per request, without the messages themselves (the JSON export has them)."""
        columns = [
            "created_at",
            "provider",
            "model",
            "endpoint",
            "conversation_id",
            "status",
            "sent_messages",
            "sent_chars",
            "received_chars",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "error",
        ]
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for entry in self.entries(limit=1_000_000):
            writer.writerow(asdict(entry))
        return out.getvalue()


def _entry(row: sqlite3.Row) -> LedgerEntry:
    values = {key: row[key] for key in row.keys()}  # noqa: SIM118 - sqlite3.Row
    values["sent"] = json.loads(values["sent"] or "[]")
    return LedgerEntry(**values)
