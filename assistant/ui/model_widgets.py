"""Small widgets the model manager and the first-run dialog share.

A fit badge, a plain-language message bar and one download's progress row. They only show
things; the :class:`~assistant.ui.download_tasks.DownloadTask` they watch does the work.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.disk import format_bytes
from assistant.models.downloads import DownloadProgress
from assistant.models.hardware import Fit, MemoryEstimate
from assistant.models.speed import SpeedPrediction, format_rate
from assistant.ui.download_tasks import DownloadTask

# (light text, light background, dark text, dark background): the badge must read as well on
# a dark theme as on a light one, and the words carry the meaning for those who cannot see colour.
_FIT_COLOURS: dict[Fit, tuple[str, str, str, str]] = {
    "fits": ("#14532d", "#d1fadf", "#a7f3c0", "#173d27"),
    "tight": ("#713f12", "#fdeccb", "#fcd98b", "#4a3411"),
    "wont_fit": ("#7f1d1d", "#fde0e0", "#fca5a5", "#4c1d1d"),
}
_FIT_TEXT: dict[Fit, str] = {"fits": "✓ Fits", "tight": "◐ Tight", "wont_fit": "✕ Won't fit"}
_FIT_EXPLAINED: dict[Fit, str] = {
    "fits": "Fits this computer comfortably",
    "tight": "Tight: runs if you close other programs",
    "wont_fit": "Won't fit in this computer's memory",
}


def is_dark() -> bool:
    """Whether the app is drawn light-on-dark, judged from the application palette so any theme
    (system, light, dark) works. Not a widget's own palette: a style sheet may have changed it."""
    return QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128


def format_speed(bytes_per_s: float | None) -> str:
    return f"{format_bytes(bytes_per_s)}/s" if bytes_per_s else ""


def format_eta(seconds: float | None) -> str:
    """ "12 s left", "about 3 min left", "about 1 h 20 min left"; "" when unknown."""
    if seconds is None or seconds < 0 or seconds != seconds:  # None, negative or NaN
        return ""
    if seconds < 60:
        return f"{max(1, round(seconds))} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    return f"about {minutes // 60} h {minutes % 60:02d} min left"


class FitBadge(QLabel):
    """A coloured pill saying whether a model fits this machine, in words as well as colour."""

    def __init__(
        self, fit: Fit, estimate: MemoryEstimate | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(_FIT_TEXT[fit], parent)
        self.fit: Fit = fit
        explained = _FIT_EXPLAINED[fit]
        if estimate is not None:
            explained += f" (needs about {format_bytes(estimate.total)} of memory)"
        self.setToolTip(explained)
        self.setAccessibleName(explained)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Maximum)
        self._dark: bool | None = None
        self._restyle()

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ThemeChange):
            self._restyle()
        super().changeEvent(event)

    def _restyle(self) -> None:
        dark = is_dark()
        if dark == self._dark:  # setStyleSheet sends another PaletteChange; stop there
            return
        self._dark = dark
        light_fg, light_bg, dark_fg, dark_bg = _FIT_COLOURS[self.fit]
        fg, bg = (dark_fg, dark_bg) if dark else (light_fg, light_bg)
        self.setStyleSheet(
            f"QLabel {{ color: {fg}; background: {bg}; border-radius: 9px;"
            " padding: 2px 9px; font-weight: 600; }"
        )


class SpeedLabel(QLabel):
    """The expected answer speed on this computer: "≈ 35 tokens/s", the details in a tooltip."""

    def __init__(self, prediction: SpeedPrediction, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Maximum)
        self.show_prediction(prediction)

    def show_prediction(self, prediction: SpeedPrediction) -> None:
        self.prediction = prediction
        self.setText(f"{prediction.label} here")
        source = (
            "learnt from your answers on this computer"
            if prediction.learnt
            else "measured on this computer"
            if prediction.measured
            else "a first guess, until this computer is measured"
        )
        where = " (on the GPU: at least this)" if prediction.device == "gpu" else ""
        tip = (
            f"Expected speed writing an answer{where}: about "
            f"{format_rate(prediction.decode_tokens_per_s)} tokens a second; reading your "
            f"message: about {format_rate(prediction.prompt_tokens_per_s)} tokens a second "
            f"({source})."
        )
        self.setToolTip(tip)
        self.setAccessibleName(tip)


class MessageBar(QFrame):
    """A dismissable line at the top of a window confirming what was done (errors go to the
    shared :class:`~assistant.ui.errors.ErrorBanner`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._label = QLabel(self)
        self._label.setWordWrap(True)
        self._label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self._label.setAccessibleName("Message")
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.setAccessibleName("Dismiss message")
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self._label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def text(self) -> str:
        return self._label.text()

    def show_info(self, text: str) -> None:
        self._label.setText(text)
        fg, bg, edge = (
            ("#bfdbfe", "#172a46", "#1e3a8a") if is_dark() else ("#1e3a8a", "#e8f0fe", "#b6cdf5")
        )
        self.setStyleSheet(
            f"#messageBar {{ background: {bg}; border: 1px solid {edge}; border-radius: 6px; }}"
            f"#messageBar QLabel {{ color: {fg}; }} #messageBar QToolButton {{ color: {fg}; }}"
        )
        self.show()


class DownloadRow(QFrame):
    """One download: what, a progress bar, speed and time left, pause/resume and cancel.

    Signals:
        dismissed(): the user closed a finished, failed or cancelled row.
        retryRequested(): the user asked to try a failed download again.
    """

    dismissed = Signal()
    retryRequested = Signal()

    def __init__(self, task: DownloadTask, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task = task
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(f"Download of {task.title}")

        self._title = QLabel(f"<b>{html.escape(task.title, quote=False)}</b>", self)
        self._title.setTextFormat(Qt.TextFormat.RichText)
        self._bar = QProgressBar(self)
        self._bar.setRange(0, 0)  # busy until the size is known
        self._bar.setTextVisible(False)
        self._bar.setFixedHeight(8)
        self._bar.setAccessibleName(f"Progress of {task.title}")
        self.status = QLabel("Starting…", self)
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.warning_label = QLabel(self)
        self.warning_label.setWordWrap(True)
        self.warning_label.hide()
        self.pause_button = QPushButton("Pause", self)
        self.pause_button.setAccessibleName(f"Pause download of {task.title}")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setAccessibleName(f"Cancel download of {task.title}")
        self.retry_button = QPushButton("Try again", self)
        self.retry_button.setAccessibleName(f"Try downloading {task.title} again")
        self.dismiss_button = QPushButton("Dismiss", self)
        self.dismiss_button.setAccessibleName(f"Remove {task.title} from the list")
        for button in (
            self.pause_button,
            self.cancel_button,
            self.retry_button,
            self.dismiss_button,
        ):
            button.setAutoDefault(False)
        self.retry_button.hide()
        self.dismiss_button.hide()

        top = QHBoxLayout()
        top.addWidget(self._title, 1)
        top.addWidget(self.pause_button)
        top.addWidget(self.cancel_button)
        top.addWidget(self.retry_button)
        top.addWidget(self.dismiss_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self._bar)
        layout.addWidget(self.status)
        layout.addWidget(self.warning_label)

        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.cancel_button.clicked.connect(task.cancel)
        self.retry_button.clicked.connect(self.retryRequested)
        self.dismiss_button.clicked.connect(self.dismissed)
        task.progress.connect(self._on_progress)
        task.pausedChanged.connect(self._on_paused_changed)
        task.finished.connect(self._on_finished)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        task.warning.connect(self._on_warning)
        if task.last_progress is not None:
            self._on_progress(task.last_progress)

    def _on_pause_clicked(self) -> None:
        if self.task.paused:
            self.task.resume()
        else:
            self.task.pause()

    def _on_progress(self, progress: DownloadProgress) -> None:
        done, total = progress.done, progress.total
        if total:
            # QProgressBar holds a C int: count in KiB so files over 2 GiB fit.
            self._bar.setRange(0, max(1, total // 1024))
            self._bar.setValue(min(done, total) // 1024)
            amount = f"{format_bytes(done)} of {format_bytes(total)}"
        else:
            amount = format_bytes(done)
        if progress.phase == "checking":
            parts = ["Contacting the Hub…"]
        elif progress.phase == "verifying":
            parts = [f"Checking the file… {amount}"]
        elif progress.phase == "retrying":
            parts = [progress.note]
        elif self.task.paused or progress.phase == "paused":
            parts = [amount, "paused"]
        else:
            parts = [amount, format_speed(progress.speed_bps), format_eta(progress.eta_s)]
        self.status.setText(" · ".join(p for p in parts if p))

    def _on_paused_changed(self, paused: bool) -> None:
        self.pause_button.setText("Resume" if paused else "Pause")
        verb = "Resume" if paused else "Pause"
        self.pause_button.setAccessibleName(f"{verb} download of {self.task.title}")
        if self.task.last_progress is not None:
            self._on_progress(self.task.last_progress)
        elif paused:
            self.status.setText("Paused")

    def _on_warning(self, text: str) -> None:
        self._title.setToolTip(text)
        self.warning_label.setText("⚠ " + text)
        self.warning_label.show()

    def _on_finished(self, model_id: str) -> None:
        self._bar.setRange(0, 1)
        self._bar.setValue(1)
        self.status.setText(f"Installed and checked as “{model_id}”.")
        self._end()

    def _on_failed(self, message: str) -> None:
        self.status.setText(message)
        self.status.setStyleSheet(f"color: {'#f87171' if is_dark() else '#b91c1c'};")
        self.retry_button.show()
        self._end()

    def _on_cancelled(self) -> None:
        self.status.setText("Cancelled. Nothing was installed.")
        self._end()

    def _end(self) -> None:
        # Keep keyboard focus inside the row when the button that had it disappears.
        had_focus = self.pause_button.hasFocus() or self.cancel_button.hasFocus()
        self.pause_button.hide()
        self.cancel_button.hide()
        self.dismiss_button.show()
        if had_focus:
            self.dismiss_button.setFocus()
