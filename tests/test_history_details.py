"""The chat history's details a person or another program sees: the exact words of each error,
the file names and modes on disk, the JSON in the rows, timestamps and titles.

Each test reads what really happened (the row in SQLite, the file beside the database, the
error raised), so a change to one of these details fails a test.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.chat.history import (
    EXPORT_FORMAT,
    HistoryStore,
    damage_marker,
    side_files,
    title_from_question,
)
from assistant.chat.migrations import open_read_only
from assistant.errors import (
    ConversationNotFoundError,
    DiskFullError,
    EmptyQuestionError,
    HistoryDamagedError,
    HistoryError,
    HistoryReadOnlyError,
    InvalidTextError,
)
from assistant.paths import app_paths
from tests.full_disk import fill, remount_read_only, tmpfs
from tests.hub_server import small_filesystem


@pytest.fixture
def db_path() -> Path:
    return app_paths().history_db


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(db_path) as opened:
        yield opened


def _raw(db_path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _busy_timeout_ms(store: HistoryStore) -> int:
    """How long the store's connection waits for another writer, as SQLite reports it."""
    return int(store._conn.execute("PRAGMA busy_timeout").fetchone()[0])


# --- the words of each refusal --------------------------------------------------------------


def test_bad_text_role_and_status_are_named(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    with pytest.raises(InvalidTextError) as caught:
        store.add_message(conversation.id, "user", "ab\udc80c")
    assert caught.value.message == (
        "The text is not valid UTF-8 (an invalid character at position 2)."
    )
    assert caught.value.hint == "Use UTF-8 text."
    with pytest.raises(ValueError) as wrong:
        store.add_message(conversation.id, "robot", "hi")
    assert str(wrong.value) == "role must be one of system, user, assistant, not 'robot'"
    with pytest.raises(ValueError) as wrong:
        store.add_message(conversation.id, "user", "hi", status="done")
    assert str(wrong.value) == "status must be one of complete, interrupted, error, not 'done'"
    message = store.add_message(conversation.id, "user", "hi")
    with pytest.raises(ValueError) as wrong:
        store.update_message(message.id, status="done")
    assert str(wrong.value) == "status must be one of complete, interrupted, error, not 'done'"
    with pytest.raises(EmptyQuestionError) as empty:
        store.add_message(conversation.id, "user", "  \n")
    assert (empty.value.message, empty.value.hint) == (
        "The question is empty.",
        "Type a question first.",
    )
    assert [m.text for m in store.messages(conversation.id)] == ["hi"]


def test_missing_things_are_named_by_number(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    message = store.add_message(conversation.id, "user", "hi")
    with pytest.raises(ConversationNotFoundError, match=r"^There is no conversation number 77\.$"):
        store.add_message(77, "user", "hi")
    with pytest.raises(ConversationNotFoundError, match=r"^There is no conversation number 78\.$"):
        store.restore_conversation(78)
    with pytest.raises(HistoryError) as caught:
        store.update_message(999, text="x")
    assert caught.value.message == "Message 999 is no longer in the chat history."
    with pytest.raises(HistoryError) as caught:
        store.delete_messages_from(conversation.id + 1, message.id)
    assert caught.value.message == (
        f"Message {message.id} is not in conversation {conversation.id + 1}."
    )


def test_a_folder_in_place_of_the_file_says_what_to_do(db_path: Path) -> None:
    db_path.mkdir(parents=True)
    with pytest.raises(HistoryError) as caught:
        HistoryStore(db_path)
    assert caught.value.message == (
        f"Could not open the chat history file {db_path}: it is a folder."
    )
    assert caught.value.hint == (
        "Move the folder elsewhere or rename it, so a history file can be made in its place."
    )


def test_a_file_in_place_of_the_folder_is_an_open_error(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a folder", encoding="utf-8")
    db_path = tmp_path / "data" / "history.sqlite3"
    with pytest.raises(HistoryError) as caught:
        HistoryStore(db_path)
    assert caught.value.message == f"Could not open the chat history file {db_path}."
    assert caught.value.hint.startswith("Check that it can be read and written ([Errno 20] ")
    assert str(db_path) in caught.value.hint


def test_a_missing_file_opened_for_reading_is_an_open_error(tmp_path: Path) -> None:
    db_path = tmp_path / "none.sqlite3"
    with pytest.raises(HistoryError) as caught:
        HistoryStore(db_path, read_only=True)
    assert caught.value.message == f"Could not open the chat history file {db_path}."
    assert caught.value.hint == (
        "Check that it can be read and written (unable to open database file)."
    )
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        open_read_only(db_path)


def test_damage_says_how_to_recover_and_leaves_a_note(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"PK\x03\x04" + b"\0" * 4000)  # a zip file, say
    with pytest.raises(HistoryDamagedError) as caught:
        HistoryStore(db_path)
    assert caught.value.message == (
        f"The chat history file {db_path} is damaged (it does not start like a database)."
    )
    assert caught.value.hint == (
        "Nothing more is written to it. Recover it: the damaged file is moved aside and kept, "
        "and every conversation that can still be read is copied into a fresh history (the "
        "app offers this when it starts)."
    )
    assert caught.value.command == "offline-assistant history recover"
    assert caught.value.path == db_path
    assert db_path.with_name("history.sqlite3.damage-found").exists()
    assert damage_marker(db_path) == db_path.with_name("history.sqlite3.damage-found")


def test_a_repaired_file_forgets_the_damage_note(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        store.create_conversation(title="whole")
    note = damage_marker(db_path)
    note.touch()
    with HistoryStore(db_path) as store:  # checked in full, found whole
        assert [c.title for c in store.list_conversations()] == ["whole"]
        assert not store.damaged
    assert not note.exists()


def test_a_store_opened_read_only_refuses_writes_in_words(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        conversation = store.create_conversation(title="kept")
    with HistoryStore(db_path, read_only=True) as reader:
        with pytest.raises(HistoryReadOnlyError) as caught:
            reader.rename_conversation(conversation.id, "changed")
        assert caught.value.message == (
            f"The chat history {db_path} is open read-only; changes are not saved."
        )
        assert caught.value.hint == (
            "Check that its folder and the file can be written, then start the app again."
        )
        # And the connection itself cannot write, whatever asks it to.
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._conn.execute("UPDATE conversations SET title = 'changed'")
    assert _raw(db_path, "SELECT title FROM conversations") == [("kept",)]


def test_a_file_held_by_another_program_names_the_file_and_the_cause(db_path: Path) -> None:
    with HistoryStore(db_path, busy_timeout_s=0.05) as store:
        conversation = store.create_conversation(title="x")
        other = sqlite3.connect(db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
        try:
            with pytest.raises(HistoryError) as saving:
                store.rename_conversation(conversation.id, "y")
        finally:
            other.execute("ROLLBACK")
            other.close()
    assert saving.value.message == f"Could not save to the chat history file {db_path}."
    assert saving.value.hint == (
        "The disk may be full, or another program may be using the file (database is locked)."
    )


def test_the_wait_for_another_writer_is_the_one_asked_for(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        assert _busy_timeout_ms(store) == 10_000
    with HistoryStore(db_path, busy_timeout_s=2.5) as store:
        assert _busy_timeout_ms(store) == 2_500
    with HistoryStore.open(db_path) as store:
        assert _busy_timeout_ms(store) == 10_000
    with HistoryStore.open(db_path, busy_timeout_s=3.0) as store:
        assert _busy_timeout_ms(store) == 3_000
    with HistoryStore(db_path, read_only=True) as store:
        assert _busy_timeout_ms(store) == 10_000
    with HistoryStore(db_path, busy_timeout_s=4.0, read_only=True) as store:
        assert _busy_timeout_ms(store) == 4_000


# --- what is on disk --------------------------------------------------------------------------


def test_the_database_and_its_side_files_are_private(store: HistoryStore, db_path: Path) -> None:
    store.create_conversation(title="x")
    wal, shm = side_files(db_path)
    assert (wal.name, shm.name) == ("history.sqlite3-wal", "history.sqlite3-shm")
    for path in (db_path, wal, shm):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_side_files_left_loose_by_an_older_version_are_tightened(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        store.create_conversation(title="x")
        wal, shm = side_files(db_path)
        for path in (db_path, wal, shm):
            path.chmod(0o644)
        with HistoryStore(db_path):
            for path in (db_path, wal, shm):
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_json_columns_are_utf8_with_sorted_keys(store: HistoryStore, db_path: Path) -> None:
    conversation = store.create_conversation(settings={"z": 1, "température": 0.5})
    message = store.add_message(conversation.id, "user", "hi", stats={"b": "é", "a": 1})
    assert _raw(db_path, "SELECT settings FROM conversations") == [
        ('{"température": 0.5, "z": 1}',)
    ]
    assert _raw(db_path, "SELECT stats FROM messages") == [('{"a": 1, "b": "é"}',)]
    store.update_message(message.id, stats={"y": "ü", "x": 2})
    assert _raw(db_path, "SELECT stats FROM messages") == [('{"x": 2, "y": "ü"}',)]


def test_a_json_column_that_is_not_an_object_reads_as_empty(
    store: HistoryStore, db_path: Path
) -> None:
    conversation = store.create_conversation(settings={"a": 1})
    store.add_message(conversation.id, "user", "hi", stats={"a": 1})
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE conversations SET settings = '[1, 2]'")
    conn.execute("UPDATE messages SET stats = '\"text\"'")
    conn.commit()
    conn.close()
    assert store.get_conversation(conversation.id).settings == {}
    assert store.messages(conversation.id)[0].stats == {}


def test_a_new_message_is_the_conversations_last_change(store: HistoryStore) -> None:
    conversation = store.create_conversation()
    message = store.add_message(conversation.id, "user", "hello there")
    after = store.get_conversation(conversation.id)
    assert after.updated_at == message.created_at
    assert after.title == "hello there"
    store.add_message(conversation.id, "assistant", "hi", status="interrupted", stats={"a": 1})
    saved = store.messages(conversation.id)[1]
    assert (saved.status, saved.stats) == ("interrupted", {"a": 1})


def test_cutting_a_conversation_moves_it_up_the_list(store: HistoryStore) -> None:
    first = store.create_conversation(title="first")
    message = store.add_message(first.id, "user", "a")
    store.add_message(first.id, "assistant", "b")
    second = store.create_conversation(title="second")
    before = store.get_conversation(first.id).updated_at
    store.delete_messages_from(first.id, message.id)
    assert store.get_conversation(first.id).updated_at > before
    assert [c.id for c in store.list_conversations()] == [first.id, second.id]
    assert store.messages(first.id) == []


def test_a_cloud_answer_says_so_in_the_markdown_and_a_question_does_not(
    store: HistoryStore,
) -> None:
    conversation = store.create_conversation(title="t")
    store.add_message(conversation.id, "user", "q", provider="openai")
    store.add_message(conversation.id, "assistant", "a", model="gpt", provider="openai")
    text = store.export_markdown(conversation.id)
    assert "## You\n\nq\n" in text
    assert "## Assistant (gpt) — cloud: openai\n\na\n" in text


def test_an_export_says_when_it_was_made(store: HistoryStore) -> None:
    conversation = store.create_conversation(title="t")
    exported = store.export_json(conversation.id)
    assert sorted(exported) == ["conversation", "exported_at", "format", "messages", "version"]
    assert exported["format"] == EXPORT_FORMAT
    assert exported["exported_at"] >= store.get_conversation(conversation.id).created_at


def test_an_import_with_no_question_and_no_title_stays_untitled(store: HistoryStore) -> None:
    data = {
        "format": EXPORT_FORMAT,
        "version": 1,
        "conversation": {},
        "messages": [{"role": "assistant", "text": "Hello."}],
    }
    imported = store.import_json(json.loads(json.dumps(data)))
    assert imported.title == ""
    assert store.get_conversation(imported.id).title == ""


# --- titles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("abcdef", 1, "…"),  # no room for any of it
        ("aaaaaa bbbbbbbbbbbb", 12, "aaaaaa…"),  # the cut word is dropped
        # With no more than a third of the limit before it, the cut word is kept in part.
        ("aaaa bbbbbbbbbbbbbbbb", 12, "aaaa bbbbbb…"),
        ("aaaa bbbbbbbbbbbbbbbb", 13, "aaaa bbbbbbb…"),
        ("aaaa, bbbbbbbbbbbbbbbb", 12, "aaaa…"),  # trailing punctuation goes too
        ("aaaaaaaXX bbbbbb", 12, "aaaaaaaXX…"),
    ],
)
def test_long_titles_are_cut_at_a_word(text: str, limit: int, expected: str) -> None:
    assert title_from_question(text, limit) == expected


# --- opening for a front end ------------------------------------------------------------------


def test_open_on_a_writable_place_is_writable_and_quiet(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING), HistoryStore.open(db_path) as store:
        assert not store.read_only
        assert store.db_path == db_path
        store.create_conversation(title="saved")
    assert caplog.records == []
    assert _raw(db_path, "SELECT title FROM conversations") == [("saved",)]


def test_reopening_an_existing_history_is_writable(db_path: Path) -> None:
    with HistoryStore.open(db_path) as store:
        store.create_conversation(title="first")
    with HistoryStore.open(db_path) as store:
        assert not store.read_only
        store.create_conversation(title="second")
    assert len(_raw(db_path, "SELECT id FROM conversations")) == 2


def test_a_read_only_disk_opens_for_reading_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # an in-memory history must leave no file here either
    with tmpfs(tmp_path / "ro", 512) as disk:
        db = disk / "history.sqlite3"
        with HistoryStore(db) as store:
            store.create_conversation(title="kept")
        remount_read_only(disk)
        with caplog.at_level(logging.WARNING), HistoryStore.open(db, busy_timeout_s=3.0) as store:
            assert store.read_only and store.db_path == db
            assert _busy_timeout_ms(store) == 3_000
            assert [c.title for c in store.list_conversations()] == ["kept"]
        assert [r.getMessage() for r in caplog.records] == [
            f"The chat history {db} cannot be written; opened read-only."
        ]
        caplog.clear()
        missing = disk / "new" / "history.sqlite3"
        with caplog.at_level(logging.WARNING):
            store = HistoryStore.open(missing, busy_timeout_s=3.0)
        try:
            assert store.read_only and store.db_path == missing
            assert _busy_timeout_ms(store) == 3_000
            assert store.list_conversations() == []
            with pytest.raises(HistoryReadOnlyError):
                store.create_conversation(title="lost")
        finally:
            store.close()
        assert [r.getMessage() for r in caplog.records] == [
            f"The chat history {missing} cannot be created; nothing will be saved."
        ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]


def test_a_full_disk_is_told_as_a_full_disk(tmp_path: Path) -> None:
    with (
        small_filesystem(tmp_path / "small", 1) as disk,
        HistoryStore(disk / "history.sqlite3") as store,
    ):
        conversation = store.create_conversation(title="x")
        fill(disk)
        with pytest.raises(DiskFullError) as caught:
            for _ in range(200):
                store.add_message(conversation.id, "user", "x" * 5000)
        assert not store.damaged  # a full disk is not damage: nothing to recover
    assert caught.value.message == (
        f"The disk holding the chat history ({disk}) is full; nothing was saved."
    )
    assert caught.value.hint == "Free some space and try again."


def test_a_read_only_history_reads_from_any_thread(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        store.create_conversation(title="kept")
    found: list[str] = []
    with HistoryStore(db_path, read_only=True) as reader:
        worker = threading.Thread(
            target=lambda: found.extend(c.title for c in reader.list_conversations())
        )
        worker.start()
        worker.join()
    assert found == ["kept"]


def test_a_search_gives_fifty_hits_unless_asked_for_more(store: HistoryStore) -> None:
    conversation = store.create_conversation(title="t")
    for n in range(52):
        store.add_message(conversation.id, "user", f"needle {n}")
    assert len(store.search("needle")) == 50
    assert len(store.search("needle", limit=60)) == 52


def test_the_schema_has_every_table_and_index(db_path: Path) -> None:
    """The indexes only make the list and the ledger fast, and nothing reads cloud_modes in
    these tests: dropping one would pass every other test here."""
    with HistoryStore(db_path):
        pass
    conn = sqlite3.connect(db_path)
    try:
        rows = conn.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index') "
            "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%_fts_%'"
        ).fetchall()
    finally:
        conn.close()
    assert {(kind, name, table) for kind, name, table in rows} >= {
        ("table", "conversations", "conversations"),
        ("table", "messages", "messages"),
        ("table", "cloud_modes", "cloud_modes"),
        ("table", "cloud_ledger", "cloud_ledger"),
        ("table", "messages_fts", "messages_fts"),
        ("table", "conversations_fts", "conversations_fts"),
        ("index", "conversations_by_update", "conversations"),
        ("index", "conversations_by_deletion", "conversations"),
        ("index", "cloud_ledger_by_time", "cloud_ledger"),
    }
