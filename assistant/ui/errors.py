"""How the window tells people that something failed.

Known problems (``AssistantError``) are shown calmly in an ``ErrorBanner``: what happened and
what to do next. Anything else is a bug: a ``BugReportDialog`` says so without drama and offers a
report to copy. Neither blocks the rest of the window.

:func:`describe` is the one place an exception becomes words: every window and worker goes
through it (or through ``ErrorBanner.show_exception``), and it logs a bug's traceback, so no
unexpected error is shown without also being in the log.
"""

from __future__ import annotations

import inspect
import logging
import platform
import sys
import traceback
import weakref
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant import APP_NAME, __version__
from assistant.errors import AssistantError
from assistant.secrets import scrub

log = logging.getLogger(__name__)


def describe(exc: BaseException, context: str = "") -> tuple[str, str, str]:
    """``(message, hint, traceback)`` for an exception; the traceback is empty for known
    problems, which need no report. A bug's traceback is also logged, after ``context`` (what
    was being done)."""
    if isinstance(exc, AssistantError):
        return scrub(exc.message), scrub(exc.hint), ""
    # A secret (an API key) must not reach the log or a report, whatever carried it here.
    details = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    log.error("%s:\n%s", context or "Unexpected error", details)
    return scrub(f"Something went wrong: {type(exc).__name__}: {exc}"), "", details


def bug_report(details: str) -> str:
    """A plain-text report with what a maintainer needs to reproduce a bug."""
    try:
        from PySide6 import __version__ as pyside_version
    except ImportError:  # pragma: no cover - PySide6 is imported above
        pyside_version = "?"
    lines = [
        f"{APP_NAME} {__version__}",
        f"Python {sys.version.split()[0]} on {platform.platform()}",
        f"PySide6 {pyside_version}",
        "",
        scrub(details.rstrip()),
    ]
    return "\n".join(lines) + "\n"


FixAction = tuple[str, Callable[[], None]]


class _Strong:
    """A callable held as it is (a ``WeakMethod`` look-alike for plain functions)."""

    def __init__(self, run: Callable[[], None]) -> None:
        self._run = run

    def __call__(self) -> Callable[[], None]:
        return self._run


"""A button offered with a problem: its label and what it does (the banner closes first)."""


class ErrorBanner(QFrame):
    """An inline notice: a message, what to do next, buttons for the fix, and a close button.
    For a bug it also offers "Show report…", which opens the :class:`BugReportDialog` over its
    window."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ErrorBanner")
        self.setAccessibleName("Problem")
        self._details = ""
        self._message = QLabel()
        self._message.setWordWrap(True)
        self._message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        font = self._message.font()
        font.setBold(True)
        self._message.setFont(font)
        self._hint = QLabel()
        self._hint.setWordWrap(True)
        self._hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._details_button = QPushButton("Show report…")
        self._details_button.setAccessibleName("Show error report")
        self._details_button.clicked.connect(self._on_details_clicked)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss problem")
        close.clicked.connect(self.hide)

        self._fix_row = QHBoxLayout()
        self._fix_row.setContentsMargins(0, 4, 0, 0)
        self._fix_buttons: list[QPushButton] = []
        self._fix_runs: list[Callable[[], Callable[[], None] | None]] = []
        text = QVBoxLayout()
        text.setSpacing(2)
        text.addWidget(self._message)
        text.addWidget(self._hint)
        text.addLayout(self._fix_row)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.addLayout(text, 1)
        layout.addWidget(self._details_button, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_problem(
        self, message: str, hint: str = "", details: str = "", actions: Sequence[FixAction] = ()
    ) -> None:
        self._set_actions(actions)
        self._message.setText(message)
        self._hint.setText(hint)
        self._hint.setVisible(bool(hint))
        self._details = details
        self._details_button.setVisible(bool(details))
        self.setAccessibleDescription(f"{message} {hint}".strip())
        self.show()

    def show_exception(self, exc: BaseException, prefix: str = "", context: str = "") -> None:
        """Show what went wrong: a known problem with its hint, a bug with its report (and
        its traceback in the log)."""
        message, hint, details = describe(exc, context)
        self.show_problem(prefix + message, hint, details)

    def _set_actions(self, actions: Sequence[FixAction]) -> None:
        while self._fix_row.count():
            item = self._fix_row.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self._fix_buttons = []
        self._fix_runs = []
        for label, run in actions:
            button = QPushButton(label)
            button.setAccessibleName(label.rstrip("…"))
            button.clicked.connect(self._on_fix_clicked)
            self._fix_row.addWidget(button)
            self._fix_buttons.append(button)
            # A window's own method is held weakly: the banner must not keep its window alive.
            self._fix_runs.append(
                weakref.WeakMethod(run) if inspect.ismethod(run) else _Strong(run)
            )
        if actions:
            self._fix_row.addStretch(1)

    @Slot()
    def _on_fix_clicked(self) -> None:
        sender = self.sender()
        index = next((i for i, b in enumerate(self._fix_buttons) if b is sender), -1)
        run = self._fix_runs[index]() if index >= 0 else None
        self.hide()
        if run is not None:
            run()

    def fix_labels(self) -> list[str]:
        """The labels of the buttons offered with the problem shown."""
        return [button.text() for button in self._fix_buttons]

    def fix_button(self, label: str) -> QPushButton:
        return next(b for b in self._fix_buttons if b.text() == label)

    def message(self) -> str:
        return self._message.text()

    def hint(self) -> str:
        return self._hint.text()

    @Slot()
    def _on_details_clicked(self) -> None:
        show_bug_report(self._details, self.window())


class BugReportDialog(QDialog):
    """ "Something went wrong", with a report the user can copy into a bug report."""

    def __init__(self, details: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Something went wrong")
        self.setAccessibleName("Something went wrong")
        self.report = bug_report(details)
        intro = QLabel(
            "Something went wrong inside the app. Your conversations are safe and you can keep "
            "working. If it happens again, please copy this report into a bug report."
        )
        intro.setWordWrap(True)
        self._text = QPlainTextEdit(self.report)
        self._text.setReadOnly(True)
        self._text.setAccessibleName("Error report")
        self._text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._text.setMinimumSize(560, 240)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy report", QDialogButtonBox.ButtonRole.ActionRole)
        copy.setAccessibleName("Copy error report")
        copy.clicked.connect(self._on_copy_clicked)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self._text, 1)
        layout.addWidget(buttons)

    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.report)


def show_bug_report(details: str, parent: QWidget | None = None) -> BugReportDialog:
    """Open the report window without blocking (the caller keeps running)."""
    dialog = BugReportDialog(details, parent)
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
