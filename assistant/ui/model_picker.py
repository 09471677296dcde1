"""The model chooser in the window's header: installed models, "Get models…", load state."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QWidget,
)

from assistant.engine.base import load_percent
from assistant.models.store import InstalledModel

GET_MODELS = "__get_models__"


class ModelPicker(QWidget):
    """Pick the model that answers; shows whether it is loading, ready or failed.

    Signals:
        modelChosen(str): the user picked an installed model (its id).
        getModelsRequested(): the user picked "Get models…".
        cancelLoadRequested(): the user asked to stop loading the model.
    """

    modelChosen = Signal(str)
    getModelsRequested = Signal()
    cancelLoadRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setAccessibleName("Model")
        self.combo.setToolTip("The model that answers")
        self.combo.setMinimumContentsLength(24)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.combo.setPlaceholderText("No model")
        self.combo.activated.connect(self._on_activated)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(100)  # the controls beside it stay put while it fills
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Loading the model")
        self.progress.hide()
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setAccessibleName("Cancel loading the model")
        self.cancel_button.setToolTip("Stop loading this model")
        self.cancel_button.clicked.connect(self.cancelLoadRequested)
        self.cancel_button.hide()
        self.state = QLabel()
        self.state.setObjectName("EmptyHint")
        self.state.setMinimumWidth(self.state.fontMetrics().horizontalAdvance("Cancelling…"))
        label = QLabel("&Model")
        label.setBuddy(self.combo)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(label)
        layout.addWidget(self.combo)
        layout.addWidget(self.progress)
        layout.addWidget(self.cancel_button)
        layout.addWidget(self.state)
        self._current: str | None = None

    def set_models(self, models: list[InstalledModel], current: str | None) -> None:
        self.combo.blockSignals(True)
        try:
            self.combo.clear()
            for model in models:
                label = model.name or model.id
                if model.missing:
                    label += " (file missing)"
                self.combo.addItem(label, model.id)
            if self.combo.count():
                self.combo.insertSeparator(self.combo.count())
            self.combo.addItem("Get models…", GET_MODELS)
        finally:
            self.combo.blockSignals(False)
        self.set_current(current)

    def set_current(self, model_id: str | None) -> None:
        self._current = model_id
        self.combo.setCurrentIndex(self.combo.findData(model_id) if model_id else -1)

    def current_id(self) -> str | None:
        return self._current

    def pick(self, model_id: str) -> None:
        """Choose a model as the user would (used by keyboard shortcuts and tests)."""
        index = self.combo.findData(model_id)
        if index >= 0:
            self.combo.setCurrentIndex(index)
            self._on_activated(index)

    def show_loading(self, fraction: float | None = None) -> None:
        """Loading; ``fraction`` is how far (``None``: not known yet, a busy bar)."""
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(load_percent(fraction))
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.state.setText("Loading…" if fraction is None else f"{load_percent(fraction)} %")

    def show_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.state.setText("Cancelling…")

    def show_ready(self) -> None:
        self._hide_load()
        self.state.setText("")

    def show_failed(self) -> None:
        self._hide_load()
        self.state.setText("Not loaded")

    def _hide_load(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        model_id = self.combo.itemData(index)
        if model_id == GET_MODELS:
            self.set_current(self._current)  # "Get models…" is an action, not a choice
            self.getModelsRequested.emit()
        elif model_id:
            self._current = model_id
            self.modelChosen.emit(model_id)
