"""The consent dialog: exactly what would leave the computer, to whom, and Send or Cancel.

The dialog shows the provider and model and the exact messages (rebuilt as the user changes the
options: the whole conversation or only the latest question, personal details redacted or
not). What it shows is what is sent: ``messages()`` after Send is the list the provider gets.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.consent import Preview, build_preview
from assistant.engine.base import ChatMessage
from assistant.engine.cloud import CloudEndpoint

_ROLES = {"system": "System prompt", "user": "You", "assistant": "Assistant"}


def preview_text(preview: Preview) -> str:
    """The messages as the dialog lists them: each under its role, nothing left out."""
    parts = [f"── {_ROLES.get(m.role, m.role)} ──\n{m.content}" for m in preview.messages]
    return "\n\n".join(parts)


class ConsentDialog(QDialog):
    """Ask before anything is sent to a cloud model.

    ``context`` is the conversation up to and including the question to ask about;
    ``providers`` the cloud providers to choose from (the first is preselected unless
    ``chosen`` names another). After ``accept()`` (the Send button), ``messages()``,
    ``provider()`` and ``allow_always()`` say what the user agreed to.
    """

    def __init__(
        self,
        context: list[ChatMessage],
        providers: list[CloudEndpoint],
        *,
        chosen: str = "",
        latest_only: bool = False,
        redact: bool = True,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Send to a cloud model?")
        self.setAccessibleName("Send to a cloud model")
        self.setMinimumSize(560, 480)
        self._context = list(context)
        self._providers = list(providers)
        self._preview = Preview([])

        intro = QLabel(
            "Nothing has been sent yet. If you press <b>Send</b>, exactly the text below leaves "
            "this computer and goes to the provider you choose, under your own API key. The "
            "local answer stays; the cloud answer is added after it."
        )
        intro.setWordWrap(True)

        self.provider_box = QComboBox()
        self.provider_box.setAccessibleName("Cloud provider")
        for endpoint in self._providers:
            self.provider_box.addItem(f"{endpoint.display_name} — {endpoint.model}", endpoint.name)
        index = self.provider_box.findData(chosen) if chosen else 0
        self.provider_box.setCurrentIndex(max(index, 0))
        self.destination = QLabel()
        self.destination.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.destination.setAccessibleName("Where it is sent")

        self.latest_only_box = QCheckBox("Send only the latest question, not the conversation")
        self.latest_only_box.setChecked(latest_only)
        self.redact_box = QCheckBox(
            "Redact e-mail addresses, phone numbers, keys and file paths first"
        )
        self.redact_box.setChecked(redact)
        self.allow_box = QCheckBox(
            "Allow this provider in this conversation from now on (no more previews)"
        )

        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setAccessibleName("Exactly what will be sent")
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        self.buttons = QDialogButtonBox()
        self.send_button = self.buttons.addButton("Send", QDialogButtonBox.ButtonRole.AcceptRole)
        self.send_button.setAccessibleName("Send to the cloud model")
        cancel = self.buttons.addButton(QDialogButtonBox.StandardButton.Cancel)
        cancel.setAccessibleName("Cancel, send nothing")
        cancel.setDefault(True)  # Enter alone never sends
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)

        form = QFormLayout()
        form.addRow("Provider:", self.provider_box)
        form.addRow("Sent to:", self.destination)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.latest_only_box)
        layout.addWidget(self.redact_box)
        layout.addWidget(QLabel("Exactly what will be sent:"))
        layout.addWidget(self.text, 1)
        layout.addWidget(self.summary)
        layout.addWidget(self.allow_box)
        layout.addWidget(self.buttons)

        self.provider_box.currentIndexChanged.connect(self._on_options_changed)
        self.latest_only_box.toggled.connect(self._on_options_changed)
        self.redact_box.toggled.connect(self._on_options_changed)
        self._on_options_changed()
        cancel.setFocus()

    def provider(self) -> str:
        return str(self.provider_box.currentData() or "")

    def endpoint(self) -> CloudEndpoint | None:
        name = self.provider()
        return next((e for e in self._providers if e.name == name), None)

    def messages(self) -> list[ChatMessage]:
        """Exactly what the dialog shows, and what is sent."""
        return list(self._preview.messages)

    def preview(self) -> Preview:
        return self._preview

    def allow_always(self) -> bool:
        return self.allow_box.isChecked()

    def latest_only(self) -> bool:
        return self.latest_only_box.isChecked()

    def redact(self) -> bool:
        return self.redact_box.isChecked()

    @Slot()
    def _on_options_changed(self) -> None:
        self._preview = build_preview(
            self._context,
            latest_only=self.latest_only_box.isChecked(),
            redact_details=self.redact_box.isChecked(),
        )
        endpoint = self.endpoint()
        if endpoint is not None:
            self.destination.setText(f"{endpoint.model} at {endpoint.base_url}")
        self.text.setPlainText(preview_text(self._preview))
        notes = [
            f"{len(self._preview.messages)} message(s), {self._preview.characters} characters."
        ]
        if self._preview.left_out:
            notes.append(f"{self._preview.left_out} earlier message(s) left out.")
        if self._preview.redacted:
            found = ", ".join(f"{n} {kind}" for kind, n in self._preview.redacted.items())
            notes.append(f"Redacted: {found}.")
        self.summary.setText(" ".join(notes))
        self.send_button.setEnabled(endpoint is not None and bool(self._preview.messages))
