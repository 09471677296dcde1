"""The chat window: the model picker, the conversations, the chat and the message box.

The window only shows things and forwards requests: answers and model loads run on the model
worker (``ModelRunner``), history and settings come from the core, and the model manager and
welcome screen (another module each) are opened on demand.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from assistant import APP_NAME, __version__
from assistant.errors import AssistantError
from assistant.chat.history import HistoryStore, Message
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import AppPaths
from assistant.settings import Settings
from assistant.ui.chat_view import ChatView
from assistant.ui.composer import Composer
from assistant.ui.errors import ErrorBanner
from assistant.ui.model_picker import ModelPicker
from assistant.ui.settings_dialog import RELOAD_KEYS, SettingsDialog
from assistant.ui.sidebar import Sidebar
from assistant.ui.theme import apply_theme as style_application
from assistant.ui.theme import is_dark
from assistant.ui.worker import ModelRunner

if TYPE_CHECKING:
    from assistant.models.catalog import Catalog
    from assistant.models.hardware import Hardware

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_MS = 10_000


class MainWindow(QMainWindow):
    """The main window. Everything it needs is handed in; ``runner`` is made when not given."""

    def __init__(
        self,
        settings: Settings,
        history: HistoryStore,
        models: ModelStore,
        paths: AppPaths,
        *,
        catalog: Catalog | None = None,
        hardware: Hardware | None = None,
        runner: ModelRunner | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.history = history
        self.models = models
        self.paths = paths
        self._catalog = catalog
        self._hardware = hardware
        self.runner = runner or ModelRunner(history, parent=self)
        self.model_manager: Any = None
        self.first_run: Any = None
        self._downloads: Any = None
        self._pending_question = ""
        self._focused_once = False
        # What the model registry said at the last _reload_models(): read once per refresh.
        self._installed: list[InstalledModel] = []
        self._default_id: str | None = None
        self.setWindowTitle(APP_NAME)
        self.setAccessibleName(APP_NAME)
        self.resize(1100, 760)

        # Styled before the widgets exist, so each is polished once, in its final look.
        dark = self._style_application()
        self.sidebar = Sidebar(history)
        self.chat = ChatView(dark=dark)
        self.composer = Composer(settings)
        self.banner = ErrorBanner()
        self.picker = ModelPicker()
        self.status_label = QLabel()
        self.status_label.setContentsMargins(10, 0, 0, 0)
        self.statusBar().addWidget(self.status_label, 1)
        self._build_layout()
        self._build_menus()
        self._connect()
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_color_scheme_changed)
        self._reload_models()
        self._load_default_model()

    # --- construction ----------------------------------------------------------------------

    def _build_layout(self) -> None:
        header = QFrame()
        header.setObjectName("ChatHeader")
        head = QHBoxLayout(header)
        head.setContentsMargins(16, 8, 16, 8)
        head.addWidget(self.picker)
        head.addStretch(1)

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

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.sidebar)
        splitter.addWidget(pane)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 840])
        splitter.setChildrenCollapsible(False)
        splitter.setHandleWidth(1)
        self.setCentralWidget(splitter)
        self.setTabOrder(self.composer.edit, self.composer.send_button)

    def _action(self, text: str, shortcut: str | QKeySequence, slot: Any) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even with the menu bar hidden
        return action

    def _build_menus(self) -> None:
        self.new_chat_action = self._action("&New chat", "Ctrl+N", self.new_chat)
        self.find_action = self._action("&Search chats", "Ctrl+F", self.sidebar.focus_search)
        self.settings_action = self._action("&Settings…", "Ctrl+,", self.open_settings)
        self.quit_action = self._action("&Quit", "Ctrl+Q", self.close)
        self.stop_action = self._action("S&top answer", "Esc", self.runner.stop)
        self.stop_action.setEnabled(False)
        self.models_action = self._action("&Get models…", "Ctrl+M", self.open_model_manager)
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.new_chat_action)
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addAction(self.find_action)
        edit_menu.addAction(self.stop_action)
        menu.addMenu("&Models").addAction(self.models_action)
        about = QAction(f"&About {APP_NAME}", self)
        about.triggered.connect(self._on_about)
        menu.addMenu("&Help").addAction(about)

    def _connect(self) -> None:
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.newChatRequested.connect(self.new_chat)
        self.sidebar.conversationDeleted.connect(self._on_conversation_deleted)
        self.sidebar.searchHitActivated.connect(self._on_search_hit)
        self.sidebar.problem.connect(self.show_problem)
        self.chat.regenerateRequested.connect(self._on_regenerate_requested)
        self.chat.editRequested.connect(self._on_edit_requested)
        self.chat.getModelsRequested.connect(self.open_model_manager)
        self.composer.sendRequested.connect(self._on_send_requested)
        self.composer.stopRequested.connect(self.runner.stop)
        self.picker.modelChosen.connect(self._on_model_chosen)
        self.picker.getModelsRequested.connect(self.open_model_manager)
        runner = self.runner
        runner.loadStarted.connect(self._on_load_started)
        runner.loaded.connect(self._on_loaded)
        runner.loadFailed.connect(self._on_load_failed)
        runner.busyChanged.connect(self._on_busy_changed)
        runner.questionSaved.connect(self._on_question_saved)
        runner.textReceived.connect(self._on_text_received)
        runner.answerFinished.connect(self._on_answer_finished)
        runner.answerFailed.connect(self._on_answer_failed)

    # --- models ----------------------------------------------------------------------------

    @property
    def has_models(self) -> bool:
        """Whether any model is installed (as of the last look at the registry)."""
        return bool(self._installed)

    def _reload_models(self) -> None:
        """Read the installed models once and show them: the picker (with "Get models…" and
        the model in use) and the empty page."""
        self._installed = self.models.list_installed()
        self._default_id = self.models.default_id()
        current = self.picker.current_id() or self.runner.model_id or self._default_id
        self.picker.set_models(self._installed, current)
        self._update_empty_state()

    def _load_default_model(self) -> None:
        if self._default_id is not None:
            self.load_model(self._default_id)

    def load_model(self, model_id: str) -> None:
        """Load an installed model on the worker; typing and reading go on meanwhile."""
        try:
            path = self.models.resolve(model_id)
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            self.picker.show_failed()
            return
        self.banner.hide()
        self.picker.set_current(model_id)
        self.runner.load(model_id, path, self.settings)

    @Slot(str)
    def _on_model_chosen(self, model_id: str) -> None:
        if model_id != self.runner.model_id or not self.runner.ready:
            self.load_model(model_id)

    @Slot(str)
    def _on_load_started(self, model_id: str) -> None:
        self.picker.show_loading()
        self.status_label.setText(f"Loading {model_id}…")

    @Slot(str, list)
    def _on_loaded(self, model_id: str, warnings: list[str]) -> None:
        if self.runner.loading:
            return  # another model was asked for meanwhile
        self.picker.show_ready()
        self.status_label.setText(f"Ready: {model_id} runs on this computer.")
        if self._default_id != model_id:
            try:  # the model that worked is the one to load next time
                self.models.set_default(model_id)
            except AssistantError as exc:
                log.warning("Could not remember %s as the default: %s", model_id, exc)
            else:
                self._default_id = model_id
        if warnings:
            self.show_problem(" ".join(warnings), "Answers may be less good than usual.")
        self._update_empty_state()

    @Slot(str, str, str, str)
    def _on_load_failed(self, model_id: str, message: str, hint: str, details: str) -> None:
        if not self.runner.loading:
            self.picker.show_failed()
        self.status_label.setText(f"Could not load {model_id}.")
        self.show_problem(message, hint, details)

    def catalog(self) -> Catalog:
        if self._catalog is None:
            from assistant.models.catalog import load_catalog

            self._catalog = load_catalog()
        return self._catalog

    def hardware(self) -> Hardware:
        if self._hardware is None:
            from assistant.models.hardware import detect_hardware

            self._hardware = detect_hardware()
        return self._hardware

    def _download_queue(self) -> Any:
        if self._downloads is None:
            from assistant.ui.model_manager import make_downloads

            self._downloads = make_downloads(self.models, self.catalog(), self.hardware(), self)
            # The one way installs reach this window: downloads (even one finishing while its
            # window is closed) and imports in the model manager or the welcome screen.
            self._downloads.modelInstalled.connect(self._on_model_installed)
        return self._downloads

    @Slot()
    def open_model_manager(self) -> None:
        """Show the model manager (one window, kept so downloads go on while chatting)."""
        if self.model_manager is None:
            try:
                from assistant.ui.model_manager import ModelManagerWindow

                self.model_manager = ModelManagerWindow(
                    self.models,
                    self.catalog(),
                    self.hardware(),
                    self,
                    downloads=self._download_queue(),
                )
            except ImportError as exc:
                log.warning("Model manager unavailable: %s", exc)
                self.show_problem(
                    "The model manager is not part of this installation.",
                    "Get a model in a terminal with `offline-assistant models pull ID`.",
                )
                return
            except AssistantError as exc:
                self.show_problem(exc.message, exc.hint)
                return
            self.model_manager.defaultChanged.connect(self._on_default_changed)
        self.model_manager.show()
        self.model_manager.raise_()
        self.model_manager.activateWindow()

    def open_first_run(self) -> bool:
        """Show the welcome screen (no model yet); return whether it could be shown."""
        try:
            from assistant.ui.first_run import FirstRunDialog

            self.first_run = FirstRunDialog(
                self.models,
                self.catalog(),
                self.hardware(),
                self,
                downloads=self._download_queue(),
            )
        except (ImportError, AssistantError) as exc:
            log.warning("Welcome screen unavailable: %s", exc)
            return False
        self.first_run.open()
        return True

    @Slot(str)
    def _on_model_installed(self, model_id: str) -> None:
        self._reload_models()
        if self.runner.model_id is None or not (self.runner.ready or self.runner.loading):
            self.load_model(model_id)

    @Slot(str)
    def _on_default_changed(self, model_id: str) -> None:
        if model_id == (self._default_id or ""):
            return  # already shown (the first install, which made itself the default)
        self._reload_models()
        if model_id and model_id != self.runner.model_id:
            self.load_model(model_id)

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
        streaming = self.runner.streaming_conversation == conversation_id
        self.chat.show_conversation(
            conversation_id,
            messages,
            streaming_text=self.runner.streaming_text if streaming else None,
            streaming_model=self.runner.model_id or "",
        )
        self.sidebar.select(conversation_id)
        self.setWindowTitle(f"{conversation.title or 'New chat'} — {APP_NAME}")

    @Slot(int)
    def _on_conversation_deleted(self, conversation_id: int) -> None:
        if self.chat.conversation_id == conversation_id:
            self.new_chat()

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

    @Slot(str)
    def _on_send_requested(self, text: str) -> None:
        if self.runner.busy:
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
            self.runner.edit_and_resend(conversation_id, editing, text, generation)
        else:
            target = self.chat.conversation_id or self._create_conversation()
            if target is None:
                return
            self.runner.ask(target, text, generation)
        self.banner.hide()
        self._pending_question = text
        self.chat.add_question(text)
        self.chat.begin_answer(self.runner.model_id)
        self.composer.clear_sent()

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
        if conversation_id is None or self.runner.busy or self.runner.model_id is None:
            return
        kept = self._messages_before(conversation_id, message_id)
        self.chat.show_conversation(conversation_id, kept)
        self.chat.begin_answer(self.runner.model_id)
        self._pending_question = ""
        self.runner.regenerate(conversation_id, message_id, self.settings.generation_settings())

    @Slot(int, str)
    def _on_edit_requested(self, message_id: int, text: str) -> None:
        if not self.runner.busy:
            self.composer.start_editing(message_id, text)

    @Slot(bool)
    def _on_busy_changed(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.chat.set_busy(busy)
        self.stop_action.setEnabled(busy)
        if busy:
            self.status_label.setText("Writing…")

    @Slot(int, int)
    def _on_question_saved(self, conversation_id: int, message_id: int) -> None:
        if conversation_id == self.chat.conversation_id:
            self.chat.mark_question_saved(message_id)
        self.sidebar.refresh(select_id=self.chat.conversation_id)

    @Slot(int, str)
    def _on_text_received(self, conversation_id: int, text: str) -> None:
        if conversation_id == self.chat.conversation_id:
            self.chat.append_answer_text(text)

    @Slot(int, int)
    def _on_answer_finished(self, conversation_id: int, message_id: int) -> None:
        self._pending_question = ""
        message = next(
            (m for m in self._safe_messages(conversation_id) if m.id == message_id), None
        )
        if conversation_id == self.chat.conversation_id:
            self.chat.finish_answer(message)
        if message is not None:
            speed = message.stats.get("tokens_per_s")
            done = "Stopped" if message.status == "interrupted" else "Answered"
            self.status_label.setText(done + (f" at {speed:.1f} tokens/s." if speed else "."))
        self.sidebar.refresh(select_id=self.chat.conversation_id)

    @Slot(int, str, str, str, bool)
    def _on_answer_failed(
        self, conversation_id: int, message: str, hint: str, details: str, saved: bool
    ) -> None:
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
        dialog = SettingsDialog(self.settings, self.paths.data, self._gpu_offload(), self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.settingsChanged.connect(self._on_settings_changed)
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
    def show_problem(self, message: str, hint: str = "", details: str = "") -> None:
        self.banner.show_problem(message, hint, details)

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

    def closeEvent(self, event: QCloseEvent) -> None:
        """Keep the draft and any answer in progress (saved as interrupted), then free the
        model. Waits briefly for the worker to finish writing.

        A question sent while the model was still loading was never saved: it goes back into
        the draft, so the next start offers it again."""
        unsent = self.runner.begin_shutdown()
        if unsent:
            self.composer.restore_unsent("\n\n".join(unsent))
        self.composer.save_draft()
        if self.model_manager is not None:
            self.model_manager.close()
        if self._downloads is not None:
            self._downloads.shutdown()  # partial downloads are kept and resume next time
        self.runner.shutdown(SHUTDOWN_WAIT_MS)
        super().closeEvent(event)
