"""The chat history store, on a real SQLite file."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.chat.history import (
    EXPORT_FORMAT,
    HistoryStore,
    fts_query,
    title_from_question,
)
from assistant.chat.migrations import MIGRATIONS, migrate, open_connection
from assistant.errors import ConversationNotFoundError, HistoryError, ImportFormatError
from assistant.paths import app_paths


@pytest.fixture
def db_path() -> Path:
    return app_paths().history_db


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(db_path) as opened:
        yield opened


def _count(db_path: Path, table: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def _assert_search_index_in_sync(db_path: Path) -> None:
    """FTS5's own check that each index holds exactly what its content table holds."""
    conn = sqlite3.connect(db_path)
    try:
        for table in ("messages_fts", "conversations_fts"):
            conn.execute(f"INSERT INTO {table} ({table}, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


# --- opening and migrating -------------------------------------------------------------------


def test_open_creates_folder_and_applies_every_migration(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with HistoryStore(db_path):
        pass
    conn = sqlite3.connect(db_path)
    names = [row[0] for row in conn.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [name for name, _ in MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reopening_applies_nothing_twice(db_path: Path) -> None:
    HistoryStore(db_path).close()
    with HistoryStore(db_path) as store:
        conversation = store.create_conversation(title="kept")
    conn = open_connection(db_path)
    assert migrate(conn) == []
    conn.close()
    with HistoryStore(db_path) as store:
        assert store.get_conversation(conversation.id).title == "kept"
    assert _count(db_path, "_migrations") == len(MIGRATIONS)


def test_an_older_database_keeps_its_data_and_gets_the_later_migrations(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = open_connection(db_path)
    assert migrate(conn, MIGRATIONS[:1]) == ["001_initial_schema"]
    now = "2024-03-01T10:00:00.000000+00:00"
    conn.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at, settings)"
        " VALUES (7, 'Old pancakes', ?, ?, '{\"temperature\": 0.2}')",
        (now, now),
    )
    conn.execute(
        "INSERT INTO messages (conversation_id, position, role, text, stats, status, created_at)"
        " VALUES (7, 1, 'user', 'How do I make fluffy pancakes?', '{}', 'complete', ?),"
        " (7, 2, 'assistant', 'Separate the eggs.', '{\"completion_tokens\": 4}',"
        " 'interrupted', ?)",
        (now, now),
    )
    conn.close()

    with HistoryStore(db_path) as store:
        conversation = store.get_conversation(7)
        assert conversation.title == "Old pancakes"
        assert conversation.settings == {"temperature": 0.2}
        messages = store.messages(7)
        assert [(m.role, m.status) for m in messages] == [
            ("user", "complete"),
            ("assistant", "interrupted"),
        ]
        assert messages[1].stats == {"completion_tokens": 4}
        # 002 indexed the rows that were already there; 003 made soft delete possible.
        assert [hit.message_id for hit in store.search("fluffy")] == [messages[0].id]
        assert None in [hit.message_id for hit in store.search("pancakes")]  # the title
        store.delete_conversation(7)
        assert store.list_conversations() == []
    assert _count(db_path, "_migrations") == len(MIGRATIONS)


def test_a_failing_migration_leaves_no_trace(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    conn = open_connection(db_path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        migrate(conn, [*MIGRATIONS[:1], ("002_broken", broken)])
    names = [row[0] for row in conn.execute("SELECT name FROM _migrations")]
    assert names == ["001_initial_schema"]
    assert (
        conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchone() is None
    )
    conn.close()
    with HistoryStore(db_path) as store:  # the real list still applies cleanly afterwards
        store.create_conversation()
    assert _count(db_path, "_migrations") == len(MIGRATIONS)


def test_a_file_that_is_not_a_database_is_a_history_error(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(os.urandom(8192))
    with pytest.raises(HistoryError) as caught:
        HistoryStore(db_path)
    assert str(db_path) in caught.value.message
    assert "damaged" in caught.value.message
    assert caught.value.hint


def test_a_folder_in_place_of_the_file_is_a_history_error(db_path: Path) -> None:
    db_path.mkdir(parents=True)
    with pytest.raises(HistoryError, match="Could not open"):
        HistoryStore(db_path)


# --- conversations ---------------------------------------------------------------------------


def test_create_and_get_conversation(store: HistoryStore) -> None:
    created = store.create_conversation(
        title="Trip", model="smollm2", system_prompt="Be brief.", settings={"top_k": 20}
    )
    fetched = store.get_conversation(created.id)
    assert fetched == created
    assert fetched.settings == {"top_k": 20}
    assert fetched.created_at == fetched.updated_at
    assert fetched.created_at.endswith("+00:00")


def test_unknown_conversation_is_a_plain_not_found_error(store: HistoryStore) -> None:
    with pytest.raises(ConversationNotFoundError, match="no conversation number 99"):
        store.get_conversation(99)
    with pytest.raises(ConversationNotFoundError):
        store.add_message(99, "user", "hello")
    with pytest.raises(ConversationNotFoundError):
        store.rename_conversation(99, "x")
    with pytest.raises(ConversationNotFoundError):
        store.restore_conversation(99)


def test_list_is_most_recently_updated_first(store: HistoryStore) -> None:
    first = store.create_conversation(title="first")
    second = store.create_conversation(title="second")
    third = store.create_conversation(title="third")
    assert [c.id for c in store.list_conversations()] == [third.id, second.id, first.id]
    store.add_message(first.id, "user", "bump")
    assert [c.id for c in store.list_conversations()] == [first.id, third.id, second.id]
    assert [c.id for c in store.list_conversations(limit=2)] == [first.id, third.id]
    assert store.get_conversation(first.id).updated_at > first.updated_at


def test_rename_keeps_the_place_in_the_list(store: HistoryStore) -> None:
    older = store.create_conversation(title="older")
    newer = store.create_conversation(title="newer")
    store.rename_conversation(older.id, "Renamed")
    assert store.get_conversation(older.id).title == "Renamed"
    assert [c.id for c in store.list_conversations()] == [newer.id, older.id]


def test_soft_delete_restore_and_purge(store: HistoryStore, db_path: Path) -> None:
    keep = store.create_conversation(title="keep")
    drop = store.create_conversation(title="drop me")
    store.add_message(drop.id, "user", "a secret about zebras")
    store.delete_conversation(drop.id)
    assert [c.id for c in store.list_conversations()] == [keep.id]
    assert store.search("zebras") == []
    with pytest.raises(ConversationNotFoundError):
        store.get_conversation(drop.id)
    with pytest.raises(ConversationNotFoundError):
        store.delete_conversation(drop.id)

    store.restore_conversation(drop.id)
    assert {c.id for c in store.list_conversations()} == {keep.id, drop.id}
    assert len(store.search("zebras")) == 1
    assert [m.text for m in store.messages(drop.id)] == ["a secret about zebras"]

    store.delete_conversation(drop.id)
    assert store.purge_deleted() == 1
    assert store.purge_deleted() == 0
    with pytest.raises(ConversationNotFoundError):
        store.restore_conversation(drop.id)
    assert _count(db_path, "messages") == 0
    _assert_search_index_in_sync(db_path)
    assert [c.id for c in store.list_conversations()] == [keep.id]


def test_search_never_shows_a_deleted_chat_by_its_title_or_its_messages(
    store: HistoryStore,
) -> None:
    kept = store.create_conversation(title="Giraffe diets")
    gone = store.create_conversation(title="Zebra migration notes")
    store.add_message(gone.id, "user", "where do zebras go in winter?")
    store.add_message(kept.id, "user", "what do giraffes eat?")
    assert {hit.message_id is None for hit in store.search("zebra")} == {True, False}

    store.delete_conversation(gone.id)
    assert store.search("zebra") == []
    assert store.search("migration") == []  # a word only the title holds
    assert [hit.conversation_id for hit in store.search("giraffe")] == [kept.id, kept.id]

    store.restore_conversation(gone.id)
    assert {hit.conversation_id for hit in store.search("migration")} == {gone.id}


def test_an_answer_saved_after_delete_survives_the_undo(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.delete_conversation(conversation.id)
    store.add_message(conversation.id, "assistant", "late answer")
    store.restore_conversation(conversation.id)
    assert [m.text for m in store.messages(conversation.id)] == ["late answer"]


# --- messages and titles ---------------------------------------------------------------------


def test_messages_keep_their_order_fields_and_stats(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    stats = {"prompt_tokens": 12, "completion_tokens": 30, "ttft_s": 0.25, "tokens_per_s": 41.5}
    store.add_message(conversation.id, "system", "Be kind.")
    store.add_message(conversation.id, "user", "Hi")
    answer = store.add_message(
        conversation.id, "assistant", "Hello!", model="smollm2", provider="local", stats=stats
    )
    assert answer.stats == stats
    messages = store.messages(conversation.id)
    assert [(m.role, m.text) for m in messages] == [
        ("system", "Be kind."),
        ("user", "Hi"),
        ("assistant", "Hello!"),
    ]
    assert messages[2] == answer
    assert (messages[2].model, messages[2].provider, messages[2].status) == (
        "smollm2",
        "local",
        "complete",
    )


def test_bad_role_or_status_is_a_programming_error(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    with pytest.raises(ValueError, match="role"):
        store.add_message(conversation.id, "robot", "beep")
    with pytest.raises(ValueError, match="status"):
        store.add_message(conversation.id, "user", "hi", status="done")
    message = store.add_message(conversation.id, "user", "hi")
    with pytest.raises(ValueError, match="status"):
        store.update_message(message.id, status="finished")
    assert len(store.messages(conversation.id)) == 1


def test_first_user_message_names_an_untitled_conversation(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "system", "You are helpful.")
    assert store.get_conversation(conversation.id).title == ""
    store.add_message(conversation.id, "user", "\n  What is   the capital\tof France?\nThanks")
    assert store.get_conversation(conversation.id).title == "What is the capital of France?"
    store.add_message(conversation.id, "user", "And of Spain?")
    assert store.get_conversation(conversation.id).title == "What is the capital of France?"

    named = store.create_conversation(title="My title")
    store.add_message(named.id, "user", "Something else")
    assert store.get_conversation(named.id).title == "My title"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Short question?", "Short question?"),
        ("  many   spaces\there ", "many spaces here"),
        ("first line\nsecond line", "first line"),
        ("\n\n  \nafter blank lines", "after blank lines"),
        ("", ""),
        ("word " * 30, "word word word word word word word word word word word word…"),
        ("x" * 100, "x" * 59 + "…"),
        (
            "Tell me, please, about the history of the Roman Empire, in detail",
            "Tell me, please, about the history of the Roman Empire, in…",
        ),
        (  # no dangling comma before the ellipsis
            "Please compare these approaches carefully for me, considering everything",
            "Please compare these approaches carefully for me…",
        ),
        ("Exactly sixty characters long, so it stays just as it is, ok", None),
    ],
)
def test_title_from_question(text: str, expected: str | None) -> None:
    title = title_from_question(text)
    assert len(title) <= 60
    assert title == (text if expected is None else expected)


def test_update_message_while_streaming(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    message = store.add_message(conversation.id, "assistant", "", status="interrupted")
    store.update_message(message.id, text="Partial answer")
    store.update_message(message.id, status="complete", stats={"completion_tokens": 2})
    store.update_message(message.id)  # nothing to change is fine
    (saved,) = store.messages(conversation.id)
    assert (saved.text, saved.status, saved.stats) == (
        "Partial answer",
        "complete",
        {"completion_tokens": 2},
    )
    assert store.get_conversation(conversation.id).updated_at > message.created_at
    with pytest.raises(HistoryError):
        store.update_message(12345, text="gone")


def test_delete_messages_from_a_message_onwards(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    texts = ["q1", "a1", "q2", "a2"]
    ids = [
        store.add_message(conversation.id, "user" if i % 2 == 0 else "assistant", t).id
        for i, t in enumerate(texts)
    ]
    store.delete_messages_from(conversation.id, ids[2])
    assert [m.text for m in store.messages(conversation.id)] == ["q1", "a1"]
    again = store.add_message(conversation.id, "user", "q2 edited")
    assert [m.id for m in store.messages(conversation.id)] == [ids[0], ids[1], again.id]
    other = store.create_conversation()
    with pytest.raises(HistoryError):
        store.delete_messages_from(other.id, ids[0])
    assert len(store.messages(conversation.id)) == 3


# --- search ----------------------------------------------------------------------------------


def test_search_finds_messages_and_titles_with_snippets(store: HistoryStore) -> None:
    trip = store.create_conversation(title="Holiday in Lisbon")
    store.add_message(trip.id, "user", "Where should I eat pastel de nata in Lisbon?")
    other = store.create_conversation(title="Cooking")
    target = store.add_message(other.id, "assistant", "Bake the custard tarts at 250 degrees.")

    hits = store.search("custard")
    assert len(hits) == 1
    assert (hits[0].conversation_id, hits[0].conversation_title) == (other.id, "Cooking")
    assert hits[0].message_id == target.id
    assert "«custard»" in hits[0].snippet

    lisbon = store.search("lisbon")
    assert {(h.conversation_id, h.message_id is None) for h in lisbon} == {
        (trip.id, True),
        (trip.id, False),
    }
    title_hit = next(h for h in lisbon if h.message_id is None)
    assert title_hit.snippet == "Holiday in «Lisbon»"


def test_search_prefix_matches_the_last_word_and_needs_all_words(store: HistoryStore) -> None:
    conversation = store.create_conversation(title="t")
    message = store.add_message(conversation.id, "user", "Explain quantum entanglement simply")
    assert [h.message_id for h in store.search("quantum entang")] == [message.id]
    assert store.search("quantum cooking") == []
    assert [h.message_id for h in store.search("ENTANGLEMENT")] == [message.id]


@pytest.mark.parametrize(
    "query",
    [
        'what\'s "C++"?',
        "AND OR",
        "NOT",
        '"',
        "*",
        "(unbalanced",
        "a - b + c",
        "col:value",
        "NEAR(a b)",
        "^start",
        "???",
        "",
        "   ",
        '""""',
        "c++ AND",
    ],
)
def test_search_never_raises_on_user_punctuation(store: HistoryStore, query: str) -> None:
    conversation = store.create_conversation(title="Languages")
    store.add_message(conversation.id, "user", "what's the difference between C and C++?")
    store.add_message(conversation.id, "user", "Apples AND oranges OR pears, NOT bananas")
    assert isinstance(store.search(query), list)


def test_search_treats_operators_and_quotes_as_words(store: HistoryStore) -> None:
    conversation = store.create_conversation(title="Languages")
    cpp = store.add_message(conversation.id, "user", "what's the difference between C and C++?")
    fruit = store.add_message(conversation.id, "user", "Apples AND oranges OR pears")
    assert [h.message_id for h in store.search('what\'s "C++"?')] == [cpp.id]
    assert [h.message_id for h in store.search("AND OR")] == [fruit.id]
    assert fts_query('say "hi"') == '"say" """hi"""*'
    assert fts_query("?? !!") == ""


def test_search_follows_edits_truncation_renames_and_limit(
    store: HistoryStore, db_path: Path
) -> None:
    conversation = store.create_conversation(title="Old name")
    message = store.add_message(conversation.id, "assistant", "The answer is giraffe")
    store.update_message(message.id, text="The answer is elephant")
    assert store.search("giraffe") == []
    assert [h.message_id for h in store.search("elephant")] == [message.id]

    store.rename_conversation(conversation.id, "Brand new name")
    assert store.search("old name") == []
    assert [h.message_id for h in store.search("brand")] == [None]

    store.delete_messages_from(conversation.id, message.id)
    assert store.search("elephant") == []

    for i in range(5):
        store.add_message(conversation.id, "user", f"penguin number {i}")
    assert len(store.search("penguin", limit=3)) == 3
    _assert_search_index_in_sync(db_path)


def test_search_ranks_the_better_match_first(store: HistoryStore) -> None:
    conversation = store.create_conversation(title="Notes")
    store.add_message(conversation.id, "user", "kiwi " + "filler words here " * 30)
    best = store.add_message(conversation.id, "user", "kiwi kiwi kiwi")
    assert store.search("kiwi")[0].message_id == best.id


# --- export and import -----------------------------------------------------------------------


def _filled(store: HistoryStore) -> int:
    conversation = store.create_conversation(
        model="smollm2", system_prompt="Answer in one line.", settings={"temperature": 0.3}
    )
    store.add_message(conversation.id, "user", "What is **2+2**?\nPlease explain.")
    store.add_message(
        conversation.id,
        "assistant",
        "It is 4.",
        model="smollm2",
        provider="local",
        stats={"prompt_tokens": 9, "completion_tokens": 4, "ttft_s": 0.1, "tokens_per_s": 30.0},
    )
    store.add_message(conversation.id, "user", "And 3+3?")
    store.add_message(conversation.id, "assistant", "It is", status="interrupted")
    store.add_message(conversation.id, "assistant", "", status="error")
    return conversation.id


def test_export_markdown(store: HistoryStore) -> None:
    conversation_id = _filled(store)
    text = store.export_markdown(conversation_id)
    assert text.startswith("# What is **2+2**?\n")
    assert "- Model: smollm2" in text
    assert "## System prompt\n\nAnswer in one line.\n" in text
    assert "## You\n\nWhat is **2+2**?\nPlease explain.\n" in text
    assert "## Assistant (smollm2)\n\nIt is 4.\n" in text
    assert "answer interrupted: the app stopped before it finished" in text
    assert "answer failed" in text
    assert text.index("It is 4.") < text.index("And 3+3?")


def test_json_export_import_round_trip(store: HistoryStore) -> None:
    conversation_id = _filled(store)
    exported = store.export_json(conversation_id)
    assert exported["format"] == EXPORT_FORMAT
    assert exported["version"] == 1
    data = json.loads(json.dumps(exported))  # as if written to a file and read back

    imported = store.import_json(data)
    assert imported.id != conversation_id
    original = store.get_conversation(conversation_id)
    assert (imported.title, imported.model, imported.system_prompt, imported.settings) == (
        original.title,
        original.model,
        original.system_prompt,
        original.settings,
    )
    assert imported.created_at == original.created_at

    def shape(conversation: int) -> list[tuple[Any, ...]]:
        return [
            (m.role, m.text, m.model, m.provider, m.stats, m.status, m.created_at)
            for m in store.messages(conversation)
        ]

    assert shape(imported.id) == shape(conversation_id)
    assert store.list_conversations()[0].id == imported.id
    assert len(store.search("explain")) == 2


def test_import_names_an_untitled_conversation(store: HistoryStore) -> None:
    data = {
        "format": EXPORT_FORMAT,
        "version": 1,
        "conversation": {},
        "messages": [{"role": "user", "text": "Plan a picnic"}],
    }
    imported = store.import_json(data)
    assert imported.title == "Plan a picnic"
    assert store.messages(imported.id)[0].status == "complete"


_DELETE = object()


def _break(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    broken = copy.deepcopy(data)
    target: Any = broken
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return broken


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [
        (["format"], "something.else", "format"),
        (["format"], _DELETE, "format"),
        (["version"], 99, "version"),
        (["version"], "1", "version"),
        (["version"], True, "version"),
        (["conversation"], [], "conversation"),
        (["conversation", "title"], 5, "conversation.title"),
        (["conversation", "settings"], "hot", "conversation.settings"),
        (["conversation", "created_at"], "yesterday", "conversation.created_at"),
        (["messages"], {}, "messages"),
        (["messages", 3], "hello", "messages[3]"),
        (["messages", 3, "role"], "robot", "messages[3].role"),
        (["messages", 4, "text"], None, "messages[4].text"),
        (["messages", 4, "status"], "done", "messages[4].status"),
        (["messages", 1, "stats"], [1, 2], "messages[1].stats"),
        (["messages", 1, "provider"], 3, "messages[1].provider"),
    ],
)
def test_import_rejects_bad_shapes_and_adds_nothing(
    store: HistoryStore, db_path: Path, path: list[Any], value: Any, named: str
) -> None:
    exported = store.export_json(_filled(store))
    before = (_count(db_path, "conversations"), _count(db_path, "messages"))
    with pytest.raises(ImportFormatError) as caught:
        store.import_json(_break(exported, path, value))
    assert named in caught.value.message
    assert (_count(db_path, "conversations"), _count(db_path, "messages")) == before


@pytest.mark.parametrize("data", [None, [], "text", 3])
def test_import_rejects_what_is_not_an_object(store: HistoryStore, data: Any) -> None:
    with pytest.raises(ImportFormatError):
        store.import_json(data)
    assert store.list_conversations() == []


def test_import_is_all_or_nothing_when_the_database_refuses(
    store: HistoryStore, db_path: Path
) -> None:
    exported = store.export_json(_filled(store))
    exported["messages"][2]["stats"] = {"bad": float("nan")}  # valid shape, stored fine
    exported["messages"][3]["stats"] = {"unstorable": object()}
    before = (_count(db_path, "conversations"), _count(db_path, "messages"))
    with pytest.raises(TypeError):
        store.import_json(exported)
    assert (_count(db_path, "conversations"), _count(db_path, "messages")) == before


# --- threads ---------------------------------------------------------------------------------


def test_two_threads_writing_at_once(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def write(role: str) -> None:
        try:
            start.wait()
            for i in range(100):
                message = store.add_message(conversation.id, role, f"{role} {i}")
                store.update_message(message.id, stats={"i": i})
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(role,)) for role in ("user", "assistant")]
    for thread in threads:
        thread.start()
    start.wait()
    for _ in range(50):  # the "GUI thread" reads meanwhile
        store.list_conversations()
        store.search("user")
    for thread in threads:
        thread.join()
    assert errors == []
    messages = store.messages(conversation.id)
    assert len(messages) == 200
    for role in ("user", "assistant"):
        mine = [m for m in messages if m.role == role]
        assert [m.text for m in mine] == [f"{role} {i}" for i in range(100)]
        assert [m.stats for m in mine] == [{"i": i} for i in range(100)]


def test_a_file_held_by_another_program_is_a_history_error(
    store: HistoryStore, db_path: Path
) -> None:
    with HistoryStore(db_path, busy_timeout_s=0.05) as impatient:
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        try:
            with pytest.raises(HistoryError, match="Could not save") as caught:
                impatient.create_conversation(title="blocked")
            assert str(db_path) in caught.value.message
        finally:
            other.execute("ROLLBACK")
            other.close()
        impatient.create_conversation(title="fine now")  # the store still works afterwards
    assert [c.title for c in store.list_conversations()] == ["fine now"]


def test_two_stores_on_one_file(db_path: Path) -> None:
    with HistoryStore(db_path) as gui, HistoryStore(db_path) as cli:
        conversation = gui.create_conversation(title="shared")
        cli.add_message(conversation.id, "user", "from the terminal")
        assert [m.text for m in gui.messages(conversation.id)] == ["from the terminal"]


def test_export_markdown_exactly(store: HistoryStore) -> None:
    """The whole document, byte for byte: headings, blank lines, one final newline."""
    conversation = store.create_conversation(model="smollm2", system_prompt="Be brief.")
    store.add_message(conversation.id, "system", "A note.")
    store.add_message(conversation.id, "assistant", "Hello.", model="smollm2")
    store.add_message(conversation.id, "assistant", "Hi", status="interrupted")
    untitled = store.export_markdown(conversation.id)
    store.add_message(conversation.id, "user", "Thanks", model="smollm2")
    started = store.get_conversation(conversation.id).created_at
    body = (
        f"- Started: {started}\n- Model: smollm2\n\n"
        "## System prompt\n\nBe brief.\n\n"
        "## System\n\nA note.\n\n"
        "## Assistant (smollm2)\n\nHello.\n\n"
        "## Assistant\n\nHi\n\n"
        "*(answer interrupted: the app stopped before it finished)*\n"
    )
    assert untitled == "# Untitled conversation\n\n" + body
    assert store.export_markdown(conversation.id) == (
        "# Thanks\n\n" + body + "\n## You\n\nThanks\n"  # a user's message names no model
    )
