"""The history's clock and its whole-file check, on a clock the test holds and real damage."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from assistant.chat import history
from assistant.chat.history import HistoryStore
from assistant.errors import HistoryDamagedError, HistoryReadOnlyError
from tests.damaged_history import PAGE, build_history, damage_pages, table_pages

NOON = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    held = Clock(NOON)
    monkeypatch.setattr(history, "utc_now", held)
    return held


def test_a_clock_that_stands_still_still_orders_every_change(clock: Clock, tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "history.db") as store:
        first = store.create_conversation(title="first")
        second = store.create_conversation(title="second")
        store.add_message(first.id, "user", "hello")  # first moves to the top
        stamps = [first.created_at, second.created_at]
        assert stamps == [
            history.iso(NOON),
            history.iso(NOON + timedelta(microseconds=1)),
        ]
        listed = store.list_conversations()
        assert [c.title for c in listed] == ["first", "second"]
        assert listed[0].updated_at == history.iso(NOON + timedelta(microseconds=2))


def test_a_clock_set_back_never_moves_a_stamp_back(clock: Clock, tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "history.db") as store:
        earlier = store.create_conversation(title="earlier")
        clock.moment = NOON - timedelta(hours=1)  # the computer's clock was corrected
        later = store.create_conversation(title="later")
        assert later.created_at == history.iso(NOON + timedelta(microseconds=1))
        assert later.created_at > earlier.created_at
        clock.moment = NOON + timedelta(seconds=5)  # and time goes on as before
        assert store.create_conversation(title="on").created_at == history.iso(clock.moment)


def test_the_first_stamp_is_the_clocks_own(clock: Clock, tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "history.db") as store:
        assert store.create_conversation(title="a").created_at == history.iso(NOON)


def _spoil_free_space(db_path: Path, pages: list[int]) -> None:
    """Two bytes of each page's header (its first free block) overwritten: SQLite's check names
    each page, one line each, and reading the rows still works."""
    with db_path.open("r+b") as handle:
        for page in pages:
            handle.seek((page - 1) * PAGE + 1)
            handle.write(b"\x7f\x7f")


def _lines(problems: list[str]) -> list[str]:
    return [line for problem in problems for line in problem.splitlines() if "Page" in line]


def test_the_whole_file_check_names_at_most_the_problems_asked(tmp_path: Path) -> None:
    db_path = tmp_path / "history.db"
    build_history(db_path)
    with HistoryStore(db_path) as whole:
        assert whole.check_integrity() == [] and not whole.damaged
    pages = table_pages(db_path, "messages")[2:14]
    _spoil_free_space(db_path, pages)
    with HistoryStore(db_path) as store:
        assert not store.damaged
        assert len(_lines(store.check_integrity(max_errors=1))) == 1
        assert store.damaged
        assert len(_lines(store.check_integrity(max_errors=3))) == 3
        everything = store.check_integrity()  # at most 20 by default: all twelve here
        assert len(_lines(everything)) == len(pages) == 12
        assert all("free space corruption" in line for line in _lines(everything))


def test_a_file_too_damaged_to_check_is_one_problem(tmp_path: Path) -> None:
    db_path = tmp_path / "history.db"
    build_history(db_path)
    damage_pages(db_path, table_pages(db_path, "messages")[2:4])
    with HistoryStore(db_path) as store:
        assert store.check_integrity() == ["database disk image is malformed"]
        assert store.damaged


def test_a_write_sqlite_refuses_as_read_only_says_so(tmp_path: Path) -> None:
    db_path = tmp_path / "history.db"
    with HistoryStore(db_path) as store:
        store._conn.execute("PRAGMA query_only = ON")  # SQLite now answers SQLITE_READONLY
        with pytest.raises(HistoryReadOnlyError) as caught:
            store.create_conversation(title="x")
    assert caught.value.message == (
        f"The chat history file {db_path} cannot be written; changes are not saved."
    )
    assert caught.value.hint == (
        "Check that its folder and the file can be written, and that the disk is not read-only."
    )


def test_damage_found_later_names_what_the_check_found(tmp_path: Path) -> None:
    db_path = tmp_path / "history.db"
    build_history(db_path)
    _spoil_free_space(db_path, table_pages(db_path, "messages")[2:4])
    history.damage_marker(db_path).touch()  # found damaged while the app last ran
    with pytest.raises(HistoryDamagedError) as caught:
        HistoryStore(db_path)
    assert caught.value.message.startswith(
        f"The chat history file {db_path} is damaged (*** in database main ***\n"
    )
    assert "free space corruption" in caught.value.message


def test_a_damage_note_that_cannot_be_written_or_removed_changes_nothing(tmp_path: Path) -> None:
    db_path = tmp_path / "history.db"
    build_history(db_path)
    history.damage_marker(db_path).mkdir()  # in the way: neither a file to touch nor unlink
    with HistoryStore(db_path) as store:  # whole: the note cannot be removed, and need not be
        assert store.check_integrity() == []
    db_path.write_bytes(b"PK\x03\x04" + b"\0" * 4000)
    with pytest.raises(HistoryDamagedError):  # the note cannot be left: still the damage
        HistoryStore(db_path)
