"""Settings: what the assistant is told, how it samples, how the model runs, how the app looks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.settings import Settings

log = logging.getLogger(__name__)

# Changing these needs the model loaded again.
RELOAD_KEYS = frozenset({"context_size", "threads", "gpu_layers"})
OVERFLOW_CHOICES = (
    ("drop_oldest", "Leave out the oldest messages"),
    ("refuse", "Stop and tell me to start a new chat"),
)
THEME_CHOICES = (("system", "Same as the system"), ("light", "Light"), ("dark", "Dark"))
NO_GPU_NOTE = (
    "This build of the engine runs on the processor only, so there is nothing to offload. "
    "Install a GPU-enabled build of llama-cpp-python to use a graphics card."
)


def _double(low: float, high: float, step: float, decimals: int, name: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    box.setAccessibleName(name)
    return box


def _int(low: int, high: int, step: int, name: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setAccessibleName(name)
    return box


def _combo(choices: tuple[tuple[str, str], ...], name: str) -> QComboBox:
    box = QComboBox()
    for value, label in choices:
        box.addItem(label, value)
    box.setAccessibleName(name)
    return box


class SettingsDialog(QDialog):
    """Edit the settings; OK saves them.

    Signals:
        settingsChanged(list): the keys whose values changed, after they were saved.
    """

    settingsChanged = Signal(list)

    def __init__(
        self,
        settings: Settings,
        data_folder: Path,
        gpu_offload: bool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self._settings = settings
        self._data_folder = data_folder

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setTabChangesFocus(True)
        self.system_prompt.setPlaceholderText("What the assistant is told before every chat")
        self.temperature = _double(0.0, 2.0, 0.05, 2, "Temperature")
        self.temperature.setToolTip("0 always picks the most likely word; higher is more varied")
        self.top_p = _double(0.0, 1.0, 0.01, 2, "Top-p")
        self.top_k = _int(0, 1000, 1, "Top-k")
        self.top_k.setSpecialValueText("Off")
        self.min_p = _double(0.0, 1.0, 0.01, 2, "Min-p")
        self.repeat_penalty = _double(0.5, 2.0, 0.05, 2, "Repeat penalty")
        self.max_tokens = _int(1, 32768, 64, "Longest answer in tokens")

        self.context_size = _int(512, 131072, 512, "Context size in tokens")
        self.context_size.setToolTip("How much of the conversation the model can see at once")
        self.threads = _int(0, 256, 1, "CPU threads")
        self.threads.setSpecialValueText("Automatic")
        self.gpu_mode = _combo(
            (("auto", "Automatic (as many as fit)"), ("off", "Off"), ("n", "This many layers")),
            "GPU offload",
        )
        self.gpu_layers = _int(1, 999, 1, "GPU layers")
        self.gpu_mode.currentIndexChanged.connect(self._on_gpu_mode_changed)
        self.gpu_note = QLabel(NO_GPU_NOTE)
        self.gpu_note.setWordWrap(True)
        self.gpu_note.setObjectName("EmptyHint")
        self.gpu_note.setVisible(not gpu_offload)
        self._gpu_offload = gpu_offload
        self.overflow = _combo(OVERFLOW_CHOICES, "When the conversation is too long")
        self.theme = _combo(THEME_CHOICES, "Theme")

        self.data_path = QLineEdit(str(data_folder))
        self.data_path.setReadOnly(True)
        self.data_path.setAccessibleName("Data folder")
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setAccessibleName("Open data folder")
        self.open_folder_button.clicked.connect(self._on_open_folder_clicked)

        tabs = QTabWidget()
        tabs.addTab(self._answers_page(), "Answers")
        tabs.addTab(self._model_page(), "Model")
        tabs.addTab(self._app_page(), "Appearance and data")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        self.resize(560, 460)
        self._load()

    def _answers_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("System prompt", self.system_prompt)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Top-k", self.top_k)
        form.addRow("Min-p", self.min_p)
        form.addRow("Repeat penalty", self.repeat_penalty)
        form.addRow("Longest answer (tokens)", self.max_tokens)
        return page

    def _model_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Context size (tokens)", self.context_size)
        form.addRow("CPU threads", self.threads)
        gpu = QHBoxLayout()
        gpu.addWidget(self.gpu_mode, 1)
        gpu.addWidget(self.gpu_layers)
        form.addRow("GPU offload", gpu)
        form.addRow("", self.gpu_note)
        form.addRow("When a chat gets too long", self.overflow)
        note = QLabel("Changes here load the model again.")
        note.setObjectName("EmptyHint")
        form.addRow("", note)
        return page

    def _app_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        form.addRow("Theme", self.theme)
        folder = QHBoxLayout()
        folder.addWidget(self.data_path, 1)
        folder.addWidget(self.open_folder_button)
        form.addRow("Your data", folder)
        note = QLabel("Conversations, settings and downloaded models stay in this folder.")
        note.setObjectName("EmptyHint")
        note.setWordWrap(True)
        form.addRow("", note)
        return page

    # --- values ----------------------------------------------------------------------------

    def _load(self) -> None:
        s = self._settings
        self.system_prompt.setPlainText(s["system_prompt"])
        self.temperature.setValue(s["temperature"])
        self.top_p.setValue(s["top_p"])
        self.top_k.setValue(s["top_k"])
        self.min_p.setValue(s["min_p"])
        self.repeat_penalty.setValue(s["repeat_penalty"])
        self.max_tokens.setValue(s["max_tokens"])
        self.context_size.setValue(s["context_size"])
        self.threads.setValue(s["threads"])
        gpu = str(s["gpu_layers"])
        self.gpu_mode.setCurrentIndex(
            self.gpu_mode.findData(gpu if gpu in ("auto", "off") else "n")
        )
        if gpu.isdigit():
            self.gpu_layers.setValue(max(1, int(gpu)))
        self._select(self.overflow, s["overflow_policy"])
        self._select(self.theme, s["theme"])
        self._on_gpu_mode_changed()

    @staticmethod
    def _select(box: QComboBox, value: str) -> None:
        index = box.findData(value)
        box.setCurrentIndex(max(index, 0))

    def values(self) -> dict[str, Any]:
        """What the dialog shows, as settings values."""
        mode = self.gpu_mode.currentData()
        gpu = str(self.gpu_layers.value()) if mode == "n" else str(mode)
        return {
            "system_prompt": self.system_prompt.toPlainText().strip(),
            "temperature": round(self.temperature.value(), 2),
            "top_p": round(self.top_p.value(), 2),
            "top_k": self.top_k.value(),
            "min_p": round(self.min_p.value(), 2),
            "repeat_penalty": round(self.repeat_penalty.value(), 2),
            "max_tokens": self.max_tokens.value(),
            "context_size": self.context_size.value(),
            "threads": self.threads.value(),
            "gpu_layers": gpu,
            "overflow_policy": self.overflow.currentData(),
            "theme": self.theme.currentData(),
        }

    def accept(self) -> None:
        changed = [key for key, value in self.values().items() if self._settings[key] != value]
        for key in changed:
            self._settings.set(key, self.values()[key])
        if changed:
            try:
                self._settings.save()
            except OSError as exc:
                log.warning("Could not save the settings: %s", exc)
        super().accept()
        self.settingsChanged.emit(changed)

    # --- events ----------------------------------------------------------------------------

    @Slot()
    def _on_gpu_mode_changed(self) -> None:
        self.gpu_mode.setEnabled(self._gpu_offload)
        self.gpu_layers.setEnabled(self._gpu_offload and self.gpu_mode.currentData() == "n")
        self.gpu_layers.setVisible(self.gpu_mode.currentData() == "n")
        if not self._gpu_offload:
            self.gpu_mode.setToolTip(NO_GPU_NOTE)

    @Slot()
    def _on_open_folder_clicked(self) -> None:
        self._data_folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._data_folder)))
