"""Whether llama.cpp can run here, asked once at start without risking the app.

The check loads llama.cpp in a child process (``assistant.doctor.check_engine``): an engine
built for a newer processor dies there with "illegal instruction", and the window says what
is missing instead of vanishing. Loading a model waits for the same check first (the model
thread blocks on it, not the window), so a broken engine is never loaded into the app.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from assistant.engine.base import ChatProvider
from assistant.engine.diagnose import EngineReport
from assistant.paths import AppPaths
from assistant.providers import FileLoader, ProviderSettings
from assistant.ui.background import Mailbox, run_in_thread

log = logging.getLogger(__name__)


def _check_engine(paths: AppPaths) -> EngineReport:
    # Imported when the check runs (after the window is up): the doctor's imports
    # (importlib.metadata, platform…) are not needed for the first frame.
    from assistant import doctor

    return doctor.check_engine(paths)


class EngineCheck(QObject):
    """The engine check of this app (one, shared by every window).

    Signals:
        finished(object): the ``EngineReport``, once known (from start, or from the first
            model load, whichever asks first).
    """

    finished = Signal(object)

    def __init__(self, paths: AppPaths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._paths = paths
        self.report: EngineReport | None = None
        self._started = False
        self._lock = threading.Lock()
        self._mailbox = Mailbox(self)

    @property
    def problem(self) -> bool:
        """Whether a check found that local models cannot run."""
        return self.report is not None and bool(self.report.problem)

    def start(self) -> None:
        """Check in the background (once); ``finished`` tells the result."""
        if self._started:
            return
        self._started = True
        # On a plain thread that never touches Qt: the outcome comes back through the mailbox.
        run_in_thread(
            self._mailbox,
            lambda: _check_engine(self._paths),
            self._on_checked,
            name="engine-check",
        )

    def _on_checked(self, outcome: object) -> None:
        if isinstance(outcome, EngineReport):
            self._settle(outcome)
        else:
            log.error("Checking the engine failed: %r", outcome)

    def run(self) -> EngineReport:
        """Check now, blocking (off the UI thread: the model thread, which outlives no
        services); cached, so later calls are instant."""
        report = _check_engine(self._paths)
        self._settle(report)
        return report

    def _settle(self, report: EngineReport) -> None:
        with self._lock:
            first = self.report is None
            if first:
                self.report = report
        if first:
            self.finished.emit(report)

    def guard(self, load_file: FileLoader) -> FileLoader:
        """``load_file``, refusing with ``EngineUnavailableError`` while the engine cannot
        run: a broken llama.cpp loaded into this process could take the app down."""

        def load_checked(path: Path, settings: ProviderSettings, model_id: str) -> ChatProvider:
            report = self.run()
            if report.problem:
                raise report.error_for_user()
            return load_file(path, settings, model_id)

        return load_checked

    def details(self) -> str:
        """The doctor's report, for people to read or send."""
        from PySide6 import __version__ as qt_version

        from assistant import doctor

        report = self.report or EngineReport(problem="", error="not checked yet")
        return doctor.to_text(doctor.collect(self._paths, report, qt_version=qt_version))


class EngineDetailsDialog(QDialog):
    """What the doctor found, to read and copy (``offline-assistant doctor`` prints the same)."""

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Engine details")
        self.setAccessibleName("Engine details")
        intro = QLabel(
            "What this computer and the app's llama.cpp engine report. Include it when you "
            "ask for help."
        )
        intro.setWordWrap(True)
        self._text = QPlainTextEdit(text)
        self._text.setReadOnly(True)
        self._text.setAccessibleName("Engine report")
        self._text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self._text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self._text.setMinimumSize(560, 280)
        self.resize(720, 480)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.setAccessibleName("Copy engine report")
        copy.clicked.connect(self._on_copy_clicked)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self._text, 1)
        layout.addWidget(buttons)

    @property
    def text(self) -> str:
        return self._text.toPlainText()

    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
