"""Settings: what the assistant is told, how it samples, how the model runs, how the app looks.

The dialog is built from ``assistant.settings.SCHEMA``: one tab per group, one row per setting in
schema order, each editor's range, step, label, tooltip and choices taken from its declaration.
Only what no declaration can say is written here: the note when the engine cannot use a GPU,
the data folder row, the local API's address and token, and the note under a tab whose changes
load the model again.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QCheckBox,
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

from assistant.engine.base import SamplingPreset
from assistant.settings import GROUPS, RELOAD_KEYS, SCHEMA, Setting, Settings
from assistant.ui.api_settings import API_GROUP, ApiRows
from assistant.ui.sampling_rows import SamplingRows
from assistant.ui.window_geometry import clamp_minimum, fit_window

log = logging.getLogger(__name__)

__all__ = ["NO_GPU_NOTE", "RELOAD_KEYS", "ChoiceOrCount", "SettingsDialog"]

NO_GPU_NOTE = (
    "This build of the engine runs on the processor only, so there is nothing to offload. "
    "Install a GPU-enabled build of llama-cpp-python to use a graphics card."
)
RELOAD_NOTE = "Changes here load the model again."
DATA_GROUP = "Appearance and data"  # the tab that also shows where the data lives
_COUNT = "count"  # the combo box item that shows the number box


class ChoiceOrCount(QWidget):
    """A text setting that is one of a few words or a number (gpu_layers: "auto", "off" or
    "20"): a combo box of the choices plus "this many", and a number box beside it."""

    def __init__(self, setting: Setting, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.mode = QComboBox()
        for value, label in setting.choices:
            self.mode.addItem(label, value)
        self.mode.addItem(setting.count_label, _COUNT)
        self.mode.setAccessibleName(setting.accessible_name or setting.label)
        self.count = QSpinBox()
        # 0 is allowed in the file for older versions, but it means "off", which has its item.
        self.count.setRange(max(1, int(setting.minimum or 0)), int(setting.maximum or 999_999))
        self.count.setSingleStep(int(setting.step or 1))
        self.count.setAccessibleName(f"{setting.label}: {setting.count_label.lower()}")
        self._choices = setting.choice_values
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.mode, 1)
        layout.addWidget(self.count)
        self.mode.currentIndexChanged.connect(self._on_mode_changed)
        self._on_mode_changed()

    def value(self) -> str:
        mode = self.mode.currentData()
        return str(self.count.value()) if mode == _COUNT else str(mode)

    def set_value(self, value: str) -> None:
        if value in self._choices:
            self.mode.setCurrentIndex(self.mode.findData(value))
        elif value == "0" and "off" in self._choices:  # no layers offloaded is "off"
            self.mode.setCurrentIndex(self.mode.findData("off"))
        else:
            self.count.setValue(int(value))
            self.mode.setCurrentIndex(self.mode.findData(_COUNT))

    @Slot()
    def _on_mode_changed(self) -> None:
        self.count.setVisible(self.mode.currentData() == _COUNT)


def editor_for(setting: Setting) -> QWidget:
    """The widget that edits ``setting``, set up from its declaration."""
    editor: QWidget
    if setting.count_label:
        editor = ChoiceOrCount(setting)
    elif setting.choices:
        combo = QComboBox()
        for value, label in setting.choices:
            combo.addItem(label, value)
        editor = combo
    elif setting.kind is float:
        double = QDoubleSpinBox()
        double.setDecimals(setting.decimals if setting.decimals is not None else 2)
        double.setRange(_bound(setting.minimum, -1e9), _bound(setting.maximum, 1e9))
        double.setSingleStep(setting.step or 1.0)
        double.setSpecialValueText(setting.special_value_text)
        editor = double
    elif setting.kind is int:
        box = QSpinBox()
        box.setRange(
            int(_bound(setting.minimum, -(2**31))), int(_bound(setting.maximum, 2**31 - 1))
        )
        box.setSingleStep(int(setting.step or 1))
        box.setSpecialValueText(setting.special_value_text)
        editor = box
    elif setting.kind is bool:
        editor = QCheckBox()
    elif setting.multiline:
        text = QPlainTextEdit()
        text.setTabChangesFocus(True)
        text.setPlaceholderText(setting.placeholder)
        editor = text
    else:
        line = QLineEdit()
        line.setPlaceholderText(setting.placeholder)
        editor = line
    editor.setAccessibleName(setting.accessible_name or setting.label)
    if setting.tooltip:
        editor.setToolTip(setting.tooltip)
    return editor


def _bound(value: float | None, fallback: float) -> float:
    return fallback if value is None else value


def read_editor(editor: QWidget, setting: Setting) -> Any:
    """What ``editor`` shows, as a value of ``setting``."""
    if isinstance(editor, ChoiceOrCount):
        return editor.value()
    if isinstance(editor, QComboBox):
        return editor.currentData()
    if isinstance(editor, QDoubleSpinBox):
        # The box rounds what it shows; its float does not always match it exactly.
        return round(editor.value(), editor.decimals())
    if isinstance(editor, QSpinBox):
        return editor.value()
    if isinstance(editor, QCheckBox):
        return editor.isChecked()
    if isinstance(editor, QPlainTextEdit):
        return editor.toPlainText().strip()
    if isinstance(editor, QLineEdit):
        return editor.text().strip()
    raise TypeError(f"no way to read {type(editor).__name__} for {setting.key}")


def show_value(editor: QWidget, value: Any) -> None:
    """Put ``value`` into ``editor``."""
    if isinstance(editor, ChoiceOrCount):
        editor.set_value(str(value))
    elif isinstance(editor, QComboBox):
        editor.setCurrentIndex(max(editor.findData(value), 0))
    elif isinstance(editor, QDoubleSpinBox | QSpinBox):
        editor.setValue(value)
    elif isinstance(editor, QCheckBox):
        editor.setChecked(bool(value))
    elif isinstance(editor, QPlainTextEdit):
        editor.setPlainText(str(value))
    elif isinstance(editor, QLineEdit):
        editor.setText(str(value))


class SettingsDialog(QDialog):
    """Edit the settings; OK saves them.

    ``editors`` maps each setting shown to its widget; each is also an attribute named after
    its key (``dialog.temperature``), and ``gpu_mode`` is the GPU offload combo box.

    Signals:
        settingsChanged(list): the keys whose values changed, after they were saved (as
            ``Settings.update`` returns them: also any another writer had saved meanwhile).
    """

    settingsChanged = Signal(list)

    def __init__(
        self,
        settings: Settings,
        data_folder: Path,
        gpu_offload: bool,
        parent: QWidget | None = None,
        *,
        model_sampling: SamplingPreset | None = None,
    ) -> None:
        """``model_sampling`` is the loaded (or default) model's recommended sampling, which
        the sampling settings the user did not set follow."""
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setAccessibleName("Settings")
        self._settings = settings
        self._data_folder = data_folder
        self._shown = [s for s in SCHEMA if s.group is not None]
        self.editors: dict[str, QWidget] = {}
        for setting in self._shown:
            editor = editor_for(setting)
            self.editors[setting.key] = editor
            if not hasattr(self, setting.key):  # a key named like a QWidget method stays unaliased
                setattr(self, setting.key, editor)
        self.sampling = SamplingRows(settings, self.editors, model_sampling)

        gpu = self.editors["gpu_layers"]
        assert isinstance(gpu, ChoiceOrCount)
        self.gpu_mode = gpu.mode
        self.gpu_note = QLabel(NO_GPU_NOTE)
        self.gpu_note.setWordWrap(True)
        self.gpu_note.setObjectName("EmptyHint")
        self.gpu_note.setVisible(not gpu_offload)
        if not gpu_offload:
            gpu.setEnabled(False)
            gpu.mode.setToolTip(NO_GPU_NOTE)

        self.data_path = QLineEdit(str(data_folder))
        self.data_path.setReadOnly(True)
        self.data_path.setAccessibleName("Data folder")
        self.open_folder_button = QPushButton("Open folder")
        self.open_folder_button.setAccessibleName("Open data folder")
        self.open_folder_button.clicked.connect(self._on_open_folder_clicked)

        tabs = QTabWidget()
        for group in GROUPS:
            tabs.addTab(self._page(group), group)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(tabs)
        layout.addWidget(buttons)
        clamp_minimum(self, QSize(420, 320))
        fit_window(self, QSize(560, 460))
        for setting in self._shown:
            show_value(self.editors[setting.key], settings[setting.key])
        self.sampling.show_values(settings)

    def _page(self, group: str) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        members = [s for s in self._shown if s.group == group]
        for setting in members:
            form.addRow(setting.label, self.editors[setting.key])
            if setting.key in self.sampling.rows:
                form.addRow("", self.sampling.rows[setting.key])
            if setting.key == "gpu_layers":
                form.addRow("", self.gpu_note)
        if any(s.key in RELOAD_KEYS for s in members):
            form.addRow("", _hint(RELOAD_NOTE))
        if group == DATA_GROUP:
            folder = QHBoxLayout()
            folder.addWidget(self.data_path, 1)
            folder.addWidget(self.open_folder_button)
            form.addRow("Your data", folder)
            form.addRow(
                "", _hint("Conversations, settings and downloaded models stay in this folder.")
            )
        if group == API_GROUP:
            port = self.editors["api_port"]
            assert isinstance(port, QSpinBox)
            self.api_rows = ApiRows(form, port)
        return page

    # --- values ----------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        """What the dialog shows, as settings values."""
        return {s.key: read_editor(self.editors[s.key], s) for s in self._shown}

    def accept(self) -> None:
        before = self._settings.as_dict()
        try:
            self._settings.update(self.sampling.apply(self.values()))
        except OSError as exc:  # the new values are in use anyway; only the file is behind
            log.warning("Could not save the settings: %s", exc)
        # What update() returns, also when the save failed: the dialog's changes, and any that
        # another writer had saved meanwhile (the settings took them in while saving).
        changed = [key for key, value in before.items() if self._settings[key] != value]
        super().accept()
        self.settingsChanged.emit(changed)

    # --- events ----------------------------------------------------------------------------

    @Slot()
    def _on_open_folder_clicked(self) -> None:
        self._data_folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._data_folder)))


def _hint(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("EmptyHint")
    label.setWordWrap(True)
    return label
