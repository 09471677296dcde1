"""Issue 8, item 1: the desktop app always starts. Real Qt offscreen, real damaged SQLite files,
real read-only file systems."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from assistant.chat.history import HistoryStore
from assistant.errors import HistoryDamagedError
from assistant.paths import AppPaths, app_paths
from assistant.ui.main_window import MainWindow
from assistant.ui.recovery import RecoveryDialog, Startup, start_services
from tests.damaged_history import damaged_history
from tests.full_disk import remount_read_only, tmpfs


@pytest.fixture
def started() -> Iterator[list[Startup]]:
    """Every startup a test makes, shut down at its end."""
    made: list[Startup] = []
    yield made
    for startup in made:
        startup.services.shutdown()


def _click_when_shown(button_name: str, seen: list[RecoveryDialog]) -> None:
    """Press a button of the recovery screen as soon as it is on screen (it is modal)."""

    def press() -> None:
        dialog = QApplication.activeModalWidget()
        if not isinstance(dialog, RecoveryDialog):
            QTimer.singleShot(20, press)
            return
        seen.append(dialog)
        getattr(dialog, button_name).click()

    QTimer.singleShot(0, press)


def test_a_damaged_history_opens_the_recovery_screen_and_recovers(
    qtbot: QtBot, started: list[Startup]
) -> None:
    db_path = app_paths().history_db
    damaged_history(db_path)
    with HistoryStore(db_path) as probe, pytest.raises(HistoryDamagedError):
        for conv in probe.list_conversations():  # damage found while the app ran…
            probe.messages(conv.id)
    original = db_path.read_bytes()
    seen: list[RecoveryDialog] = []
    _click_when_shown("recover_button", seen)
    startup = start_services()  # …is found again at the next start
    assert startup is not None
    started.append(startup)
    assert seen and "damaged" in seen[0].problem_label.text()
    assert seen[0].recover_button.text() == "Try to recover"
    moved = [p for p in db_path.parent.glob("history.sqlite3.damaged-*") if p.name[-1].isdigit()]
    assert len(moved) == 1 and moved[0].read_bytes() == original  # nothing lost
    window = MainWindow(startup.services)
    qtbot.addWidget(window)
    window.show()
    for message, hint in startup.notes:
        window.show_problem(message, hint)
    assert (
        len(window.sidebar.conversation_ids()) == 40
    )  # every conversation salvaged is in the list
    assert "Recovered 40 conversation(s)" in window.banner.message()
    history = startup.services.history
    assert sum(len(history.messages(c.id)) for c in history.list_conversations()) >= 200
    history.add_message(1, "user", "a new question is saved")  # the fresh history works


def test_quit_on_the_recovery_screen_changes_nothing(qtbot: QtBot) -> None:
    db_path = app_paths().history_db
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"not a database at all" * 100)
    seen: list[RecoveryDialog] = []
    _click_when_shown("quit_button", seen)
    assert start_services() is None
    assert seen and db_path.read_bytes() == b"not a database at all" * 100
    assert not list(db_path.parent.glob("*.damaged-*"))


def test_pathological_settings_still_start_the_app(qtbot: QtBot, started: list[Startup]) -> None:
    settings_file = app_paths().ensure().settings_file
    settings_file.write_text("[" * 100_000 + "]" * 100_000)
    startup = start_services()
    assert startup is not None
    started.append(startup)
    assert startup.services.settings.warnings
    assert startup.services.settings["gpu_layers"] == "auto"


def test_a_read_only_data_folder_still_shows_the_history(
    qtbot: QtBot, tmp_path: Path, started: list[Startup]
) -> None:
    base = app_paths().ensure()
    with tmpfs(tmp_path / "data", 4096) as data:
        with HistoryStore(data / "history.sqlite3") as store:
            conv = store.create_conversation(title="Readable")
            store.add_message(conv.id, "user", "still readable")
        remount_read_only(data)
        paths = AppPaths(data=data, cache=base.cache, config=base.config, logs=base.logs)
        startup = start_services(paths)
        assert startup is not None
        started.append(startup)
        window = MainWindow(startup.services)
        qtbot.addWidget(window)
        assert startup.services.history.read_only
        assert len(window.sidebar.conversation_ids()) == 1
        assert any("can be read but not changed" in message for message, _ in startup.notes)
        startup.services.shutdown()


def test_a_data_folder_that_cannot_be_made_opens_an_empty_history(
    qtbot: QtBot, tmp_path: Path, started: list[Startup]
) -> None:
    base = app_paths()
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("")
    paths = AppPaths(data=blocker / "data", cache=base.cache, config=base.config, logs=base.logs)
    startup = start_services(paths)
    assert startup is not None
    started.append(startup)
    assert startup.notes and startup.services.history.list_conversations() == []
