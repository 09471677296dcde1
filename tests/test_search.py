"""Searching a real history file: short words, stages best first, snippets, cancelling."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.chat import search as search_module
from assistant.chat.history import HistoryStore, Message
from assistant.chat.migrations import open_connection
from assistant.chat.search import (
    SNIPPET_END,
    SNIPPET_START,
    HistorySearcher,
    fts_query,
    make_snippet,
    search_stages,
)
from assistant.paths import app_paths


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    with HistoryStore(app_paths().history_db) as opened:
        yield opened


def test_short_words_match_whole_and_longer_ones_as_prefixes(store: HistoryStore) -> None:
    chat = store.create_conversation(title="Pets")
    cat = store.add_message(chat.id, "user", "my cat sleeps on the category page")
    store.add_message(chat.id, "user", "a caterpillar")
    assert fts_query("ca", prefix_from=3) == '"ca"'
    assert fts_query("cat", prefix_from=3) == '"cat"*'
    assert store.search("ca") == []  # two letters: the word "ca", not every word in ca…
    assert [h.message_id for h in store.search("my ca")] == []
    assert len(store.search("cat")) == 2  # three letters: a prefix
    assert [h.message_id for h in store.search("cat sleeps")] == [cat.id]
    assert [h.message_id for h in store.search("a")] != []  # the word "a" itself


def test_snippet_is_centred_on_the_match() -> None:
    text = " ".join(f"word{i}" for i in range(200)) + " the needle is here " + "tail " * 50
    snippet = make_snippet(text, "needle")
    assert f"{SNIPPET_START}needle{SNIPPET_END}" in snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    before = snippet.split(SNIPPET_START)[0]
    assert 10 < len(before) < 60  # some context before the match, not the text's start
    assert make_snippet("Holiday in Lisbon", "lisb", prefix_from=3) == "Holiday in «Lisbon»"
    assert make_snippet("Crème brûlée recipe", "creme") == "«Crème» brûlée recipe"


@pytest.mark.parametrize(
    ("query", "prefix_from"),
    [("needle", 1), ("the needle", 3), ("NEEDLE", 1), ("nee", 3), ("ne", 3), ("zz", 1), ("ss", 1)],
)
def test_ascii_text_is_marked_as_any_text_is(query: str, prefix_from: int) -> None:
    # Plain ASCII text takes a faster path; one non-ASCII letter far past the snippet sends
    # the same text down the general one, and both must mark the same words.
    text = "x_needle The Needle, the needles and needle2 SS here " + "word " * 40
    fast = make_snippet(text, query, prefix_from=prefix_from)
    general = make_snippet(text + "é", query, prefix_from=prefix_from)
    assert fast == general


def test_snippet_never_marks_part_of_a_word() -> None:
    # The context before the match starts inside "xneedle": that piece is no match of its own.
    text = "xneedle " + "b " * 14 + "needle " + "c " * 80
    snippet = make_snippet(text, "needle", before=text.index(" needle"))
    assert snippet.count(SNIPPET_START) == 1
    assert f"{SNIPPET_START}needle{SNIPPET_END}" in snippet


def test_stages_rank_the_newest_first_then_everything(store: HistoryStore) -> None:
    chat = store.create_conversation(title="Notes")
    best = store.add_message(chat.id, "user", "kiwi kiwi kiwi kiwi")
    for i in range(30):
        store.add_message(chat.id, "user", f"kiwi and filler text number {i} " * 3)
    conn = open_connection(store.db_path)
    try:
        stages = list(search_stages(conn, "kiwi", limit=5, window=10))
    finally:
        conn.close()
    # exact words among the newest, the prefix among the newest, then everything ranked
    assert [s.final for s in stages] == [False, False, True]
    assert best.id not in [h.message_id for h in stages[0].hits]  # not among the newest 10
    assert stages[-1].hits[0].message_id == best.id  # the final stage ranks all of them
    assert all(len(s.hits) <= 5 for s in stages)


def test_a_small_history_is_searched_in_one_final_stage(store: HistoryStore) -> None:
    chat = store.create_conversation(title="Trip")
    store.add_message(chat.id, "user", "pack a map")
    searcher = HistorySearcher(store.db_path)
    try:
        stages = list(searcher.stages("a"))
        assert [s.final for s in stages] == [True]
        assert [h.conversation_id for h in stages[0].hits] == [chat.id]
        (empty,) = searcher.stages("!!")
        assert empty.final and not empty.hits
    finally:
        searcher.close()


def test_a_search_no_longer_wanted_stops_quietly(store: HistoryStore) -> None:
    chat = store.create_conversation(title="Lots")
    for i in range(300):
        store.add_message(chat.id, "user", f"apple banana cherry {i} " * 20)
    searcher = HistorySearcher(store.db_path)
    calls = 0

    def wanted() -> bool:
        nonlocal calls
        calls += 1
        return calls < 3  # a newer query arrives while this one runs

    try:
        stages = list(searcher.stages("app", wanted=wanted))
        assert not any(s.final for s in stages)
        # The same searcher answers the next query in full.
        assert list(searcher.stages("banana"))[-1].final
    finally:
        searcher.close()


def test_a_newer_query_interrupts_the_statement_running_now(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat = store.create_conversation(title="Endless")
    store.add_message(chat.id, "user", "endless")
    monkeypatch.setattr(search_module, "_CHECK_EVERY", 10**9)  # no check while it runs

    def endless_titles(conn: sqlite3.Connection, match: str, limit: int) -> list[Any]:
        # The statement itself says it runs: an interrupt that lands before SQLite starts a
        # statement is lost (the case the progress check covers), which a busy CPU can cause.
        def step(x: int) -> int:
            running.set()
            return x + 1

        conn.create_function("step", 1, step)
        conn.execute(  # a statement that never ends by itself
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT step(x) FROM c) SELECT max(x) FROM c"
        ).fetchall()
        return []

    monkeypatch.setattr(search_module, "_ranked_titles", endless_titles)
    running = threading.Event()
    wanted = threading.Event()
    wanted.set()
    stages: list[object] = []
    failures: list[BaseException] = []
    searcher = HistorySearcher(store.db_path)

    def work() -> None:
        try:
            stages.extend(searcher.stages("endless", wanted=wanted.is_set))
        except BaseException as exc:  # the test says which
            failures.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        assert running.wait(30)
        wanted.clear()  # a newer query was typed
        searcher.interrupt()
        thread.join(30)
        assert not thread.is_alive()
        assert stages == [] and failures == []  # ended quietly, nothing reported
    finally:
        searcher.interrupt()
        thread.join(30)
        searcher.close()
    searcher.interrupt()  # once closed: nothing to stop, no error


def test_a_searcher_works_from_another_thread(store: HistoryStore) -> None:
    chat = store.create_conversation(title="Threads")
    store.add_message(chat.id, "user", "searching from a worker thread")
    found: list[int | None] = []

    def work() -> None:
        searcher = HistorySearcher(Path(store.db_path))
        try:
            found.extend(h.message_id for h in list(searcher.stages("worker"))[-1].hits)
        finally:
            searcher.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert len(found) == 1


@pytest.mark.parametrize(
    ("status", "stats", "outcome", "can_continue"),
    [
        ("complete", {"stop_reason": "stop"}, "", False),
        ("complete", {"stop_reason": "length"}, "cut at the length limit", True),
        ("interrupted", {"stop_reason": "cancelled"}, "stopped by you", True),
        ("interrupted", {"stop_reason": "app_closed"}, "interrupted when the app closed", True),
        ("interrupted", {}, "interrupted: the app stopped before it finished", True),
        ("error", {"error": "Out of memory."}, "failed: Out of memory.", False),
        ("error", {}, "failed", False),
    ],
)
def test_what_happened_to_an_answer(
    status: str, stats: dict[str, str], outcome: str, can_continue: bool
) -> None:
    message = Message(1, 1, "assistant", "Some text", stats=stats, status=status)
    assert message.outcome == outcome
    assert message.can_continue is can_continue


def test_exports_say_what_happened(store: HistoryStore) -> None:
    chat = store.create_conversation(title="t")
    store.add_message(chat.id, "user", "Tell me a story")
    store.add_message(
        chat.id, "assistant", "Once upon", stats={"stop_reason": "length"}, status="complete"
    )
    text = store.export_markdown(chat.id)
    assert "*(answer cut at the length limit)*" in text
    exported = store.export_json(chat.id)
    assert exported["messages"][1]["stats"]["stop_reason"] == "length"
