"""The history's clock and its whole-file check, on a clock the test holds and real damage."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from assistant.chat import history
from assistant.chat.history import HistoryStore
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
