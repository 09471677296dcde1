"""Real damaged SQLite history files for the tests: a whole database, then garbage written over
pages of one table, the way a failing disk or a crash of a copy would leave it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from assistant.chat.history import HistoryStore

PAGE = 4096


def build_history(db_path: Path, conversations: int = 40, messages: int = 6) -> None:
    """A closed (checkpointed) history with numbered conversations: conversation N has the
    title ``Chat N`` and messages ``question N.i`` / ``answer N.i`` with enough text that the
    messages table spans many pages."""
    filler = " lorem ipsum dolor sit amet" * 12
    with HistoryStore(db_path) as store:
        for n in range(1, conversations + 1):
            conv = store.create_conversation(title=f"Chat {n}")
            for i in range(messages // 2):
                store.add_message(conv.id, "user", f"question {n}.{i}{filler}")
                store.add_message(conv.id, "assistant", f"answer {n}.{i}{filler}")
    conn = sqlite3.connect(db_path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def table_pages(db_path: Path, table: str) -> list[int]:
    """The page numbers (1-based) of ``table``'s b-tree, read with SQLite's dbstat table."""
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno",
            (table,),
        ).fetchall()
    finally:
        conn.close()
    return [int(row[0]) for row in rows]


def damage_pages(db_path: Path, pages: list[int]) -> None:
    """Write garbage over the given pages (not the file's header)."""
    with db_path.open("r+b") as handle:
        for page in pages:
            assert page > 1, "the header page is left alone"
            handle.seek((page - 1) * PAGE)
            handle.write(bytes((i * 37 + 11) % 256 for i in range(PAGE)))


def damaged_history(db_path: Path) -> list[int]:
    """A history whose messages table has two damaged leaf pages in its middle; returns them."""
    build_history(db_path)
    leaves = table_pages(db_path, "messages")
    middle = leaves[len(leaves) // 2 : len(leaves) // 2 + 2]
    damage_pages(db_path, middle)
    return middle
