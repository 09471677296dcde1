"""The cloud settings dialog: the global switch, providers, their keys, "Test connection".

Keys go to the OS keyring and are never shown again, only masked. Where no keyring works the
dialog says so and offers to hold the key in memory until the app quits; it never writes a key
to a file. The test runs off the UI thread and sends no conversation (it lists the models).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from assistant import secrets
from assistant.cloud import PRESETS, CloudConfig, make_endpoint, open_provider
from assistant.engine.cloud import CLOUD_KINDS, mask_key
from assistant.errors import AssistantError, SecretStoreError
from assistant.settings import Settings
from assistant.ui.background import Mailbox, run_in_thread

log = logging.getLogger(__name__)

CUSTOM = "custom"


class _TestRunner(QObject):
    """Runs "Test connection" on a plain thread and reports back on the UI thread (through a
    mailbox: the thread never touches a Qt object, so closing the dialog mid-test is safe).

    Signals:
        done(bool, str): whether it worked, and what to tell the user.
    """

    done = Signal(bool, str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._mailbox = Mailbox(self)

    def start(self, config: CloudConfig, name: str, settings: Settings) -> None:
        allowed = bool(settings["cloud_enabled"])  # the global switch covers the test too
        run_in_thread(
            self._mailbox,
            lambda: self._run(config, name, allowed),
            self._on_outcome,
            name="cloud-test",
        )

    def _on_outcome(self, outcome: object) -> None:
        if isinstance(outcome, tuple):
            self.done.emit(*outcome)
        else:  # a bug in the test itself; logged with its traceback
            log.error("Testing the connection failed", exc_info=outcome)  # type: ignore[arg-type]
            self.done.emit(False, f"Something went wrong: {type(outcome).__name__}")

    @staticmethod
    def _run(config: CloudConfig, name: str, allowed: bool) -> tuple[bool, str]:
        try:
            provider = open_provider(config, name, allowed=lambda: allowed)
            try:
                models = provider.test_connection()
            finally:
                provider.close()
        except AssistantError as exc:
            return False, exc.full_text()
        wanted = provider.model_name
        note = "" if not models or wanted in models else f" {wanted} is not among them."
        return True, f"Connected: the key works; {len(models)} model(s) offered.{note}"


class CloudSettingsDialog(QDialog):
    """Set up cloud providers. Changes are saved at once (the switch, each provider, each key).

    Signals:
        providersChanged(): a provider was added, changed or removed (re-register them).
    """

    providersChanged = Signal()

    def __init__(
        self, config: CloudConfig, settings: Settings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Cloud models")
        self.setAccessibleName("Cloud models")
        self.config = config
        self.settings = settings
        self._tester = _TestRunner(self)
        self._tester.done.connect(self._on_test_done)

        self.enabled_box = QCheckBox(
            "Allow sending questions to cloud models (off: everything stays local)"
        )
        self.enabled_box.setChecked(bool(settings["cloud_enabled"]))
        self.enabled_box.toggled.connect(self._on_enabled_toggled)
        note = QLabel(
            "A cloud model is asked only when you ask for it, after you have seen exactly what "
            "will be sent. Keys are kept in the system keyring."
        )
        note.setWordWrap(True)

        self.list = QListWidget()
        self.list.setAccessibleName("Cloud providers")
        self.list.currentItemChanged.connect(self._on_selected)

        self.preset_box = QComboBox()
        self.preset_box.setAccessibleName("Preset")
        for key, preset in PRESETS.items():
            self.preset_box.addItem(preset.label, key)
        self.preset_box.addItem("Custom (any OpenAI-compatible server)", CUSTOM)
        self.preset_box.activated.connect(self._on_preset_chosen)
        self.name_edit = QLineEdit()
        self.name_edit.setAccessibleName("Name")
        self.kind_box = QComboBox()
        self.kind_box.setAccessibleName("API kind")
        for kind in CLOUD_KINDS:
            self.kind_box.addItem("OpenAI-compatible" if kind == "openai" else "Anthropic", kind)
        self.url_edit = QLineEdit()
        self.url_edit.setAccessibleName("Base URL")
        self.url_edit.setPlaceholderText("https://api.example.com/v1")
        self.model_edit = QLineEdit()
        self.model_edit.setAccessibleName("Model")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setAccessibleName("API key")
        self.key_state = QLabel()
        self.key_state.setAccessibleName("Stored key")

        form = QFormLayout()
        form.addRow("Preset:", self.preset_box)
        form.addRow("Name:", self.name_edit)
        form.addRow("API:", self.kind_box)
        form.addRow("Base URL:", self.url_edit)
        form.addRow("Model:", self.model_edit)
        form.addRow("API key:", self.key_edit)
        form.addRow("", self.key_state)

        self.save_button = QPushButton("Save provider")
        self.save_button.clicked.connect(self._on_save_clicked)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setAccessibleName("Remove provider and its key")
        self.remove_button.clicked.connect(self._on_remove_clicked)
        self.test_button = QPushButton("Test connection")
        self.test_button.clicked.connect(self._on_test_clicked)
        self.new_button = QPushButton("New…")
        self.new_button.setAccessibleName("New provider")
        self.new_button.clicked.connect(self._on_new_clicked)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Cloud settings status")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        row = QHBoxLayout()
        for button in (self.new_button, self.save_button, self.test_button, self.remove_button):
            row.addWidget(button)
        right = QVBoxLayout()
        right.addLayout(form)
        right.addLayout(row)
        right.addWidget(self.status)
        right.addStretch(1)
        body = QHBoxLayout()
        body.addWidget(self.list, 1)
        body.addLayout(right, 2)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.enabled_box)
        layout.addWidget(note)
        layout.addLayout(body, 1)
        layout.addWidget(close)
        self.resize(760, 420)
        self._reload()

    # --- the list ----------------------------------------------------------------------------

    def _reload(self, select: str | None = None) -> None:
        self.list.clear()
        for endpoint in self.config.list():
            item = QListWidgetItem(f"{endpoint.display_name} ({endpoint.name})")
            item.setData(Qt.ItemDataRole.UserRole, endpoint.name)
            self.list.addItem(item)
            if endpoint.name == select:
                self.list.setCurrentItem(item)
        if self.list.currentItem() is None:
            if self.list.count():
                self.list.setCurrentRow(0)
            else:
                self._on_new_clicked()

    def _selected(self) -> str | None:
        item = self.list.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_selected(self, current: QListWidgetItem | None, _previous: object) -> None:
        if current is None:
            return
        endpoint = self.config.find(str(current.data(Qt.ItemDataRole.UserRole)))
        if endpoint is None:
            return
        self.name_edit.setText(endpoint.name)
        self.kind_box.setCurrentIndex(self.kind_box.findData(endpoint.kind))
        self.url_edit.setText(endpoint.base_url)
        self.model_edit.setText(endpoint.model)
        preset = self.preset_box.findData(endpoint.name)
        self.preset_box.setCurrentIndex(preset if preset >= 0 else self.preset_box.findData(CUSTOM))
        self.key_edit.clear()
        self._show_key_state(endpoint.name)
        self.status.clear()

    def _show_key_state(self, name: str) -> None:
        source = secrets.cloud_key_source(name)
        key = secrets.get_cloud_key(name)
        where = {
            "keyring": "in the system keyring",
            "session": "in memory until the app quits",
        }.get(source or "", f"from {source}" if source else "")
        self.key_state.setText(
            f"Stored: {mask_key(key)} {where}".strip() if key else "No key stored"
        )
        self.key_edit.setPlaceholderText("Leave empty to keep the stored key" if key else "")

    # --- actions -----------------------------------------------------------------------------

    @Slot(bool)
    def _on_enabled_toggled(self, enabled: bool) -> None:
        self.settings.update({"cloud_enabled": enabled})

    @Slot()
    def _on_new_clicked(self) -> None:
        self.list.setCurrentRow(-1)
        self.preset_box.setCurrentIndex(0)
        self._on_preset_chosen(0)
        self.key_edit.clear()
        self.key_state.setText("No key stored")
        self.name_edit.setFocus()

    @Slot(int)
    def _on_preset_chosen(self, index: int) -> None:
        key = self.preset_box.itemData(index)
        if key == CUSTOM:
            self.name_edit.setText("custom")
            self.url_edit.clear()
            self.model_edit.clear()
            self.kind_box.setCurrentIndex(0)
            return
        preset = PRESETS[str(key)]
        self.name_edit.setText(str(key))
        self.kind_box.setCurrentIndex(self.kind_box.findData(preset.kind))
        self.url_edit.setText(preset.base_url)
        self.model_edit.setText(preset.model)

    @Slot()
    def _on_save_clicked(self) -> bool:
        """Save the form (and the key, if one was typed); return whether it worked."""
        try:
            preset = PRESETS.get(str(self.preset_box.currentData()))
            endpoint = make_endpoint(
                self.name_edit.text().strip(),
                str(self.kind_box.currentData()),
                self.url_edit.text(),
                self.model_edit.text(),
                preset.label if preset and self.name_edit.text().strip() in PRESETS else "",
                preset.stream_usage if preset else True,
            )
            self.config.save(endpoint)
        except AssistantError as exc:
            self.status.setText(exc.full_text())
            return False
        self.providersChanged.emit()
        saved = f"Saved {endpoint.display_name}."
        key = self.key_edit.text().strip()
        if key:
            saved += " " + self._store_key(endpoint.name, key)
            self.key_edit.clear()
        self._reload(select=endpoint.name)
        self.status.setText(saved)
        return True

    def _store_key(self, name: str, key: str) -> str:
        try:
            secrets.set_cloud_key(name, key)
        except SecretStoreError as exc:
            answer = QMessageBox.question(
                self,
                "No keyring",
                f"{exc.message}\n\nKeep the key in memory until the app quits? You will be "
                "asked for it again next time. It is never written to a file.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return "The key was not stored."
            secrets.hold_cloud_key_for_session(name, key)
            return "The key is held in memory until the app quits."
        return "The key is in the system keyring."

    @Slot()
    def _on_remove_clicked(self) -> None:
        name = self._selected()
        if name is None:
            return
        try:
            self.config.remove(name)
        except AssistantError as exc:
            self.status.setText(exc.full_text())
            return
        self.providersChanged.emit()
        self._reload()
        self.status.setText(f"Removed {name} and its key.")

    @Slot()
    def _on_test_clicked(self) -> None:
        unsaved = self.key_edit.text().strip() or self._selected() != self.name_edit.text().strip()
        if unsaved and not self._on_save_clicked():
            return
        name = self._selected()
        if name is None:
            self.status.setText("Save the provider first.")
            return
        self.test_button.setEnabled(False)
        self.status.setText(f"Testing {name}… (no conversation is sent)")
        self._tester.start(self.config, name, self.settings)

    @Slot(bool, str)
    def _on_test_done(self, ok: bool, text: str) -> None:
        self.test_button.setEnabled(True)
        self.status.setText(("✓ " if ok else "✗ ") + text)
