"""A damaged chat history: check it, move it aside (never delete it), start fresh, salvage.

Recovery is done in Python, row by row, rather than with the ``sqlite3`` program's
``.recover``: Python 3.11's ``sqlite3`` module does not expose SQLite's recovery API, and the
``sqlite3`` program is not installed on Windows or macOS by default (nor on many Linux desktops),
so an app that relied on it could not recover anything there. Reading row by row salvages every
row whose page is readable: a damaged page costs the rows on it, not the whole table. Text that
is no longer valid UTF-8 is kept with replacement characters.

The damaged file keeps its name with ``.damaged-<time>`` added, next to the new history, with
its ``-wal`` file moved along (it may hold the latest answers), so it can be opened again, sent
to someone or recovered again by another tool.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat.history import ROLES, STATUSES, HistoryStore, damage_marker, side_files
from assistant.errors import HistoryError

log = logging.getLogger(__name__)

# How far past an unreadable row to look for the next readable one when the table's largest
# id cannot be read either.
_PROBE_SPAN = 10_000
_CONVERSATION_COLUMNS = (
    "id",
    "title",
    "created_at",
    "updated_at",
    "model",
    "system_prompt",
    "settings",
    "deleted_at",
)
_MESSAGE_COLUMNS = (
    "id",
    "conversation_id",
    "position",
    "role",
    "text",
    "model",
    "provider",
    "stats",
    "status",
    "created_at",
)


@dataclass
class SalvageReport:
    """What a recovery got back out of a damaged file."""

    conversations: int = 0
    messages: int = 0
    unreadable_rows: int = 0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"Recovered {self.conversations} conversation(s) with {self.messages} message(s)."
        if self.unreadable_rows:
            text += f" {self.unreadable_rows} damaged part(s) could not be read."
        return text


@dataclass
class Recovery:
    """Where the damaged file went, and what was salvaged from it (None: not tried)."""

    moved_to: Path
    report: SalvageReport | None = None


def check(db_path: Path, max_errors: int = 20) -> list[str]:
    """The problems SQLite's full ``quick_check`` finds in the history file (empty: whole).
    Opens the file read-only; a file that cannot be opened as a database is one problem."""
    try:
        conn = _open_damaged(db_path)
    except sqlite3.DatabaseError as err:
        return [str(err)]
    try:
        rows = conn.execute(f"PRAGMA quick_check({int(max_errors)})").fetchall()
        return [str(row[0]) for row in rows if row[0] != "ok"]
    except sqlite3.DatabaseError as err:
        return [str(err)]
    finally:
        conn.close()


def move_aside(db_path: Path) -> Path:
    """Rename the history file (and its ``-wal``/``-shm`` files) to ``<name>.damaged-<time>``;
    return the new path. Nothing is deleted. The store using the file must be closed first."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, number = db_path.with_name(f"{db_path.name}.damaged-{stamp}"), 2
    while target.exists():
        target, number = db_path.with_name(f"{db_path.name}.damaged-{stamp}-{number}"), number + 1
    try:
        os.replace(db_path, target)
        for side, moved in zip(side_files(db_path), side_files(target), strict=True):
            if side.exists():
                os.replace(side, moved)
    except OSError as err:
        raise HistoryError(
            f"Could not move the damaged chat history {db_path} aside ({err.strerror or err}).",
            hint="Check that its folder can be written, or move the file yourself.",
        ) from err
    with contextlib.suppress(OSError):
        os.replace(damage_marker(db_path), damage_marker(target))
    log.warning("Moved the damaged chat history %s to %s.", db_path, target)
    return target


def start_fresh(db_path: Path, *, salvage_from_old: bool = True) -> tuple[HistoryStore, Recovery]:
    """Move the damaged history aside, open a new empty one in its place and, with
    ``salvage_from_old``, copy into it every conversation and message still readable."""
    moved = move_aside(db_path)
    store = HistoryStore(db_path)
    recovery = Recovery(moved)
    if salvage_from_old:
        recovery.report = salvage(moved, store)
    return store, recovery


def salvage(damaged: Path, into: HistoryStore) -> SalvageReport:
    """Copy every readable conversation and message of ``damaged`` into the history ``into``,
    keeping their numbers. Messages whose conversation is lost go into a conversation named
    "Recovered conversation N" under the lost one's number."""
    report = SalvageReport()
    try:
        source = _open_damaged(damaged)
    except sqlite3.DatabaseError as err:
        report.problems.append(f"The file cannot be opened as a database ({err}).")
        return report
    try:
        conversations = list(_rows(source, "conversations", _CONVERSATION_COLUMNS, report))
        messages = list(_rows(source, "messages", _MESSAGE_COLUMNS, report))
    finally:
        source.close()
    _insert(into, conversations, messages, report)
    log.info("Salvaged from %s: %s", damaged, report.summary())
    return report


def _open_damaged(path: Path) -> sqlite3.Connection:
    """A read-only connection that tolerates text which is not UTF-8."""
    conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    conn.text_factory = lambda data: data.decode("utf-8", errors="replace")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError:
        conn.close()
        raise
    return conn


def _rows(
    conn: sqlite3.Connection, table: str, wanted: tuple[str, ...], report: SalvageReport
) -> Iterator[dict[str, Any]]:
    """Every readable row of ``table``, by id. A damaged page ends a scan; the next readable
    id is then looked for one by one and the scan goes on from there."""
    try:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    except sqlite3.DatabaseError as err:
        report.problems.append(f"The table of {table} cannot be read ({err}).")
        report.unreadable_rows += 1
        return
    columns = [name for name in wanted if name in present]
    if "id" not in columns:
        report.problems.append(f"The table of {table} is missing.")
        return
    select = f"SELECT {', '.join(columns)} FROM {table}"
    try:
        largest = conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        largest = None
    last = 0
    while True:
        try:
            for row in conn.execute(f"{select} WHERE id > ? ORDER BY id", (last,)):
                last = row["id"]
                yield dict(row)
            return
        except sqlite3.DatabaseError as err:
            report.unreadable_rows += 1
            report.problems.append(f"{table} after number {last}: {err}")
        found = _next_readable(conn, select, last, largest)
        if found is None:
            return
        last = found["id"]
        yield found


def _next_readable(
    conn: sqlite3.Connection, select: str, after: int, largest: int | None
) -> dict[str, Any] | None:
    """The first row with an id above ``after`` that can be read, trying ids one by one."""
    end = largest if largest is not None else after + _PROBE_SPAN
    for candidate in range(after + 1, end + 1):
        try:
            row = conn.execute(f"{select} WHERE id = ?", (candidate,)).fetchone()
        except sqlite3.DatabaseError:
            continue
        if row is not None:
            return dict(row)
    return None


def _insert(
    store: HistoryStore,
    conversations: list[dict[str, Any]],
    messages: list[dict[str, Any]],
    report: SalvageReport,
) -> None:
    now = store._now()
    with store._write() as conn:
        known: set[int] = set()
        for row in conversations:
            values = {key: row.get(key) for key in _CONVERSATION_COLUMNS}
            values["title"] = values["title"] or ""
            values["created_at"] = values["created_at"] or now
            values["updated_at"] = values["updated_at"] or now
            values["settings"] = values["settings"] or "{}"
            if _try_insert(conn, "conversations", values):
                known.add(int(row["id"]))
                report.conversations += 1
        for row in messages:
            values = {key: row.get(key) for key in _MESSAGE_COLUMNS}
            if values["role"] not in ROLES or not isinstance(values["conversation_id"], int):
                report.unreadable_rows += 1
                continue
            values["status"] = values["status"] if values["status"] in STATUSES else "complete"
            values["text"] = values["text"] or ""
            values["stats"] = values["stats"] or "{}"
            values["created_at"] = values["created_at"] or now
            owner = values["conversation_id"]
            if owner not in known:
                placeholder = {
                    "id": owner,
                    "title": f"Recovered conversation {owner}",
                    "created_at": values["created_at"],
                    "updated_at": now,
                    "settings": "{}",
                }
                if _try_insert(conn, "conversations", placeholder):
                    known.add(owner)
                    report.conversations += 1
            if _try_insert(conn, "messages", values):
                report.messages += 1
            else:
                report.unreadable_rows += 1


def _try_insert(conn: sqlite3.Connection, table: str, values: dict[str, Any]) -> bool:
    """Insert one salvaged row; a row that breaks a rule of the schema (garbage where a
    value was) is skipped, not the whole recovery."""
    names = ", ".join(values)
    marks = ", ".join("?" * len(values))
    try:
        conn.execute("SAVEPOINT salvage_row")
        conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(values.values()))
        conn.execute("RELEASE salvage_row")
        return True
    except (sqlite3.IntegrityError, sqlite3.InterfaceError, OverflowError):
        conn.execute("ROLLBACK TO salvage_row")
        conn.execute("RELEASE salvage_row")
        return False
