"""The rows of Settings → Local API that no setting declares: the address and the token.

The switch, the port and "keep in history" come from the schema like every setting; a program
also needs the address to send to and the token to send, shown here to copy.
"""

from __future__ import annotations

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox

from assistant.secrets import get_api_token

API_GROUP = "Local API"
NO_TOKEN_YET = "Made when you turn the API on"


def api_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v1"


class ApiRows:
    """Adds the address and token rows to ``form``; the address follows ``port``'s box."""

    def __init__(self, form: QFormLayout, port: QSpinBox) -> None:
        self.address = QLineEdit(api_url(port.value()))
        self.address.setReadOnly(True)
        self.address.setAccessibleName("Local API address")
        port.valueChanged.connect(lambda value: self.address.setText(api_url(value)))

        self.token = QLineEdit(get_api_token() or "")
        self.token.setReadOnly(True)
        self.token.setPlaceholderText(NO_TOKEN_YET)
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setAccessibleName("Local API token")
        self.show_button = QPushButton("Show")
        self.show_button.setCheckable(True)
        self.show_button.setAccessibleName("Show the local API token")
        self.show_button.toggled.connect(self._on_show_toggled)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setAccessibleName("Copy the local API token")
        self.copy_button.setEnabled(bool(self.token.text()))
        self.copy_button.clicked.connect(self._on_copy_clicked)

        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.show_button)
        token_row.addWidget(self.copy_button)
        form.addRow("Address", self.address)
        form.addRow("Token", token_row)
        hint = QLabel(
            "Programs on this computer use the address as the OpenAI base URL and the token as "
            "the API key. Nothing outside this computer can connect."
        )
        hint.setObjectName("EmptyHint")
        hint.setWordWrap(True)
        form.addRow("", hint)

    def _on_show_toggled(self, shown: bool) -> None:
        mode = QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
        self.token.setEchoMode(mode)
        self.show_button.setText("Hide" if shown else "Show")

    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.token.text())
