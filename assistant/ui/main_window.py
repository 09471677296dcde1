"""The chat window: the model picker, the conversations, the chat and the message box.

The window only shows things and forwards requests. Everything it uses comes from the app's
``AppServices``, which outlive it: answers and model loads go to the shared ``ModelRunner`` (the
window follows only the requests it submitted), history and settings come from the core, and the
model manager and welcome screen (another module each) are opened on demand.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QGuiApplication,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant import APP_NAME, __version__
from assistant.chat.history import Message
from assistant.errors import AssistantError
from assistant.models.store import InstalledModel
from assistant.settings import RELOAD_KEYS
from assistant.ui import shortcuts
from assistant.ui.chat_view import ChatView
from assistant.ui.composer import Composer
from assistant.ui.errors import ErrorBanner, FixAction
from assistant.ui.model_picker import ModelPicker
from assistant.ui.services import AppServices
from assistant.ui.sidebar import Sidebar
from assistant.ui.theme import apply_theme as style_application
from assistant.ui.theme import is_dark
from assistant.ui.window_chats import ChatListSection
from assistant.ui.window_geometry import clamp_minimum, fit_window, keep_inside_screen
from assistant.ui.window_models import ModelsSection

if TYPE_CHECKING:
    from assistant.ui.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)

FIRST_SIZE = QSize(1100, 760)
# The smallest window that still shows every control (header, chat, composer).
MINIMUM_SIZE = QSize(480, 360)
SIDEBAR_WIDTH = 260


class MainWindow(ModelsSection, ChatListSection, QMainWindow):
    """The chat window: one front end of the app's ``services``, which it does not own.
    Closing it frees nothing; quitting the app (``services.shutdown``) does."""

    def __init__(self, services: AppServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.settings = services.settings
        self.state = services.state
        self.history = services.history
        self.models = services.models
        self.paths = services.paths
        self.runner = services.runner
        self.model_manager: Any = None
        self.first_run: Any = None
        self._downloads_connected = False
        # The answer this window asked for and is showing; other front ends' requests are
        # not this window's business.
        self._request: int | None = None
        self._pending_question = ""
        self._focused_once = False
        # The conversation open when it was deleted, so undoing the delete opens it again.
        self._deleted_open: int | None = None
        # None: the chat list follows the window's width; True/False: the user's choice.
        self._sidebar_wanted: bool | None = None
        # What the model registry said at the last _reload_models(): read once per refresh.
        self._installed: list[InstalledModel] = []
        self._default_id: str | None = None
        self.setWindowTitle(APP_NAME)
        self.setAccessibleName(APP_NAME)
        clamp_minimum(self, MINIMUM_SIZE)
        fit_window(self, FIRST_SIZE)

        # Styled before the widgets exist, so each is polished once, in its final look.
        dark = self._style_application()
        self.sidebar = Sidebar(self.history)
        self.chat = ChatView(dark=dark)
        self.composer = Composer(self.state)
        self.banner = ErrorBanner()
        self.picker = ModelPicker()
        self.status_label = QLabel()
        self.status_label.setContentsMargins(10, 0, 0, 0)
        self.statusBar().addWidget(self.status_label, 1)
        self._build_layout()
        self._build_menus()
        self._connect()
        # Cloud models, only with the user's consent (issue 11): a module of its own.
        from assistant.ui.cloud_escalation import CloudEscalation

        self.cloud = CloudEscalation(self)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_color_scheme_changed)
        self._restore_geometry()
        self._reload_models()
        if self.runner.model_id is None:
            self._load_default_model()
        elif self.runner.ready:
            self.picker.show_ready()
        elif self.runner.loading:  # another window asked for it
            self._show_loading(self.runner.model_id, self.runner.load_fraction)

    # --- construction ----------------------------------------------------------------------

    def _build_layout(self) -> None:
        header = QFrame()
        header.setObjectName("ChatHeader")
        head = QHBoxLayout(header)
        head.setContentsMargins(8, 8, 16, 8)
        self.sidebar_button = QToolButton()
        self.sidebar_button.setText("☰")
        self.sidebar_button.setAccessibleName("Show or hide the chat list")
        self.sidebar_button.setToolTip(
            f"Show or hide the chat list ({shortcuts.native(shortcuts.TOGGLE_SIDEBAR)})"
        )
        self.sidebar_button.setAutoRaise(True)
        self.sidebar_button.clicked.connect(self.toggle_sidebar)
        head.addWidget(self.sidebar_button)
        head.addWidget(self.picker)
        head.addStretch(1)
        self.header_layout = head  # other parts add their controls here (cloud models)

        pane = QWidget()
        right = QVBoxLayout(pane)
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(0)
        right.addWidget(header)
        banner_row = QHBoxLayout()
        banner_row.setContentsMargins(16, 8, 16, 0)
        banner_row.addWidget(self.banner)
        right.addLayout(banner_row)
        right.addWidget(self.chat, 1)
        right.addWidget(self.composer)
        self.pane_layout = right

        self.splitter = splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(pane)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([SIDEBAR_WIDTH, max(1, self.width() - SIDEBAR_WIDTH)])
        splitter.setChildrenCollapsible(False)
        splitter.setHandleWidth(1)
        self.sidebar.setMinimumWidth(180)
        self.setCentralWidget(splitter)
        self.setTabOrder(self.composer.edit, self.composer.send_button)

    def _action(self, text: str, shortcut: str | QKeySequence, slot: Any) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even with the menu bar hidden
        return action

    def _build_menus(self) -> None:
        self.new_chat_action = self._action("&New chat", shortcuts.NEW_CHAT, self.new_chat)
        self.find_action = self._action(
            "&Search chats", shortcuts.SEARCH, self.sidebar.focus_search
        )
        self.settings_action = self._action("&Settings…", shortcuts.SETTINGS, self.open_settings)
        self.quit_action = self._action("&Quit", shortcuts.QUIT, self.services.quit)
        self.stop_action = self._action("S&top answer", shortcuts.STOP, self.stop_answer)
        self.stop_action.setEnabled(False)
        self.models_action = self._action("&Get models…", shortcuts.MODELS, self.open_model_manager)
        self.regenerate_action = self._action(
            "&Regenerate answer", shortcuts.REGENERATE, self.regenerate_last
        )
        self.continue_action = self._action(
            "C&ontinue answer", shortcuts.CONTINUE, self.continue_last
        )
        self.copy_last_action = self._action(
            "&Copy last answer", shortcuts.COPY_LAST, self.copy_last_answer
        )
        self.previous_chat_action = self._action(
            "&Previous chat", shortcuts.PREVIOUS_CHAT, self.previous_chat
        )
        self.next_chat_action = self._action("Ne&xt chat", shortcuts.NEXT_CHAT, self.next_chat)
        self.toggle_sidebar_action = self._action(
            "Chat &list", shortcuts.TOGGLE_SIDEBAR, self.toggle_sidebar
        )
        self.undo_delete_action = self._action(
            "&Undo delete", shortcuts.UNDO_DELETE, self.undo_delete
        )
        self.export_md_action = self._action(
            "&Export chat as Markdown…", shortcuts.EXPORT, self.export_markdown
        )
        self.export_json_action = QAction("Export chat as &JSON…", self)
        self.export_json_action.triggered.connect(self.export_json)
        self.import_action = self._action(
            "&Import chat…", shortcuts.IMPORT, self._on_import_triggered
        )
        self.shortcuts_action = self._action(
            "&Keyboard shortcuts", shortcuts.SHORTCUTS, self.show_shortcuts
        )
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.new_chat_action)
        file_menu.addSeparator()
        for action in (self.export_md_action, self.export_json_action, self.import_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menu.addMenu("&Edit")
        for action in (self.undo_delete_action, self.find_action, self.copy_last_action):
            edit_menu.addAction(action)
        edit_menu.addSeparator()
        for action in (self.stop_action, self.regenerate_action, self.continue_action):
            edit_menu.addAction(action)
        view_menu = menu.addMenu("&View")
        for action in (
            self.toggle_sidebar_action,
            self.previous_chat_action,
            self.next_chat_action,
        ):
            view_menu.addAction(action)
        menu.addMenu("&Models").addAction(self.models_action)
        about = QAction(f"&About {APP_NAME}", self)
        about.triggered.connect(self._on_about)
        help_menu = menu.addMenu("&Help")
        help_menu.addAction(self.shortcuts_action)
        help_menu.addAction(about)

    def _connect(self) -> None:
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.newChatRequested.connect(self.new_chat)
        self.sidebar.conversationDeleted.connect(self._on_conversation_deleted)
        self.sidebar.conversationRestored.connect(self._on_conversation_restored)
        self.sidebar.searchHitActivated.connect(self._on_search_hit)
        self.sidebar.problem.connect(self.show_problem)
        self.chat.regenerateRequested.connect(self._on_regenerate_requested)
        self.chat.editRequested.connect(self._on_edit_requested)
        self.chat.continueRequested.connect(self._on_continue_requested)
        self.chat.getModelsRequested.connect(self.open_model_manager)
        self.composer.sendRequested.connect(self._on_send_requested)
        self.composer.stopRequested.connect(self.stop_answer)
        self.picker.modelChosen.connect(self._on_model_chosen)
        self.picker.getModelsRequested.connect(self.open_model_manager)
        self.picker.cancelLoadRequested.connect(self.cancel_load)
        runner = self.runner
        runner.loadStarted.connect(self._on_load_started)
        runner.loadProgress.connect(self._on_load_progress)
        runner.loaded.connect(self._on_loaded)
        runner.loadFailed.connect(self._on_load_failed)
        runner.loadCancelled.connect(self._on_load_cancelled)
        self.services.engine_check.finished.connect(self._on_engine_checked)
        runner.answerStarted.connect(self._on_answer_started)
        runner.questionSaved.connect(self._on_question_saved)
        runner.textReceived.connect(self._on_text_received)
        runner.answerFinished.connect(self._on_answer_finished)
        runner.answerFailed.connect(self._on_answer_failed)
        runner.questionReturned.connect(self._on_question_returned)
        runner.requestEnded.connect(self._on_request_ended)
        self.services.settingsChanged.connect(self._on_settings_changed)
        self.services.shuttingDown.connect(self._on_shutting_down)

    # --- conversations ---------------------------------------------------------------------

    @Slot()
    def new_chat(self) -> None:
        self.composer.cancel_editing()
        self.chat.clear(None)
        self.sidebar.select(None)
        self.setWindowTitle(APP_NAME)
        self.composer.focus_input()

    @Slot(int)
    def open_conversation(self, conversation_id: int) -> None:
        if self.composer.editing_id is not None:
            self.composer.cancel_editing()
        try:
            conversation = self.history.get_conversation(conversation_id)
            messages = self.history.messages(conversation_id)
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            return
        writing = self.runner.request_for(conversation_id)
        self.chat.show_conversation(
            conversation_id,
            messages,
            streaming_text=self.runner.text_so_far(writing) if writing is not None else None,
            streaming_model=self.runner.model_id or "",
        )
        self.sidebar.select(conversation_id)
        self.setWindowTitle(f"{conversation.title or 'New chat'} — {APP_NAME}")

    @Slot(int, int)
    def _on_search_hit(self, conversation_id: int, message_id: int) -> None:
        self.open_conversation(conversation_id)
        if message_id >= 0:
            self.chat.scroll_to_message(message_id)

    def _update_empty_state(self) -> None:
        if self._installed:
            self.chat.set_empty_state(
                "How can I help?",
                "Everything runs on this computer: nothing you type leaves it.",
                offer_models=False,
            )
        else:
            self.chat.set_empty_state(
                f"Welcome to {APP_NAME}",
                "Get a model to start. It runs on this computer: nothing you type leaves it.",
                offer_models=True,
            )

    # --- asking ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """This window's answer is queued or being written (other front ends' do not count)."""
        return self._request is not None

    @Slot()
    def stop_answer(self) -> None:
        """Stop this window's answer (and no other front end's); its text so far is kept.
        The keyboard goes back to the message box (the Stop button is about to go)."""
        self.runner.stop(self._request)
        self.composer.focus_input()

    def _begin_request(self, request_id: int) -> None:
        self._request = request_id
        self._set_busy(True)

    def follow_request(self, request_id: int, answerer: str) -> None:
        """Show an answer another part of the window submitted (a cloud answer) as this
        window's own: streamed into the chat, stoppable, its failure shown."""
        self.banner.hide()
        self._pending_question = ""
        self._begin_request(request_id)
        self.chat.begin_answer(answerer)

    @Slot(str)
    def _on_send_requested(self, text: str) -> None:
        if self.busy:
            return
        if self.runner.model_id is None:
            self.show_problem(
                "No model is loaded, so there is nobody to answer yet.",
                "Pick a model at the top of the window."
                if self.has_models
                else "Get one with \u201cGet models\u2026\u201d at the top of the window.",
            )
            return
        generation = self.settings.generation_settings()
        editing = self.composer.editing_id
        if editing is not None and self.chat.conversation_id is not None:
            conversation_id = self.chat.conversation_id
            kept = self._messages_before(conversation_id, editing)
            self.chat.show_conversation(conversation_id, kept)
            self._begin_request(
                self.runner.edit_and_resend(
                    conversation_id, editing, text, generation, client="chat"
                )
            )
        else:
            target = self.chat.conversation_id or self._create_conversation()
            if target is None:
                return
            self._begin_request(self.runner.ask(target, text, generation, client="chat"))
        self.banner.hide()
        self._pending_question = text
        self.chat.add_question(text)
        self.chat.begin_answer(self.runner.model_id)
        self.composer.clear_sent()
        self.composer.focus_input()

    def _create_conversation(self) -> int | None:
        try:
            created = self.history.create_conversation(
                model=self.runner.model_id,
                system_prompt=self.settings["system_prompt"] or None,
                settings=self.settings.generation_settings().to_dict(),
            )
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            return None
        self.chat.conversation_id = created.id
        return created.id

    def _messages_before(self, conversation_id: int, message_id: int) -> list[Message]:
        messages = self.history.messages(conversation_id)
        index = next((i for i, m in enumerate(messages) if m.id == message_id), len(messages))
        return messages[:index]

    @Slot(int)
    def _on_regenerate_requested(self, message_id: int) -> None:
        conversation_id = self.chat.conversation_id
        if conversation_id is None or self.busy or self.runner.model_id is None:
            return
        kept = self._messages_before(conversation_id, message_id)
        self.chat.show_conversation(conversation_id, kept)
        self.chat.begin_answer(self.runner.model_id)
        self._pending_question = ""
        generation = self.settings.generation_settings()
        self._begin_request(
            self.runner.regenerate(conversation_id, message_id, generation, client="chat")
        )
        self.composer.focus_input()

    @Slot(int)
    def _on_continue_requested(self, message_id: int) -> None:
        """Ask the model to go on from where the answer stopped; it grows in place."""
        conversation_id = self.chat.conversation_id
        if conversation_id is None or self.busy or self.runner.model_id is None:
            return
        if self.chat.continue_answer(message_id, self.runner.model_id) is None:
            return
        self._pending_question = ""
        generation = self.settings.generation_settings()
        self._begin_request(
            self.runner.continue_answer(conversation_id, message_id, generation, client="chat")
        )
        self.composer.focus_input()

    @Slot(int, str)
    def _on_edit_requested(self, message_id: int, text: str) -> None:
        if not self.busy:
            self.composer.start_editing(message_id, text)

    def _set_busy(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.chat.set_busy(busy)
        self.stop_action.setEnabled(busy)
        if busy:
            self.status_label.setText("Writing…")

    @Slot(int, int)
    def _on_answer_started(self, request_id: int, _conversation_id: int) -> None:
        if request_id == self._request:
            self.status_label.setText("Writing…")

    @Slot(int, int, int)
    def _on_question_saved(self, request_id: int, conversation_id: int, message_id: int) -> None:
        if request_id == self._request and conversation_id == self.chat.conversation_id:
            self.chat.mark_question_saved(message_id)
        # Another front end's question may have started a chat the sidebar should list.
        self.sidebar.refresh(select_id=self.chat.conversation_id)

    @Slot(int, int, str)
    def _on_text_received(self, request_id: int, conversation_id: int, text: str) -> None:
        if request_id == self._request and conversation_id == self.chat.conversation_id:
            self.chat.append_answer_text(text)

    @Slot(int)
    def _on_request_ended(self, request_id: int) -> None:
        if request_id == self._request:
            self._request = None
            self._set_busy(False)

    @Slot(int, int, str)
    def _on_question_returned(self, request_id: int, _conversation_id: int, question: str) -> None:
        """Our question never started (the app is quitting): it goes back into the draft."""
        if request_id == self._request:
            self.composer.restore_unsent(question)
            self._pending_question = ""

    @Slot(int, int, int)
    def _on_answer_finished(self, request_id: int, conversation_id: int, message_id: int) -> None:
        if request_id != self._request:
            self.sidebar.refresh(select_id=self.chat.conversation_id)
            return
        self._pending_question = ""
        message = next(
            (m for m in self._safe_messages(conversation_id) if m.id == message_id), None
        )
        if conversation_id == self.chat.conversation_id:
            self.chat.finish_answer(message)
        if message is not None:
            speed = message.stats.get("tokens_per_s")
            done = f"Answer {message.outcome}" if message.outcome else "Answered"
            self.status_label.setText(done + (f" at {speed:.1f} tokens/s." if speed else "."))
        self.sidebar.refresh(select_id=self.chat.conversation_id)

    @Slot(int, int, str, str, str, bool)
    def _on_answer_failed(
        self,
        request_id: int,
        conversation_id: int,
        message: str,
        hint: str,
        details: str,
        saved: bool,
    ) -> None:
        if request_id != self._request:
            return
        if conversation_id == self.chat.conversation_id:
            self.chat.finish_answer(None)
            self.open_conversation(conversation_id)
        if not saved and self._pending_question and not self.composer.text().strip():
            self.composer.set_text(self._pending_question)  # nothing was saved: keep the text
        self._pending_question = ""
        self.status_label.setText("The answer failed.")
        self.show_problem(message, hint, details)

    def _safe_messages(self, conversation_id: int) -> list[Message]:
        try:
            return self.history.messages(conversation_id)
        except AssistantError:
            return []  # deleted meanwhile

    # --- settings, problems, closing -------------------------------------------------------

    @Slot()
    def open_settings(self) -> SettingsDialog:
        from assistant.ui.settings_dialog import SettingsDialog  # on first use

        # Changes reach this window (and every other) through services.settingsChanged.
        dialog = SettingsDialog(
            self.settings,
            self.paths.data,
            self._gpu_offload(),
            self,
            model_sampling=self.services.model_sampling(self.runner.model_id),
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(self.composer.focus_input)
        dialog.open()
        return dialog

    @Slot()
    def show_shortcuts(self) -> shortcuts.ShortcutsDialog:
        dialog = shortcuts.ShortcutsDialog(self)
        dialog.finished.connect(self.composer.focus_input)
        dialog.open()
        return dialog

    def _gpu_offload(self) -> bool:
        return self.hardware().gpu_offload

    def apply_theme(self) -> None:
        """Style the application for the theme setting ("system" follows the desktop) and the
        chat's rendered answers to match."""
        self.chat.set_dark(self._style_application())

    def _style_application(self) -> bool:
        """Palette and stylesheet of the whole application; returns whether it is dark."""
        app = QApplication.instance()
        choice = self.settings["theme"]
        return style_application(app, choice) if isinstance(app, QApplication) else is_dark(choice)

    @Slot(list)
    def _on_settings_changed(self, keys: list[str]) -> None:
        if "theme" in keys:
            self.apply_theme()
        if RELOAD_KEYS.intersection(keys) and self.runner.model_id is not None:
            self.load_model(self.runner.model_id)

    @Slot(Qt.ColorScheme)
    def _on_color_scheme_changed(self, _scheme: Qt.ColorScheme) -> None:
        if self.settings["theme"] == "system":
            self.apply_theme()

    @Slot(str, str)
    def show_problem(
        self,
        message: str,
        hint: str = "",
        details: str = "",
        actions: list[FixAction] | None = None,
    ) -> None:
        self.banner.show_problem(message, hint, details, actions or [])

    @Slot()
    def _on_about(self) -> None:
        QMessageBox.about(
            self,
            f"About {APP_NAME}",
            f"<b>{APP_NAME}</b> {__version__}<br>A private assistant: language models run on "
            "this computer, and nothing you type leaves it.",
        )

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._focused_once:
            self._focused_once = True
            QTimer.singleShot(0, self.composer, self.composer.focus_input)

    def _restore_geometry(self) -> None:
        saved = str(self.state["main_window_geometry"] or "")
        if not saved:
            return
        try:
            geometry = QByteArray(base64.b64decode(saved, validate=True))
        except (binascii.Error, ValueError):
            return
        self.restoreGeometry(geometry)  # Qt keeps it on a screen that exists now...
        keep_inside_screen(self)  # ...but not inside it: saved at another scale, it may not fit

    def save_state(self) -> None:
        """Remember the draft and where the window was (written when the app quits)."""
        self.composer.save_draft()
        geometry = bytes(self.saveGeometry().data())
        self.state.set("main_window_geometry", base64.b64encode(geometry).decode("ascii"))

    @Slot()
    def _on_shutting_down(self) -> None:
        self.save_state()
        if self.model_manager is not None:
            self.model_manager.close()
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Keep the draft and the window's place. The model, the downloads and any answer in
        progress belong to the app, not to this window: closing the last window quits the app
        (``AppServices.shutdown`` then saves the answer as interrupted and frees the model)."""
        self.save_state()
        if self.model_manager is not None:
            self.model_manager.close()
        if self.first_run is not None:
            self.first_run.close()
        super().closeEvent(event)
