"""The model chooser in the window's header: installed models, "Get models…", load state."""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QWidget

from assistant.models.store import InstalledModel

GET_MODELS = "__get_models__"


class ModelPicker(QWidget):
    """Pick the model that answers; shows whether it is loading, ready or failed.

    Signals:
        modelChosen(str): the user picked an installed model (its id).
        getModelsRequested(): the user picked "Get models…".
    """

    modelChosen = Signal(str)
    getModelsRequested = Signal()

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
        self.progress.setRange(0, 0)  # busy: llama.cpp does not report how far a load is
        self.progress.setMaximumWidth(120)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Loading the model")
        self.progress.hide()
        self.state = QLabel()
        self.state.setObjectName("EmptyHint")
        label = QLabel("&Model")
        label.setBuddy(self.combo)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(label)
        layout.addWidget(self.combo)
        layout.addWidget(self.progress)
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

    def show_loading(self) -> None:
        self.progress.show()
        self.state.setText("Loading…")

    def show_ready(self) -> None:
        self.progress.hide()
        self.state.setText("")

    def show_failed(self) -> None:
        self.progress.hide()
        self.state.setText("Not loaded")

    @Slot(int)
    def _on_activated(self, index: int) -> None:
        model_id = self.combo.itemData(index)
        if model_id == GET_MODELS:
            self.set_current(self._current)  # "Get models…" is an action, not a choice
            self.getModelsRequested.emit()
        elif model_id:
            self._current = model_id
            self.modelChosen.emit(model_id)
