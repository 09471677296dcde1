"""The welcome screen: what the app is, in one sentence, and the quickest way to a first model.

It recommends the most capable catalog model that fits this machine and downloads it with
visible progress, or takes a GGUF file the user already has. Either way the model becomes the
default and :attr:`FirstRunDialog.modelReady` says which one.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from assistant import APP_NAME
from assistant.disk import format_bytes
from assistant.models.catalog import Catalog
from assistant.models.downloads import DownloadTarget
from assistant.models.hardware import Hardware, estimate_for_spec, fit_for_spec
from assistant.models.speed import (
    Recommendation,
    SpeedEstimator,
    format_rate,
    recommend_by_speed,
)
from assistant.models.store import InstalledModel, ModelStore
from assistant.ui.download_tasks import DownloadQueue, DownloadTask, TaskRunner
from assistant.ui.errors import ErrorBanner
from assistant.ui.model_manager import GGUF_FILTER, make_downloads
from assistant.ui.model_widgets import DownloadRow, FitBadge, SpeedLabel
from assistant.ui.window_geometry import available_area, clamp_minimum, keep_inside_screen

OFFLINE_SENTENCE = (
    "Everything runs offline, on this computer: your questions, the answers and "
    "the model never leave it."
)


def pick_model(
    catalog: Catalog,
    hardware: Hardware,
    speeds: SpeedEstimator | None = None,
    usable_tokens_per_s: float = 10.0,
) -> Recommendation:
    """The model to offer: the most capable that fits and answers at a usable speed here; else
    the fastest that fits; else the smallest catalog model, honestly labelled, so a small
    machine is still offered something to try."""
    return recommend_by_speed(
        catalog, speeds or SpeedEstimator(hardware), min_tokens_per_s=usable_tokens_per_s
    )


def why_this_one(advice: Recommendation, usable_tokens_per_s: float) -> str:
    """Why the offered model, in the user's terms. Its name, fit and predicted speed are shown
    right above (name, badge, speed), so this says what they mean instead of repeating them."""
    if not advice.fits:
        return "Memory will be tight: close other programs while it answers."
    comfortable = f"{format_rate(usable_tokens_per_s)} tokens/s"
    if advice.usable:
        return (
            "The most capable model in the catalog that fits this computer and answers at a "
            f"comfortable speed (at least {comfortable})."
        )
    return (
        f"No model answers at a comfortable speed here (at least {comfortable}): this is the "
        "fastest that fits."
    )


class FirstRunDialog(QDialog):
    """Welcome, offer the recommended model or an import, and make the result the default.

    Signals:
        modelReady(str): a model is installed and now the default; the argument is its id.
    """

    modelReady = Signal(str)

    def __init__(
        self,
        store: ModelStore,
        catalog: Catalog,
        hardware: Hardware,
        parent: QWidget | None = None,
        *,
        downloads: DownloadQueue | None = None,
        speeds: SpeedEstimator | None = None,
        usable_tokens_per_s: float = 10.0,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.catalog = catalog
        self.hardware = hardware
        self.downloads = downloads or make_downloads(store, catalog, hardware, self)
        self.runner = TaskRunner(self.downloads.pool, self)
        self.speeds = speeds or SpeedEstimator(hardware)
        self.usable_tokens_per_s = usable_tokens_per_s
        self.advice = pick_model(catalog, hardware, self.speeds, usable_tokens_per_s)
        self.spec, self.fits = self.advice.spec, self.advice.fits
        self.task: DownloadTask | None = None
        self._row: DownloadRow | None = None
        self.setWindowTitle(f"Welcome to {APP_NAME}")
        self.setAccessibleName(f"Welcome to {APP_NAME}")
        clamp_minimum(self, QSize(600, 0))

        title = QLabel(f"Welcome to {APP_NAME}", self)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.7)
        font.setBold(True)
        title.setFont(font)
        intro = QLabel(OFFLINE_SENTENCE, self)
        intro.setWordWrap(True)
        intro.setAccessibleName("About the app")
        step = QLabel(
            "To start, it needs a language model: a single file of a few hundred "
            "megabytes to a few gigabytes.",
            self,
        )
        step.setWordWrap(True)

        self.problem = ErrorBanner(self)

        self.download_button = QPushButton(self)
        self.download_button.setObjectName("PrimaryButton")
        self.download_button.setAutoDefault(False)
        self.download_button.clicked.connect(self.start_download)
        self.import_button = QPushButton("Use a GGUF file I already have…", self)
        self.import_button.setAccessibleName("Use a GGUF model file already on this computer")
        self.import_button.setAutoDefault(False)
        self.import_button.clicked.connect(self._on_import_clicked)
        self.later_button = QPushButton("Not now", self)
        self.later_button.setAccessibleName("Close the welcome screen without a model")
        self.later_button.setAutoDefault(False)
        self.later_button.clicked.connect(self.reject)

        self._progress_holder = QVBoxLayout()
        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        buttons.addWidget(self.later_button)

        # Everything above the buttons scrolls when the screen is too small for it (a laptop
        # at 200 %), instead of being squeezed until labels overlap and buttons lose their text.
        self.body = QWidget(self)
        self._body = QVBoxLayout(self.body)
        self._body.setContentsMargins(28, 24, 28, 0)
        self._body.setSpacing(12)
        self._body.addWidget(title)
        self._body.addWidget(intro)
        self._body.addWidget(step)
        self._body.addWidget(self.problem)
        self.offer = self._build_offer()
        self._body.addWidget(self.offer)
        self._body.addLayout(self._progress_holder)
        self._body.addStretch(1)
        self.scroller = QScrollArea(self)
        self.scroller.setWidget(self.body)
        self.scroller.setWidgetResizable(True)
        self.scroller.setFrameShape(QFrame.Shape.NoFrame)
        self.scroller.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        buttons.setContentsMargins(28, 0, 28, 20)
        self._buttons = buttons
        self._outer = QVBoxLayout(self)
        self._outer.setContentsMargins(0, 0, 0, 0)
        self._outer.setSpacing(12)
        self._outer.addWidget(self.scroller, 1)
        self._outer.addLayout(buttons)

        running = self.downloads.find(DownloadTarget.for_spec(self.spec)) if self.spec else None
        if running is not None:
            self._watch(running)
        self.download_button.setFocus()

    def _build_offer(self) -> QWidget:
        card = QFrame(self)
        card.setFrameShape(QFrame.Shape.StyledPanel)
        card.setObjectName("recommendedCard")
        layout = QVBoxLayout(card)
        layout.setContentsMargins(16, 14, 16, 14)
        spec = self.spec
        if spec is None:  # an empty catalog: only an import can help
            self.download_button.hide()
            layout.addWidget(QLabel("Pick a GGUF model file you already have.", card))
            return card
        heading = (
            "Recommended for this computer"
            if self.fits
            else "No model fits this computer comfortably; the smallest one is"
        )
        caption = QLabel(heading, card)
        name = QLabel(f"<b>{spec.name}</b>", card)
        font = name.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        name.setFont(font)
        badge = FitBadge(fit_for_spec(spec, self.hardware), estimate_for_spec(spec), card)
        self.badge = badge
        self.speed = SpeedLabel(self.speeds.for_spec(spec), card)
        # Why this one, in the words of what the user will feel.
        self.reason = QLabel(why_this_one(self.advice, self.usable_tokens_per_s), card)
        self.reason.setWordWrap(True)
        self.reason.setAccessibleName("Why this model")
        facts = QLabel(
            f"{spec.good_at}.<br>{spec.parameters_label} parameters · "
            f"{spec.quantization} · {format_bytes(spec.size_bytes)} download · "
            f"license {spec.license}",
            card,
        )
        facts.setWordWrap(True)
        size = format_bytes(spec.size_bytes)
        self.download_button.setText(f"Download {spec.name} ({size})")
        self.download_button.setAccessibleName(f"Download {spec.name}, {size}")
        top = QHBoxLayout()
        top.addWidget(name)
        top.addWidget(badge)
        top.addWidget(self.speed)
        top.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.download_button)
        layout.addWidget(caption)
        layout.addLayout(top)
        layout.addWidget(self.reason)
        layout.addWidget(facts)
        layout.addLayout(row)
        return card

    def set_speeds(self, speeds: SpeedEstimator, usable_tokens_per_s: float) -> None:
        """Offer again by new predictions (the machine was just measured), unless a download
        of the offered model has started."""
        self.speeds = speeds
        if self.task is not None or self.spec is None:
            return
        self.usable_tokens_per_s = usable_tokens_per_s
        self.advice = pick_model(self.catalog, self.hardware, speeds, usable_tokens_per_s)
        self.spec, self.fits = self.advice.spec, self.advice.fits
        old = self.offer
        self.offer = self._build_offer()
        self._body.replaceWidget(old, self.offer)
        old.deleteLater()
        self.offer.show()  # now, not at the next event loop turn: the height counts it
        self._fit_height()
        self.download_button.setFocus()

    # --- actions ---------------------------------------------------------------------------

    def start_download(self) -> DownloadTask | None:
        """Download the offered model on the downloads pool, showing its progress here."""
        if self.spec is None:
            return None
        self.problem.hide()
        task = self.downloads.start(DownloadTarget.for_spec(self.spec))
        self._watch(task)
        return task

    def import_file(self, path: Path | str) -> None:
        """Validate and register a GGUF file (left where it is), then make it the default."""
        self.problem.hide()
        self._set_busy(True)
        self.runner.run(
            lambda: self.store.import_file(path),
            on_success=self._on_imported,
            on_failure=self._on_import_failed,
            what=f"importing {Path(path).name}",
        )

    def _watch(self, task: DownloadTask) -> None:
        self.task = task
        if self._row is not None:
            self._row.deleteLater()
        self._row = DownloadRow(task, self)
        self._row.retryRequested.connect(self.start_download)
        self._row.dismissed.connect(self._on_row_dismissed)
        self._progress_holder.addWidget(self._row)
        self._row.show()  # now, not at the next event loop turn: the height counts it
        self._fit_height()
        self.download_button.setEnabled(False)
        self.download_button.setText("Downloading…")
        task.finished.connect(self._on_model_installed)
        task.failed.connect(self._on_download_ended)
        task.cancelled.connect(self._on_download_ended)

    def sizeHint(self) -> QSize:
        """Tall enough to show the whole body without scrolling, when the screen allows."""
        hint = super().sizeHint()
        return QSize(hint.width(), self._height_for(max(hint.width(), self.minimumWidth())))

    def _height_for(self, width: int) -> int:
        """The height that shows everything at ``width``: the body as wrapped labels need it
        (the height-for-width a plain size hint ignores), and the buttons."""
        self._body.activate()
        body = self._body.totalHeightForWidth(width)
        return body + self._outer.spacing() + self._buttons.sizeHint().height()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit_height()

    def _fit_height(self) -> None:
        """Grow the window for what it shows now (a new progress row, another offer) instead
        of squeezing the card, as far as the screen allows; beyond that the body scrolls."""
        needed = min(self._height_for(self.width()), available_area(self).height())
        if needed > self.height():
            self.resize(self.width(), needed)
            keep_inside_screen(self)

    def _set_busy(self, busy: bool) -> None:
        downloading = self.task is not None and self.task.active
        self.download_button.setEnabled(not busy and not downloading)
        self.import_button.setEnabled(not busy)

    def _finish(self, model_id: str) -> None:
        self.store.set_default(model_id)
        self.modelReady.emit(model_id)
        self.accept()

    # --- slots -------------------------------------------------------------------------------

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a GGUF model file", str(Path.home()), GGUF_FILTER
        )
        if path:
            self.import_file(path)

    def _on_imported(self, model: InstalledModel) -> None:
        self._set_busy(False)
        self.downloads.report_installed(model.id)
        self._finish(model.id)

    def _on_import_failed(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.problem.show_exception(exc, "That file cannot be used: ", "Importing a model")
        self._fit_height()  # the notice takes room: grow rather than squash the card

    def _on_model_installed(self, model_id: str) -> None:
        self._finish(model_id)

    def _on_download_ended(self, *_args: object) -> None:
        if self.spec is not None:
            self.download_button.setText(
                f"Download {self.spec.name} ({format_bytes(self.spec.size_bytes)})"
            )
        self._set_busy(False)
        # The row under the card now says why: once it is laid out, make room for it.
        QTimer.singleShot(0, self, self._fit_height)

    def _on_row_dismissed(self) -> None:
        if self._row is not None:
            self._row.deleteLater()
            self._row = None


__all__ = ["OFFLINE_SENTENCE", "FirstRunDialog", "pick_model"]
