"""Full-text search over the history, fast enough to run as the user types.

A heavy user's history (5,000 conversations, 100,000 messages) holds most short words in most
messages, so three things keep a search quick:

- **Short words are whole words.** A one- or two-letter prefix (``a*``) would merge the index
  entries of thousands of words; those words must match exactly. The last word is a prefix
  from ``PREFIX_FROM`` letters on.
- **Results come in stages, best first in each.** The first stage ranks the newest matches of
  the exact words (a few milliseconds whatever the size of the history), the next (when the
  last word is a prefix) the newest matches of the prefix, the last ranks every match. Each
  stage is a complete list that replaces the one before.
- **Snippets are cut in Python, around the first match**, for the few results shown, rather
  than by SQLite for every matching row; so the word that matched is always in view.

``HistorySearcher`` has a read-only connection of its own, for a worker thread, and a search in
progress stops as soon as its caller no longer wants it (a newer query was typed).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sqlite3
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from assistant.chat.migrations import open_connection

SNIPPET_START = "«"
SNIPPET_END = "»"
ELLIPSIS = "…"
# The last word of a query is a prefix from this many letters on; shorter words match whole.
PREFIX_FROM = 3
# The first stage ranks this many of the newest matching messages.
RECENT_WINDOW = 200
# Characters of context shown before the first match, and the snippet's length in all.
SNIPPET_BEFORE = 30
SNIPPET_LENGTH = 110
# How often (in SQLite VM steps, about 30 ms) a running query asks whether it is still
# wanted. Only a safety net: a newer query interrupts it at once (``interrupt``). Each ask takes
# Python's lock (GIL) from within SQLite; asked every 3 ms, that kept the UI thread waiting
# for the lock, a stall while typing.
_CHECK_EVERY = 200_000
# Tokens as FTS5's unicode61 tokenizer sees them: letters and digits; "_" separates.
_TOKEN = re.compile(r"[^\W_]+")


@dataclass
class SearchHit:
    """One search result. ``message_id`` is ``None`` when the conversation title matched."""

    conversation_id: int
    conversation_title: str
    message_id: int | None
    snippet: str


@dataclass
class SearchStage:
    """The results known so far, best first; ``final`` when no better list will follow."""

    hits: list[SearchHit]
    final: bool


# --- queries ---------------------------------------------------------------------------------


def _words(text: str) -> list[str]:
    return [w for w in text.split() if any(ch.isalnum() for ch in w)]


def fts_query(text: str, *, prefix_from: int = 1) -> str:
    """Turn what a user typed into a safe FTS5 query: every word is a quoted string (so ``AND``,
    ``"``, ``*``, ``(`` or ``-`` mean nothing special), all must match, and the last is a prefix
    when it has at least ``prefix_from`` letters or digits. Returns ``""`` when the text holds
    no word at all."""
    words = _words(text)
    if not words:
        return ""
    quoted = ['"' + w.replace('"', '""') + '"' for w in words]
    if sum(ch.isalnum() for ch in words[-1]) >= prefix_from:
        quoted[-1] += "*"
    return " ".join(quoted)


def fold(word: str) -> str:
    """A word as the index compares it: case and diacritics removed."""
    decomposed = unicodedata.normalize("NFKD", word)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


# --- snippets --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def _snippet_terms(query: str, prefix_from: int) -> tuple[tuple[str, ...], str]:
    """The folded tokens of ``query``, and the prefix its last word matches ("" when the last
    word is too short to be a prefix). Worked out once per query, not once per snippet."""
    words = _words(query)
    terms = tuple(fold(t) for w in words for t in _TOKEN.findall(w))
    prefix = bool(words) and sum(ch.isalnum() for ch in words[-1]) >= prefix_from
    tokens = _TOKEN.findall(words[-1]) if prefix else []
    return terms, fold(tokens[-1]) if tokens else ""


@functools.lru_cache(maxsize=32)
def _ascii_matcher(terms: tuple[str, ...], prefix: str) -> re.Pattern[str] | None:
    """One regular expression that finds, in ASCII text, the tokens ``make_snippet`` marks:
    a folded term whole, or any token starting with ``prefix``. Searching in C rather than
    testing token by token in Python keeps a search worker's hold on the GIL short, so the
    UI thread is not kept waiting while snippets are cut. ``None`` when nothing can match."""
    alternatives = sorted({re.escape(t) for t in terms if t and t.isascii()}, key=len)[::-1]
    if prefix and prefix.isascii():
        alternatives.append(re.escape(prefix) + "[a-z0-9]*")
    if not alternatives:
        return None
    body = "|".join(alternatives)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])", re.IGNORECASE | re.ASCII)


def make_snippet(
    text: str, query: str, *, prefix_from: int = 1, before: int = SNIPPET_BEFORE
) -> str:
    """A short piece of ``text`` that starts a little before the first word the query matched,
    with the matching words between ``SNIPPET_START`` and ``SNIPPET_END``, and ``…`` where text
    was left out. Whitespace is collapsed to single spaces."""
    terms, last = _snippet_terms(query, prefix_from)

    def matches(token: str) -> bool:
        folded = token.casefold() if token.isascii() else fold(token)
        return folded in terms or (bool(last) and folded.startswith(last))

    flat = " ".join(text.split())
    ascii_text = flat.isascii()
    pattern = _ascii_matcher(terms, last) if ascii_text else None

    def found(begin: int, stop: int) -> Iterator[tuple[int, int]]:
        if ascii_text:  # the common case: one regular expression, run in C
            return (m.span() for m in pattern.finditer(flat, begin, stop)) if pattern else iter(())
        return (m.span() for m in _TOKEN.finditer(flat, begin, stop) if matches(m.group()))

    first = next(found(0, len(flat)), None)
    if first is None:
        start, end = 0, min(len(flat), SNIPPET_LENGTH)
    else:
        start = max(0, first[0] - before)
        end = min(len(flat), start + SNIPPET_LENGTH)
        start = max(0, min(start, end - SNIPPET_LENGTH))
    # Only the words shown are looked at (an answer can be long).
    spans = list(found(start, end))
    # Cut at word boundaries, never inside a matched word.
    if start > 0:
        space = flat.find(" ", start)
        start = space + 1 if 0 <= space < (spans[0][0] if spans else end) else start
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start and (not spans or space > spans[0][1]) else end
    pieces: list[str] = [ELLIPSIS] if start > 0 else []
    at = start
    for s, e in spans:
        if s < start or e > end:
            continue
        pieces += [flat[at:s], SNIPPET_START, flat[s:e], SNIPPET_END]
        at = e
    pieces.append(flat[at:end])
    if end < len(flat):
        pieces.append(ELLIPSIS)
    return "".join(pieces)


# --- running a search ------------------------------------------------------------------------


def _ranked_titles(conn: sqlite3.Connection, match: str, limit: int) -> list[tuple[float, int]]:
    rows = conn.execute(
        "SELECT bm25(conversations_fts) AS score, rowid FROM conversations_fts"
        " WHERE conversations_fts MATCH ? ORDER BY score LIMIT ?",
        (match, limit),
    ).fetchall()
    return [(row[0], row[1]) for row in rows]


def _ranked_messages(
    conn: sqlite3.Connection, match: str, limit: int, window: int | None
) -> tuple[list[tuple[float, int]], bool]:
    """The best ``limit`` messages by bm25: among the newest ``window`` matches, or all of
    them (``window`` ``None``). Also says whether the window held every match."""
    if window is None:
        rows = conn.execute(
            "SELECT bm25(messages_fts) AS score, rowid FROM messages_fts"
            " WHERE messages_fts MATCH ? ORDER BY score LIMIT ?",
            (match, limit),
        ).fetchall()
        return [(row[0], row[1]) for row in rows], True
    rows = conn.execute(
        "SELECT bm25(messages_fts) AS score, rowid FROM messages_fts"
        " WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?",
        (match, window),
    ).fetchall()
    ranked = sorted(((row[0], row[1]) for row in rows), key=lambda pair: pair[0])
    return ranked[:limit], len(rows) < window


def _hits(
    conn: sqlite3.Connection,
    query: str,
    titles: list[tuple[float, int]],
    messages: list[tuple[float, int]],
    limit: int,
    prefix_from: int,
) -> list[SearchHit]:
    """Titles and messages merged best first (a title first on a tie), in conversations not
    deleted, with their snippets. (``+deleted_at``: look rows up by id, not by the deletion
    index, which every live conversation shares.)"""
    title_rows = {
        row["id"]: row
        for row in conn.execute(
            f"SELECT id, title, updated_at FROM conversations WHERE +deleted_at IS NULL"
            f" AND id IN ({','.join('?' * len(titles))})",
            [cid for _, cid in titles],
        )
    }
    message_rows = {
        row["mid"]: row
        for row in conn.execute(
            f"SELECT m.id AS mid, m.text, c.id AS cid, c.title, c.updated_at FROM messages m"
            f" JOIN conversations c ON c.id = m.conversation_id"
            f" WHERE +c.deleted_at IS NULL AND m.id IN ({','.join('?' * len(messages))})",
            [mid for _, mid in messages],
        )
    }
    # The text to cut a snippet from is kept aside: snippets are cut for the hits kept only.
    scored: list[tuple[float, int, str, SearchHit, str]] = []
    for score, cid in titles:
        row = title_rows.get(cid)
        if row is not None:
            hit = SearchHit(cid, row["title"], None, "")
            scored.append((score, 0, row["updated_at"], hit, row["title"]))
    for score, mid in messages:
        row = message_rows.get(mid)
        if row is not None:
            hit = SearchHit(row["cid"], row["title"], mid, "")
            scored.append((score, 1, row["updated_at"], hit, row["text"]))
    scored.sort(key=lambda item: item[2], reverse=True)  # newer first among equals
    scored.sort(key=lambda item: (item[0], item[1]))
    kept = scored[:limit]
    for *_, hit, text in kept:
        hit.snippet = make_snippet(text, query, prefix_from=prefix_from)
    return [item[3] for item in kept]


def search_stages(
    conn: sqlite3.Connection,
    query: str,
    limit: int = 50,
    *,
    prefix_from: int = PREFIX_FROM,
    window: int = RECENT_WINDOW,
) -> Iterator[SearchStage]:
    """The results for ``query`` on ``conn``, stage by stage (see the module docstring); the
    last stage is ``final``. A query without a word yields one empty final stage."""
    full = fts_query(query, prefix_from=prefix_from)
    if not full:
        yield SearchStage([], True)
        return
    extra = limit + 10  # room for results of deleted (not yet purged) conversations
    exact = fts_query(query, prefix_from=10**9)
    queries = [exact] if exact == full else [exact, full]
    for match in queries:
        titles = _ranked_titles(conn, match, extra)
        recent, complete = _ranked_messages(conn, match, extra, window)
        final = complete and match == full
        yield SearchStage(_hits(conn, query, titles, recent, limit, prefix_from), final)
        if final:
            return
    titles = _ranked_titles(conn, full, extra)
    ranked, _ = _ranked_messages(conn, full, extra, None)
    yield SearchStage(_hits(conn, query, titles, ranked, limit, prefix_from), True)


def search(
    conn: sqlite3.Connection, query: str, limit: int = 50, *, prefix_from: int = PREFIX_FROM
) -> list[SearchHit]:
    """The final results of :func:`search_stages`."""
    hits: list[SearchHit] = []
    for stage in search_stages(conn, query, limit, prefix_from=prefix_from):
        hits = stage.hits
    return hits


class HistorySearcher:
    """Searches the history file ``db_path`` on a read-only connection of its own.

    Made and used on one thread (a search worker's); :meth:`stages` stops early, between or
    inside queries, once ``wanted()`` returns False.
    """

    def __init__(self, db_path: Path) -> None:
        self._conn = open_connection(Path(db_path))
        self._conn.execute("PRAGMA query_only = 1")
        self._wanted: Callable[[], bool] = lambda: True
        self._conn.set_progress_handler(self._on_progress, _CHECK_EVERY)

    def _on_progress(self) -> int:
        return 0 if self._wanted() else 1  # non-zero interrupts the running statement

    def stages(
        self, query: str, limit: int = 50, *, wanted: Callable[[], bool] = lambda: True
    ) -> Iterator[SearchStage]:
        """Like :func:`search_stages`; ends without a final stage when no longer wanted."""
        self._wanted = wanted
        try:
            for stage in search_stages(self._conn, query, limit):
                if not wanted():
                    return
                yield stage
        except sqlite3.OperationalError as err:
            if wanted() or "interrupt" not in str(err):
                raise
        finally:
            self._wanted = lambda: True

    def interrupt(self) -> None:
        """Stop the statement running now (from any thread): the search ends at once if no
        longer wanted. Does nothing once closed; call it and ``close`` under one lock."""
        with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile
            self._conn.interrupt()

    def close(self) -> None:
        self._conn.close()
