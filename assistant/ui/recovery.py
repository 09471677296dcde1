"""The app always starts: building the services, with a way out of every known problem.

:func:`start_services` builds :class:`AppServices` the way ``run_app`` needs them. What can go
wrong before a window exists is handled here, so a user who started the app from a menu never
sees nothing at all:

- a damaged history opens the :class:`RecoveryDialog`: what is wrong, and "Try to recover"
  (the damaged file moved aside, never deleted, a fresh history with every conversation that
  could be read copied in), "Start a fresh history" (moved aside, nothing copied) or "Quit";
- a history that cannot be written (a read-only folder, file or disk) is opened read-only;
- data folders that cannot be made, or a history that cannot be opened at all, open the app
  on an empty history kept in memory;
- each of these leaves a note (:attr:`Startup.notes`) for the main window's banner, saying
  what happened and that changes are not saved where that is so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from assistant import APP_NAME
from assistant.chat import recovery
from assistant.chat.history import HistoryStore
from assistant.errors import AssistantError, HistoryDamagedError
from assistant.paths import AppPaths, app_paths
from assistant.ui.services import AppServices

log = logging.getLogger(__name__)

RECOVER, FRESH, QUIT = "recover", "fresh", "quit"


@dataclass
class Startup:
    """What :func:`start_services` built, and what the user should be told about it."""

    services: AppServices
    notes: list[tuple[str, str]] = field(default_factory=list)
    """``(message, hint)`` pairs for the main window's banner."""


class RecoveryDialog(QDialog):
    """The damaged-history screen. ``choice`` is ``recover``, ``fresh`` or ``quit`` once the
    user picked one (the dialog is accepted for the first two, rejected for quit)."""

    def __init__(self, problem: HistoryDamagedError, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.choice = QUIT
        self.setWindowTitle(f"{APP_NAME}: the chat history is damaged")
        self.setAccessibleName("The chat history is damaged")
        layout = QVBoxLayout(self)
        heading = QLabel("<b>Your chat history is damaged.</b>")
        heading.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(heading)
        self.problem_label = QLabel(problem.message)
        self.problem_label.setWordWrap(True)
        self.problem_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.problem_label)
        explanation = QLabel(
            "Nothing has been deleted. The damaged file will be moved aside and kept next to "
            "the new history. Try to recover copies into a fresh history every conversation "
            "that can still be read; Start a fresh history copies nothing."
        )
        explanation.setWordWrap(True)
        layout.addWidget(explanation)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.quit_button = QPushButton("Quit")
        self.fresh_button = QPushButton("Start a fresh history")
        self.recover_button = QPushButton("Try to recover")
        self.recover_button.setDefault(True)
        for button, choice in (
            (self.quit_button, QUIT),
            (self.fresh_button, FRESH),
            (self.recover_button, RECOVER),
        ):
            button.setAccessibleName(button.text())
            button.clicked.connect(lambda _checked=False, c=choice: self._on_chosen(c))
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.recover_button.setFocus()
        self.setMinimumWidth(480)

    def _on_chosen(self, choice: str) -> None:
        self.choice = choice
        if choice == QUIT:
            self.reject()
        else:
            self.accept()


def ask_what_to_do(problem: HistoryDamagedError) -> str:
    """Show the recovery screen and wait for the user's choice."""
    dialog = RecoveryDialog(problem)
    dialog.exec()
    return dialog.choice


def start_services(
    paths: AppPaths | None = None,
    *,
    ask: Callable[[HistoryDamagedError], str] = ask_what_to_do,
) -> Startup | None:
    """The services for the app, past every known problem; None when the user chose to quit
    on the recovery screen."""
    paths = paths or app_paths()
    notes: list[tuple[str, str]] = []
    try:
        paths.ensure()
    except AssistantError as exc:
        log.warning("The app's folders could not be made: %s", exc.full_text())
        notes.append(
            (
                exc.message,
                "Changes are not saved. Check that the disk is not full or read-only, then "
                "start the app again.",
            )
        )
    history = _open_history(paths.history_db, notes, ask)
    if history is None:
        return None
    services = AppServices(paths, history=history)
    return Startup(services, notes)


def _open_history(
    db_path: Path,
    notes: list[tuple[str, str]],
    ask: Callable[[HistoryDamagedError], str],
) -> HistoryStore | None:
    try:
        history = HistoryStore.open(db_path)
    except HistoryDamagedError as problem:
        return _recover(db_path, problem, notes, ask)
    except AssistantError as problem:
        log.warning("The chat history could not be opened: %s", problem.full_text())
        notes.append(
            (problem.message, "Changes are not saved until this is fixed. " + problem.hint)
        )
        return _in_memory(db_path)
    if history.read_only:
        notes.append(
            (
                "Your chat history can be read but not changed: its folder or file cannot be "
                "written.",
                "New chats are not saved. Check the permissions of the data folder and that "
                "the disk is not read-only, then start the app again.",
            )
        )
    return history


def _recover(
    db_path: Path,
    problem: HistoryDamagedError,
    notes: list[tuple[str, str]],
    ask: Callable[[HistoryDamagedError], str],
) -> HistoryStore | None:
    choice = ask(problem)
    if choice == QUIT:
        return None
    app = QGuiApplication.instance()
    if app is not None:
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
    try:
        history, result = recovery.start_fresh(db_path, salvage_from_old=choice == RECOVER)
    except AssistantError as failed:
        notes.append((failed.message, "Changes are not saved until this is fixed. " + failed.hint))
        return _in_memory(db_path)
    finally:
        if app is not None:
            QGuiApplication.restoreOverrideCursor()
    kept = f"The damaged history was moved to {result.moved_to.name}, next to the new one."
    if result.report is not None:
        notes.append((result.report.summary(), kept))
    else:
        notes.append(("A fresh chat history was started.", kept))
    return history


def _in_memory(db_path: Path) -> HistoryStore:
    """An empty history that lives only as long as the app: the app opens, nothing is saved."""
    history = HistoryStore(Path(":memory:"))
    history.db_path = db_path
    return history
