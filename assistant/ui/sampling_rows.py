"""The settings dialog's sampling rows: whose value each one is, the user's or the model's.

A sampling setting the user never set follows the loaded model's recommendation (its catalog
entry's, or its file's), else the app's default. Each row says which it is ("From the model:
0.6"), and a button gives a value the user set back to the model.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSignalBlocker, Slot
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from assistant.engine.base import SamplingPreset
from assistant.settings import SAMPLING_KEYS, Settings, setting

__all__ = ["SamplingRow", "SamplingRows"]


def _show(value: float | int) -> str:
    return f"{value:g}"


class SamplingRow(QWidget):
    """What goes under one sampling setting's editor: a note saying whose value it shows, and
    a button that gives the value back to the model (or the app's default)."""

    def __init__(
        self,
        key: str,
        editor: QWidget,
        recommended: float | int | None,
        source: str,
        chosen: bool,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        assert isinstance(editor, QDoubleSpinBox | QSpinBox)
        self.key = key
        self.editor = editor
        self.recommended = recommended
        self.source = source
        self.default = setting(key).default
        self.follows_model = not chosen
        label = setting(key).label
        self.note = QLabel(self)
        self.note.setObjectName("EmptyHint")
        self.note.setWordWrap(True)
        self.reset_button = QPushButton(
            "Use the model's value" if recommended is not None else "Use the default", self
        )
        self.reset_button.setAutoDefault(False)
        self.reset_button.setAccessibleName(
            f"{label}: use the model's recommended value"
            if recommended is not None
            else f"{label}: use the default value"
        )
        self.reset_button.clicked.connect(self._on_reset_clicked)
        line = QHBoxLayout(self)
        line.setContentsMargins(0, 0, 0, 0)
        line.addWidget(self.note, 1)
        line.addWidget(self.reset_button)
        editor.valueChanged.connect(self._on_value_changed)

    def show_current(self, value: Any) -> None:
        """Show the setting's stored value, or what following the model means now."""
        shown = self.followed_value() if self.follows_model else value
        with QSignalBlocker(self.editor):
            if isinstance(self.editor, QSpinBox):
                self.editor.setValue(int(shown))
            else:
                self.editor.setValue(float(shown))
        self._update_note()

    def followed_value(self) -> float | int:
        return self.recommended if self.recommended is not None else self.default

    def _update_note(self) -> None:
        model_says = (
            f"From the model ({self.source}): {_show(self.recommended)}"
            if self.recommended is not None
            else ""
        )
        if self.follows_model:
            text = model_says or f"The app's default: {_show(self.default)}"
        elif self.recommended is not None:
            text = f"Your own value. The model recommends {_show(self.recommended)}."
        else:
            text = f"Your own value. The default is {_show(self.default)}."
        self.note.setText(text)
        self.reset_button.setEnabled(not self.follows_model)
        self.editor.setAccessibleDescription(text)

    @Slot()
    def _on_reset_clicked(self) -> None:
        self.follows_model = True
        self.show_current(None)
        self.editor.setFocus()

    @Slot()
    def _on_value_changed(self) -> None:
        self.follows_model = False
        self._update_note()


class SamplingRows:
    """The sampling rows of one settings dialog, and what saving them means."""

    def __init__(
        self,
        settings: Settings,
        editors: dict[str, QWidget],
        preset: SamplingPreset | None,
    ) -> None:
        recommended = preset.values() if preset else {}
        source = preset.source if preset else ""
        chosen = settings.chosen_sampling()
        self.rows: dict[str, SamplingRow] = {
            key: SamplingRow(key, editors[key], recommended.get(key), source, key in chosen)
            for key in SAMPLING_KEYS
            if key in editors
        }

    def show_values(self, settings: Settings) -> None:
        """Show the stored values (whose they are as the settings say, whatever the editors
        were given meanwhile)."""
        chosen = settings.chosen_sampling()
        for key, row in self.rows.items():
            row.follows_model = key not in chosen
            row.show_current(settings[key])

    def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (what the dialog shows) as they are to be saved: a row that follows the
        model keeps the default in the file and stays off the user's own values."""
        saved = dict(values)
        for key, row in self.rows.items():
            if row.follows_model:
                saved[key] = row.default
        saved["sampling_chosen"] = ",".join(
            key for key in SAMPLING_KEYS if key in self.rows and not self.rows[key].follows_model
        )
        return saved
