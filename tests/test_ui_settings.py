"""The settings dialog is built from the schema; the composer keeps its draft in the window state.

Real widgets offscreen, real files; no model needed.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QTabWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot

from assistant.settings import GROUPS, SCHEMA, Settings
from assistant.state import WindowState
from assistant.ui import settings_dialog
from assistant.ui.composer import Composer
from assistant.ui.settings_dialog import NO_GPU_NOTE, RELOAD_NOTE, ChoiceOrCount, SettingsDialog

SHOWN = [s for s in SCHEMA if s.group is not None]


def open_dialog(qtbot: QtBot, settings: Settings, gpu_offload: bool = True) -> SettingsDialog:
    dialog = SettingsDialog(settings, settings.path.parent / "data", gpu_offload=gpu_offload)
    qtbot.addWidget(dialog)
    dialog.show()
    return dialog


def pages(dialog: SettingsDialog) -> dict[str, QWidget]:
    tabs = dialog.findChild(QTabWidget)
    assert tabs is not None
    return {tabs.tabText(i): tabs.widget(i) for i in range(tabs.count())}


def form_of(page: QWidget) -> QFormLayout:
    form = page.layout()
    assert isinstance(form, QFormLayout)
    return form


def test_every_setting_in_a_group_has_an_editor_with_the_schemas_range(
    qtbot: QtBot, tmp_path: Path
) -> None:
    dialog = open_dialog(qtbot, Settings.load(tmp_path / "settings.json"))
    assert list(pages(dialog)) == list(GROUPS)
    assert list(dialog.editors) == [s.key for s in SHOWN]
    for declared in SHOWN:
        editor = dialog.editors[declared.key]
        form = form_of(pages(dialog)[declared.group or ""])
        label = form.labelForField(editor)
        assert isinstance(label, QLabel) and label.text() == declared.label, declared.key
        assert editor.toolTip() == declared.tooltip, declared.key
        if isinstance(editor, QSpinBox | QDoubleSpinBox):
            assert (editor.minimum(), editor.maximum()) == (declared.minimum, declared.maximum)
            assert editor.singleStep() == declared.step
            assert editor.specialValueText() == declared.special_value_text
            if isinstance(editor, QDoubleSpinBox):
                assert editor.decimals() == declared.decimals
        elif isinstance(editor, ChoiceOrCount):
            items = [editor.mode.itemData(i) for i in range(editor.mode.count())]
            assert items[:-1] == list(declared.choice_values)
            assert editor.mode.itemText(editor.mode.count() - 1) == declared.count_label
            assert editor.count.maximum() == declared.maximum
        elif isinstance(editor, QComboBox):
            items = [(editor.itemData(i), editor.itemText(i)) for i in range(editor.count())]
            assert tuple(items) == declared.choices
        elif isinstance(editor, QCheckBox):
            assert declared.kind is bool
        elif isinstance(editor, QLineEdit):
            assert declared.kind is str and not declared.multiline
            assert editor.placeholderText() == declared.placeholder
        else:
            assert isinstance(editor, QPlainTextEdit) and declared.multiline
    # The labels and names people know from before.
    assert dialog.editors["max_tokens"].accessibleName() == "Longest answer in tokens"
    assert dialog.gpu_mode.accessibleName() == "GPU offload"


def test_a_changed_schema_range_changes_the_dialog(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing in the dialog repeats a range: change the declaration, the editor follows."""
    narrower = tuple(
        replace(s, maximum=1.5, step=0.1, label="Warmth") if s.key == "temperature" else s
        for s in SCHEMA
    )
    monkeypatch.setattr(settings_dialog, "SCHEMA", narrower)
    dialog = open_dialog(qtbot, Settings.load(tmp_path / "settings.json"))
    box = dialog.editors["temperature"]
    assert isinstance(box, QDoubleSpinBox)
    assert box.maximum() == 1.5 and box.singleStep() == 0.1
    label = form_of(pages(dialog)["Answers"]).labelForField(box)
    assert isinstance(label, QLabel) and label.text() == "Warmth"


def test_notes_and_the_data_folder_sit_where_they_did(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = open_dialog(qtbot, Settings.load(tmp_path / "settings.json"))
    texts = {
        name: [label.text() for label in page.findChildren(QLabel)]
        for name, page in pages(dialog).items()
    }
    assert RELOAD_NOTE in texts["Model"]
    assert RELOAD_NOTE not in texts["Answers"] + texts["Appearance and data"]
    assert "Your data" in texts["Appearance and data"]
    assert dialog.data_path.text() == str(tmp_path / "data")


def test_dialog_shows_the_stored_values_and_ok_without_edits_changes_nothing(
    qtbot: QtBot, tmp_path: Path
) -> None:
    path = tmp_path / "settings.json"
    stored = {
        "system_prompt": "Be brief.",
        "temperature": 0.35,
        "top_k": 0,
        "max_tokens": 640,
        "threads": 4,
        "gpu_layers": "12",
        "overflow_policy": "refuse",
        "theme": "light",
    }
    settings = Settings.load(path)
    settings.update(stored)
    dialog = open_dialog(qtbot, settings)
    assert dialog.editors["top_k"].text() == "Off"
    values = dialog.values()
    assert {key: values[key] for key in stored} == stored
    assert values == {s.key: settings[s.key] for s in SHOWN}
    with qtbot.waitSignal(dialog.settingsChanged) as changed:
        dialog.accept()
    assert changed.args == [[]]


def test_ok_saves_through_update_so_listeners_hear(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings.load(path)
    heard: list[list[str]] = []
    settings.add_listener(heard.append)
    dialog = open_dialog(qtbot, settings)
    assert dialog.gpu_mode.isEnabled() and dialog.gpu_note.isHidden()
    dialog.temperature.setValue(0.5)
    dialog.gpu_mode.setCurrentIndex(dialog.gpu_mode.findData("count"))
    gpu = dialog.editors["gpu_layers"]
    assert isinstance(gpu, ChoiceOrCount) and gpu.count.isVisibleTo(gpu)
    gpu.count.setValue(20)
    with qtbot.waitSignal(dialog.settingsChanged) as changed:
        dialog.accept()
    # the temperature typed in is the user's own from now on
    assert changed.args == [["temperature", "gpu_layers", "sampling_chosen"]]
    assert heard == changed.args
    again = Settings.load(path)
    assert again["temperature"] == 0.5 and again["gpu_layers"] == "20"


def test_without_gpu_offload_the_choice_is_off_and_explained(qtbot: QtBot, tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "settings.json")
    settings.set("gpu_layers", "0")  # an older version's way to say "off"
    dialog = open_dialog(qtbot, settings, gpu_offload=False)
    assert not dialog.gpu_mode.isEnabled()
    assert dialog.gpu_mode.currentData() == "off"
    assert not dialog.gpu_note.isHidden() and dialog.gpu_note.text() == NO_GPU_NOTE
    assert dialog.gpu_mode.toolTip() == NO_GPU_NOTE


def test_every_control_has_an_accessible_name(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = open_dialog(qtbot, Settings.load(tmp_path / "settings.json"))
    controls = (
        dialog.findChildren(QAbstractButton)
        + dialog.findChildren(QLineEdit)
        + dialog.findChildren(QComboBox)
        + dialog.findChildren(QPlainTextEdit)
        + dialog.findChildren(QAbstractSpinBox)
    )
    unnamed = [
        c
        for c in controls
        if not c.accessibleName()
        and not (isinstance(c, QAbstractButton) and c.text())
        and not isinstance(c.parent(), (QComboBox, QAbstractSpinBox, QTabWidget))
    ]
    assert unnamed == []


def test_composer_keeps_its_draft_in_the_window_state(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = WindowState.load(path)
    state.set("draft", "from last time")
    composer = Composer(state)
    qtbot.addWidget(composer)
    assert composer.text() == "from last time"
    composer.set_text("a new thought")
    composer.save_draft()
    assert WindowState.load(path)["draft"] == "a new thought"
    assert not (tmp_path / "settings.json").exists()
