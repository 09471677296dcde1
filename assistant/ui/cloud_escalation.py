"""Cloud models in the chat window: the mode, "Ask a cloud model…", the advisor, the ledger.

``CloudEscalation`` attaches to a ``MainWindow`` and adds:

- in the header, always visible, what may leave the machine from this conversation ("Local
  only" / "Cloud: ask each time" / "Cloud allowed: PROVIDER"), as a menu to change it;
- "Ask a cloud model…" (header button, Cloud menu, Ctrl+Shift+Return): the conversation up to
  its latest question goes to the consent dialog, and only after Send to the provider, on the
  runner's remote lane (the local model stays loaded). The local answer is kept; the cloud
  answer follows it, marked with its provider;
- after a local answer, a hint when the small model looks out of its depth (never a send);
- the ledger of every cloud request, recorded just before it is sent (on the worker, with
  exactly the messages sent) and completed when the answer ends; viewable and exportable.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.chat import conversation
from assistant.chat.consent import (
    MODE_LABELS,
    Mode,
    advise,
    build_preview,
    context_until_question,
    decide,
    status_text,
)
from assistant.chat.history import Message
from assistant.chat.ledger import CloudLedger
from assistant.cloud import register_cloud
from assistant.engine.base import ChatMessage
from assistant.engine.cloud import CloudEndpoint
from assistant.errors import AssistantError
from assistant.ui.cloud_settings import CloudSettingsDialog
from assistant.ui.consent import ConsentDialog
from assistant.ui.worker import AnswerRequest

if TYPE_CHECKING:
    from assistant.ui.main_window import MainWindow

log = logging.getLogger(__name__)


@dataclass
class _Sent:
    """A cloud request of this window: where its ledger entry is."""

    conversation_id: int
    entry: int | None = None


class AdvisorBar(QFrame):
    """ "The local model may be out of its depth (why). Ask a cloud model…" — a hint only."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("AdvisorBar")
        self.setAccessibleName("Suggestion")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.ask_button = QPushButton("Ask a cloud model…")
        self.ask_button.setAccessibleName("Ask a cloud model about this question")
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss suggestion")
        close.clicked.connect(self.hide)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(16, 4, 16, 4)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.ask_button)
        layout.addWidget(close)
        self.hide()

    def suggest(self, reason: str) -> None:
        self.label.setText(f"A larger cloud model might answer this better: {reason}")
        self.setAccessibleDescription(self.label.text())
        self.show()


class CloudEscalation(QObject):
    """The cloud side of one chat window (see the module docstring)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        # The window is reached through Qt's parent link, never a Python attribute: a
        # reference cycle would keep a closed window (and its widgets) alive until the
        # garbage collector happens to run.
        self.services = window.services
        self.settings = window.settings
        self.ledger: CloudLedger = self.services.ledger
        self.config = self.services.cloud
        self.runner = window.runner
        self._sent: dict[int, _Sent] = {}
        self._pending_mode: tuple[Mode, str | None] = ("local", None)
        self.consent: ConsentDialog | None = None
        self.settings_dialog: CloudSettingsDialog | None = None

        self.mode_button = QToolButton()
        self.mode_button.setObjectName("CloudMode")
        self.mode_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.mode_button.setAccessibleName("What may leave this computer")
        self.mode_button.setToolTip("Whether this conversation may be sent to a cloud model")
        self.mode_menu = QMenu(self.mode_button)
        self.mode_button.setMenu(self.mode_menu)
        self.mode_menu.aboutToShow.connect(self._on_mode_menu_about_to_show)
        self.ask_button = QToolButton()
        self.ask_button.setText("Ask a cloud model…")
        self.ask_button.setAccessibleName("Ask a cloud model about the latest question")
        self.ask_button.setToolTip("Preview exactly what would be sent, then send it or not")
        self.ask_button.clicked.connect(self.ask_cloud)
        self.advisor = AdvisorBar()
        self.advisor.ask_button.clicked.connect(self.ask_cloud)

        header = window.header_layout
        header.addWidget(self.mode_button)
        header.addWidget(self.ask_button)
        pane = window.pane_layout
        pane.insertWidget(pane.indexOf(window.composer), self.advisor)

        self.ask_action = QAction("&Ask a cloud model…", window)
        self.ask_action.setShortcut(QKeySequence("Ctrl+Shift+Return"))
        self.ask_action.triggered.connect(self.ask_cloud)
        window.addAction(self.ask_action)
        self.settings_action = QAction("Cloud &models…", window)
        self.settings_action.triggered.connect(self.open_settings)
        self.ledger_action = QAction("What was &sent…", window)
        self.ledger_action.triggered.connect(self.open_ledger)
        menu = window.menuBar().addMenu("&Cloud")
        for action in (self.ask_action, self.settings_action, self.ledger_action):
            menu.addAction(action)

        runner = self.runner
        runner.answerFinished.connect(self._on_answer_finished)
        runner.answerFailed.connect(self._on_answer_failed)
        runner.questionSaved.connect(self._on_question_saved)
        runner.requestEnded.connect(self._on_request_ended)
        window.sidebar.conversationSelected.connect(self._on_conversation_changed)
        window.sidebar.newChatRequested.connect(self._on_new_chat)
        window.new_chat_action.triggered.connect(self._on_new_chat)
        self.services.settingsChanged.connect(self._on_settings_changed)
        self.refresh()

    @property
    def window(self) -> MainWindow:
        return cast("MainWindow", self.parent())

    # --- what may leave the machine ------------------------------------------------------------

    def _endpoints(self) -> list[CloudEndpoint]:
        return self.config.list()

    def current_mode(self) -> tuple[Mode, str | None]:
        conversation_id = self.window.chat.conversation_id
        if conversation_id is None:
            return self._pending_mode
        return self.ledger.mode(conversation_id)

    def set_mode(self, mode: Mode, provider: str | None = None) -> None:
        conversation_id = self.window.chat.conversation_id
        if conversation_id is None:
            self._pending_mode = (mode, provider)  # applied when the chat is saved
        else:
            self.ledger.set_mode(conversation_id, mode, provider)
        self.refresh()

    def refresh(self) -> None:
        """Show the mode of the conversation on screen, and what can be done."""
        enabled = bool(self.settings["cloud_enabled"])
        mode, provider = self.current_mode()
        label = ""
        if provider:
            found = self.config.find(provider)
            label = found.display_name if found else provider
        text = status_text(enabled, mode, label)
        if not enabled:
            text += " (cloud off)"
        # U+2601 is in the common UI fonts; a lock emoji is not (it shows as a box).
        self.mode_button.setText(text if text.startswith("Local") else "☁ " + text)
        self.mode_button.setAccessibleDescription(text)
        self.ask_button.setVisible(enabled)
        self.ask_action.setEnabled(enabled)
        if not enabled:
            self.advisor.hide()

    @Slot()
    def _on_mode_menu_about_to_show(self) -> None:
        menu = self.mode_menu
        menu.clear()
        enabled = bool(self.settings["cloud_enabled"])
        mode, provider = self.current_mode()
        choices: list[tuple[str, Mode, str | None]] = [
            (MODE_LABELS["local"], "local", None),
            (MODE_LABELS["ask"], "ask", None),
        ]
        choices += [
            (f"Cloud allowed: {e.display_name}", "allowed", e.name) for e in self._endpoints()
        ]
        for text, choice, name in choices:
            action = menu.addAction(text)
            action.setCheckable(True)
            action.setChecked(choice == mode and (choice != "allowed" or name == provider))
            action.setEnabled(enabled or choice == "local")
            action.triggered.connect(lambda _=False, c=choice, n=name: self.set_mode(c, n))
        menu.addSeparator()
        switch = menu.addAction("Turn cloud models off" if enabled else "Turn cloud models on…")
        switch.triggered.connect(self._on_switch_triggered)

    @Slot()
    def _on_switch_triggered(self) -> None:
        if self.settings["cloud_enabled"]:
            self.settings.update({"cloud_enabled": False})
        else:
            self.open_settings()

    @Slot(list)
    def _on_settings_changed(self, keys: list[str]) -> None:
        if "cloud_enabled" in keys:
            self.refresh()

    @Slot(int)
    def _on_conversation_changed(self, _conversation_id: int) -> None:
        self.advisor.hide()
        self.refresh()

    @Slot()
    def _on_new_chat(self) -> None:
        self._pending_mode = ("local", None)
        self.advisor.hide()
        self.refresh()

    @Slot(int, int, int)
    def _on_question_saved(self, _rid: int, conversation_id: int, _message_id: int) -> None:
        if conversation_id == self.window.chat.conversation_id and self._pending_mode[0] != "local":
            if self.ledger.mode(conversation_id)[0] == "local":
                self.ledger.set_mode(conversation_id, *self._pending_mode)
            self._pending_mode = ("local", None)
        self.refresh()

    # --- asking ----------------------------------------------------------------------------------

    @Slot()
    def ask_cloud(self) -> int | None:
        """Ask a cloud model about the conversation's latest question, with the user's consent.
        Returns the request id, or ``None`` when nothing was sent."""
        window = self.window
        self.advisor.hide()
        conversation_id = window.chat.conversation_id
        if window.busy:
            window.show_problem(
                "An answer is still being written.",
                "Ask a cloud model once it is finished, or stop it first.",
            )
            return None
        if not self.settings["cloud_enabled"]:
            self._offer_settings("Cloud models are switched off, so nothing can be sent.")
            return None
        endpoints = self._endpoints()
        if not endpoints:
            self._offer_settings("No cloud provider is set up yet.")
            return None
        try:
            context = (
                conversation.context_for(window.history, conversation_id)
                if conversation_id is not None
                else []
            )
        except AssistantError as exc:
            window.show_problem(exc.message, exc.hint)
            return None
        if conversation_id is None or not any(m.role == "user" for m in context):
            window.show_problem(
                "There is no question to ask a cloud model about yet.",
                "Ask it here first; then ask a cloud model for a second answer.",
            )
            return None
        mode, allowed_for = self.ledger.mode(conversation_id)
        if mode == "local":
            if not self._allow_asking():
                return None
            self.ledger.set_mode(conversation_id, "ask")
            mode = "ask"
            self.refresh()
        chosen = allowed_for or str(self.settings["cloud_provider"] or "") or endpoints[0].name
        question = context_until_question(context)
        verdict = decide(True, mode, chosen, allowed_for)
        if verdict.decision == "blocked":
            window.show_problem(verdict.reason)
            return None
        if verdict.decision == "send":
            preview = build_preview(
                question,
                latest_only=bool(self.settings["cloud_latest_only"]),
                redact_details=bool(self.settings["cloud_redact"]),
            )
            endpoint = self.config.find(chosen)
            if endpoint is None:
                return None
            return self._send(conversation_id, endpoint, preview.messages)
        self._open_consent(conversation_id, question, endpoints, chosen)
        return None  # sent, if at all, when the user presses Send

    def _allow_asking(self) -> bool:
        answer = QMessageBox.question(
            self.window,
            "Local only",
            "This conversation is Local only: nothing in it leaves this computer.\n\n"
            "Allow asking cloud models in it? You will see exactly what would be sent, "
            "and decide, every time.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _open_consent(
        self,
        conversation_id: int,
        question: list[ChatMessage],
        endpoints: list[CloudEndpoint],
        chosen: str,
    ) -> None:
        dialog = ConsentDialog(
            question,
            endpoints,
            chosen=chosen,
            latest_only=bool(self.settings["cloud_latest_only"]),
            redact=bool(self.settings["cloud_redact"]),
            parent=self.window,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._on_consent_given(conversation_id, dialog))
        dialog.finished.connect(self._on_consent_closed)
        self.consent = dialog
        dialog.open()

    @Slot()
    def _on_consent_closed(self) -> None:
        self.consent = None

    def _on_consent_given(self, conversation_id: int, dialog: ConsentDialog) -> None:
        endpoint = dialog.endpoint()
        if endpoint is None:
            return
        self.settings.update(
            {
                "cloud_provider": endpoint.name,
                "cloud_latest_only": dialog.latest_only(),
                "cloud_redact": dialog.redact(),
            }
        )
        if dialog.allow_always():
            self.ledger.set_mode(conversation_id, "allowed", endpoint.name)
            self.refresh()
        self._send(conversation_id, endpoint, dialog.messages())

    def _send(
        self, conversation_id: int, endpoint: CloudEndpoint, messages: list[ChatMessage]
    ) -> int | None:
        """Send exactly ``messages``; the ledger entry is written on the worker just before."""
        window = self.window
        if window.busy:
            return None
        if endpoint.name not in self.services.providers:  # added since the app started
            register_cloud(self.services.providers, self.config, self.services.cloud_allowed)
        sent = _Sent(conversation_id)
        exact = list(messages)

        def prepare(_built: list[ChatMessage]) -> list[ChatMessage]:
            # Runs on the remote worker: what the dialog showed, not what the history holds now.
            sent.entry = self.ledger.start(
                conversation_id, endpoint.name, endpoint.model, endpoint.base_url, exact
            )
            return exact

        # No question: the answer is added after the local one, which stays.
        request = AnswerRequest(
            conversation_id,
            self.settings.generation_settings(),
            provider=endpoint.name,
            model=endpoint.model,
            prepare=prepare,
            client="cloud",
        )
        rid = self.runner.submit(request)
        self._sent[rid] = sent
        window.follow_request(rid, f"{endpoint.model} ({endpoint.display_name}, cloud)")
        window.status_label.setText(f"Sent to {endpoint.display_name}; waiting for its answer…")
        return rid

    # --- the answers -----------------------------------------------------------------------------

    @Slot(int, int, int)
    def _on_answer_finished(self, rid: int, conversation_id: int, message_id: int) -> None:
        sent = self._sent.get(rid)
        message = next((m for m in self._messages(conversation_id) if m.id == message_id), None)
        if sent is not None:
            if sent.entry is not None and message is not None:
                self.ledger.finish(
                    sent.entry,
                    status=message.status,
                    received=message.text,
                    stats=message.stats,
                    message_id=message_id,
                )
            return
        self._maybe_advise(conversation_id, message)

    @Slot(int, int, str, str, str, bool)
    def _on_answer_failed(
        self, rid: int, _conversation_id: int, message: str, *_rest: object
    ) -> None:
        sent = self._sent.get(rid)
        if sent is not None and sent.entry is not None:
            self.ledger.finish(sent.entry, status="error", error=message)

    @Slot(int)
    def _on_request_ended(self, rid: int) -> None:
        self._sent.pop(rid, None)

    def _messages(self, conversation_id: int) -> list[Message]:
        try:
            return self.window.history.messages(conversation_id)
        except AssistantError:
            return []

    def _maybe_advise(self, conversation_id: int, message: Message | None) -> None:
        """After a local answer in the conversation on screen: suggest the cloud, maybe."""
        if (
            message is None
            or conversation_id != self.window.chat.conversation_id
            or not self.settings["cloud_enabled"]
            or not self.settings["cloud_advisor"]
            or message.provider not in (None, "local")
            or not self._endpoints()
        ):
            return
        messages = self._messages(conversation_id)
        question = next((m.text for m in reversed(messages) if m.role == "user"), "")
        advice = advise(
            question,
            message.text,
            message.stats,
            context_size=int(self.settings["context_size"]),
        )
        if advice is not None:
            self.advisor.suggest(advice.reason)

    # --- other windows ---------------------------------------------------------------------------

    def _offer_settings(self, message: str) -> None:
        answer = QMessageBox.question(
            self.window,
            "Cloud models",
            f"{message}\n\nOpen the cloud settings?",
            QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Open:
            self.open_settings()

    @Slot()
    def open_settings(self) -> CloudSettingsDialog:
        dialog = CloudSettingsDialog(self.config, self.settings, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.providersChanged.connect(self._on_providers_changed)
        dialog.finished.connect(self.refresh)
        self.settings_dialog = dialog
        dialog.open()
        return dialog

    @Slot()
    def _on_providers_changed(self) -> None:
        register_cloud(self.services.providers, self.config, self.services.cloud_allowed)
        self.refresh()

    @Slot()
    def open_ledger(self) -> LedgerDialog:
        dialog = LedgerDialog(self.ledger, self.window)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog


class LedgerDialog(QDialog):
    """Every request sent to a cloud model: when, where, how much; exportable."""

    COLUMNS = ("When", "Provider", "Model", "Chat", "Sent (chars)", "Received", "Tokens", "Status")

    def __init__(self, ledger: CloudLedger, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("What was sent to cloud models")
        self.setAccessibleName("Cloud ledger")
        self.ledger = ledger
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setAccessibleName("Cloud requests")
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        entries = ledger.entries()
        for row, e in enumerate(entries):
            self.table.insertRow(row)
            tokens = (
                f"{e.prompt_tokens or 0} in / {e.completion_tokens or 0} out"
                if e.prompt_tokens or e.completion_tokens
                else ""
            )
            values = (
                e.created_at[:19].replace("T", " "),
                e.provider,
                e.model,
                str(e.conversation_id or ""),
                str(e.sent_chars),
                str(e.received_chars),
                tokens,
                e.status + (f": {e.error}" if e.error else ""),
            )
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        empty = QLabel("Nothing has been sent to a cloud model." if not entries else "")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        export = buttons.addButton("Export…", QDialogButtonBox.ButtonRole.ActionRole)
        export.setAccessibleName("Export the ledger")
        export.clicked.connect(self._on_export_clicked)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        if not entries:
            layout.addWidget(empty)
        layout.addWidget(buttons)
        self.resize(820, 360)

    def export_to(self, path: Path) -> None:
        if path.suffix.lower() == ".csv":
            path.write_text(self.ledger.export_csv(), encoding="utf-8")
        else:
            text = json.dumps(self.ledger.export_json(), indent=2, ensure_ascii=False)
            path.write_text(text, encoding="utf-8")

    @Slot()
    def _on_export_clicked(self) -> None:
        name, _filter = QFileDialog.getSaveFileName(
            self, "Export the cloud ledger", "cloud-ledger.json", "JSON (*.json);;CSV (*.csv)"
        )
        if name:
            try:
                self.export_to(Path(name))
            except OSError as exc:
                QMessageBox.warning(self, "Export failed", f"Could not write {name}: {exc}")
