"""The quick-ask popup: one line to ask, the answer streaming below, Esc to get out of the way.

A second front end of the app's ``ModelRunner``: the same loaded model, the same queue (a quick
ask while the chat window answers waits its turn, and each answer lands in its own
conversation). Exchanges are kept in one "Quick ask" conversation per day; with the setting
``quick_ask_history`` off, the exchange's conversation is deleted when the answer ends (and
purged when the app quits) unless the user continues it in the chat.

Each quick ask is answered on its own: the earlier quick asks of the day are not sent with it
(a ``prepare`` step keeps the system prompt and the latest question only).

The text selected in another app (the X11 primary selection; the clipboard where there is no
selection) may come along. It is shown above the input and can be removed; when sent, it is
part of the question itself, in a fenced block below it, so the history shows exactly what was
asked and "Continue in chat" keeps it. The clipboard is only read, never changed.
"""

from __future__ import annotations

import datetime
import logging
import warnings

from PySide6.QtCore import QPoint, QRect, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QClipboard, QCursor, QFontDatabase, QGuiApplication, QKeyEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.history import Message
from assistant.engine.base import ChatMessage
from assistant.errors import AssistantError
from assistant.ui.markdown import Style
from assistant.ui.message_view import MessageWidget
from assistant.ui.services import AppServices
from assistant.ui.theme import colors_for, is_dark

log = logging.getLogger(__name__)

TITLE_PREFIX = "Quick ask"
SELECTION_LIMIT = 8000
"""Characters of a selection brought along: a small model's context is small."""
WIDTH = 640
ANSWER_MIN_HEIGHT = 60
ANSWER_MAX_HEIGHT = 420
"""The answer area grows with the answer up to this, then scrolls."""


def daily_title(day: datetime.date | None = None) -> str:
    return f"{TITLE_PREFIX} {(day or datetime.date.today()).isoformat()}"


def with_selection(question: str, selection: str) -> str:
    """The question as sent and saved: the selection below it in a fenced block (small models
    answer about a fenced block far better than about quoted text; the chat renders it)."""
    if not selection:
        return question
    fence = "~~~~" if "```" in selection else "```"
    return f"{question}\n\n{fence}\n{selection}\n{fence}"


def latest_question_only(messages: list[ChatMessage]) -> list[ChatMessage]:
    """Each quick ask on its own: the system prompt and the question just asked."""
    return [m for m in messages if m.role == "system"] + messages[-1:]


def read_selection() -> str:
    """The text selected in another app: the primary selection where the system has one
    (X11), else the clipboard. Only read."""
    clipboard = QGuiApplication.clipboard()
    if clipboard.supportsSelection():
        text = clipboard.text(QClipboard.Mode.Selection)
    else:
        text = clipboard.text(QClipboard.Mode.Clipboard)
    return text.strip()[:SELECTION_LIMIT]


class QuickAskPopup(QWidget):
    """A small frameless window that stays on top, centred on the screen with the mouse.

    Signals:
        continueRequested(int): the exchange was copied into this new conversation; the chat
            window should open it.
        shown(): the popup is on screen with its input focused (benchmarks time this).
    """

    continueRequested = Signal(int)
    shown = Signal()

    def __init__(self, services: AppServices, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.services = services
        self.runner = services.runner
        self.history = services.history
        self.settings = services.settings
        self.request: int | None = None
        self.conversation_id: int | None = None
        self.answer_id: int | None = None
        self.selection = ""
        self._question = ""
        self._text = ""
        self._temporary = False  # the conversation goes once answered (history setting off)
        self._dark: bool | None = None
        self.setWindowFlags(
            Qt.WindowType.Tool
            | Qt.WindowType.FramelessWindowHint
            | Qt.WindowType.WindowStaysOnTopHint
        )
        self.setWindowTitle("Quick ask")
        self.setAccessibleName("Quick ask")
        self.setObjectName("QuickAsk")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(16)
        self._render_timer.timeout.connect(self._on_render_due)
        self._build()
        runner = self.runner
        runner.answerStarted.connect(self._on_answer_started)
        runner.textReceived.connect(self._on_text_received)
        runner.answerFinished.connect(self._on_answer_finished)
        runner.answerFailed.connect(self._on_answer_failed)
        runner.questionReturned.connect(self._on_question_returned)
        runner.requestEnded.connect(self._on_request_ended)

    # --- construction ----------------------------------------------------------------------

    def _build(self) -> None:
        self.input = QLineEdit()
        self.input.setObjectName("QuickAskInput")
        self.input.setPlaceholderText("Ask anything…  (Enter to ask, Esc to close)")
        self.input.setAccessibleName("Quick ask question")
        self.input.setClearButtonEnabled(True)
        self.input.returnPressed.connect(self._on_return_pressed)
        font = self.input.font()
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.input.setFont(font)
        self.input.setMinimumHeight(40)

        self.selection_frame = QFrame()
        self.selection_frame.setObjectName("QuickAskSelection")
        self.selection_label = QLabel()
        self.selection_label.setObjectName("MessageFooter")
        self.selection_label.setWordWrap(True)
        self.selection_label.setTextFormat(Qt.TextFormat.PlainText)
        self.selection_label.setAccessibleName("Selected text brought along")
        self.remove_selection_button = QToolButton()
        self.remove_selection_button.setText("✕")
        self.remove_selection_button.setToolTip("Do not send the selected text")
        self.remove_selection_button.setAccessibleName("Remove the selected text")
        self.remove_selection_button.clicked.connect(self.clear_selection)
        row = QHBoxLayout(self.selection_frame)
        row.setContentsMargins(10, 6, 6, 6)
        row.addWidget(self.selection_label, 1)
        row.addWidget(self.remove_selection_button, 0, Qt.AlignmentFlag.AlignTop)
        self.selection_frame.hide()

        self.answer = MessageWidget("assistant", self._style())
        self.answer.role_label.hide()
        self.answer.copy_button.hide()
        self.answer.regenerate_button.hide()
        self.answer.setAccessibleName("Quick answer")
        self.answer_area = QScrollArea()
        self.answer_area.setWidgetResizable(True)
        self.answer_area.setFrameShape(QFrame.Shape.NoFrame)
        self.answer_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        page = QWidget()
        column = QVBoxLayout(page)
        column.setContentsMargins(0, 0, 6, 0)
        column.addWidget(self.answer)
        column.addStretch(1)  # the text starts at the top, its footer right below it
        self.answer_area.setWidget(page)
        self.answer_area.setFixedHeight(ANSWER_MIN_HEIGHT)
        self.answer_area.hide()
        self.answer_area.verticalScrollBar().rangeChanged.connect(self._on_scroll_range_changed)

        self.status = QLabel()
        self.status.setObjectName("MessageFooter")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setAccessibleName("Copy the answer")
        self.copy_button.setToolTip("Copy the answer to the clipboard")
        self.copy_button.clicked.connect(self.copy_answer)
        self.continue_button = QPushButton("Continue in chat")
        self.continue_button.setObjectName("PrimaryButton")
        self.continue_button.setAccessibleName("Continue in chat")
        self.continue_button.setToolTip("Open this question and answer in the chat window")
        self.continue_button.clicked.connect(self.continue_in_chat)
        self.actions_row = QWidget()
        actions = QHBoxLayout(self.actions_row)
        actions.setContentsMargins(0, 0, 0, 0)
        actions.addWidget(self.status, 1)
        actions.addWidget(self.copy_button)
        actions.addWidget(self.continue_button)
        self.actions_row.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 14, 14, 12)
        layout.setSpacing(8)
        layout.addWidget(self.selection_frame)
        layout.addWidget(self.input)
        layout.addWidget(self.answer_area, 1)
        layout.addWidget(self.actions_row)
        self.setFixedWidth(WIDTH)
        self._set_answer_actions(False)

    def _apply_look(self) -> None:
        """The theme's colours, and a border: a frameless window needs an edge of its own.
        Restyling costs a frame or two: only when the theme changed since the last time."""
        dark = is_dark(self.settings["theme"])
        if dark == self._dark:
            return
        self._dark = dark
        colors = colors_for(dark)
        self.setStyleSheet(
            f"#QuickAsk {{ background: {colors.window}; border: 1px solid {colors.accent}; }}"
            f"#QuickAskSelection {{ background: {colors.alt_base}; border-radius: 6px; }}"
        )
        self.answer.set_style(self._style())

    def _style(self) -> Style:
        dark = is_dark(self.settings["theme"])
        colors = colors_for(dark)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        return Style(
            dark=dark, mono_family=mono, border=colors.border, code_inline_bg=colors.alt_base
        )

    # --- showing ---------------------------------------------------------------------------

    def show_popup(self, selection: str | None = None) -> None:
        """Show (or bring back) the popup on the screen with the mouse, its input focused.
        ``selection``: text to bring along (``None``: read it now when the setting says so)."""
        if selection is None:
            selection = read_selection() if self.settings["quick_ask_selection"] else ""
        if not self.busy:
            self.set_selection(selection)
        self._apply_look()
        self.adjustSize()
        self._place()
        self.show()
        self.raise_()
        self.activateWindow()
        handle = self.windowHandle()
        if QGuiApplication.focusWindow() is handle is not None and not self.isActiveWindow():
            # Where nothing sends a focus-out when a window hides (offscreen, no window
            # manager), Qt keeps the hidden popup as the focus window, and activating it
            # again changes nothing: make it the active window directly.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                QApplication.setActiveWindow(self)
        self.input.setFocus(Qt.FocusReason.ActiveWindowFocusReason)
        self.input.selectAll()
        self.shown.emit()

    def _place(self) -> None:
        screen = QGuiApplication.screenAt(QCursor.pos()) or QGuiApplication.primaryScreen()
        if screen is None:
            return
        area: QRect = screen.availableGeometry()
        size = self.sizeHint().expandedTo(self.minimumSizeHint())
        width = min(WIDTH, area.width())
        x = area.x() + (area.width() - width) // 2
        # A third of the way down: the eye finds it, and the answer has room to grow below.
        y = area.y() + max(0, (area.height() - max(size.height(), 140)) // 3)
        self.move(QPoint(x, y))

    def set_selection(self, text: str) -> None:
        self.selection = text
        self.remove_selection_button.show()
        shown = text if len(text) <= 300 else text[:300] + "…"
        self.selection_label.setText(f"With the selected text: “{shown}”")
        self.selection_frame.setVisible(bool(text))

    @Slot()
    def clear_selection(self) -> None:
        self.set_selection("")
        self.adjustSize()
        self.input.setFocus()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.dismiss()
            return
        super().keyPressEvent(event)

    @Slot()
    def dismiss(self) -> None:
        """Esc: stop an answer in progress (what it wrote is kept) and get out of the way."""
        if self.request is not None:
            self.runner.stop(self.request)
        self.hide()

    # --- asking ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.request is not None

    @Slot()
    def _on_return_pressed(self) -> None:
        self.ask(self.input.text())

    def ask(self, text: str) -> int | None:
        """Ask ``text`` (with the selection, if any); returns the request id."""
        question = text.strip()
        if not question or self.busy:
            return None
        if self.runner.model_id is None:
            self._show_status("No model is loaded yet. Open the chat to pick or get one.")
            return None
        try:
            conversation_id = self._conversation_for_question()
        except AssistantError as exc:
            self._show_status(exc.message)
            return None
        self._question = with_selection(question, self.selection)
        if self.selection:  # sent once: the next question goes without it
            self.selection_label.setText(self.selection_label.text().replace("With", "Sent with"))
            self.remove_selection_button.hide()
            self.selection = ""
        self.conversation_id = conversation_id
        self.answer_id = None
        self._text = ""
        self.answer.status = "streaming"
        self.answer.set_streaming()
        self.answer.footer.hide()
        self.answer.set_text("")
        self.answer_area.show()
        self.actions_row.show()
        self._set_answer_actions(False)
        self._show_status("Waiting for the answer in progress…" if self.runner.busy else "")
        self.request = self.runner.ask(
            conversation_id,
            self._question,
            self.settings.generation_settings(),
            prepare=latest_question_only,
            client="quick-ask",
        )
        self.adjustSize()
        return self.request

    def _conversation_for_question(self) -> int:
        """Today's "Quick ask" conversation (made when missing), or a temporary one."""
        self._temporary = not self.settings["quick_ask_history"]
        system_prompt = self.settings["system_prompt"] or None
        if not self._temporary:
            title = daily_title()
            for conversation in self.history.list_conversations(limit=200):
                if conversation.title == title:
                    return conversation.id
        else:
            title = TITLE_PREFIX
        created = self.history.create_conversation(
            title=title, model=self.runner.model_id, system_prompt=system_prompt
        )
        return created.id

    def _show_status(self, text: str) -> None:
        self.status.setText(text)
        self.actions_row.show()

    def _set_answer_actions(self, enabled: bool) -> None:
        self.copy_button.setEnabled(enabled)
        self.continue_button.setEnabled(enabled)

    @Slot(int, int)
    def _on_answer_started(self, request_id: int, _conversation_id: int) -> None:
        if request_id == self.request:
            self._show_status("Writing…")

    @Slot(int, int, str)
    def _on_text_received(self, request_id: int, _conversation_id: int, text: str) -> None:
        if request_id != self.request:
            return
        self._text += text
        if not self._render_timer.isActive():
            self._render_timer.start()

    @Slot()
    def _on_render_due(self) -> None:
        self.answer.set_text(self._text)
        QTimer.singleShot(0, self, self._fit_answer)

    @Slot()
    def _fit_answer(self) -> None:
        """As tall as the answer (once its text has been laid out), up to a limit."""
        wanted = self.answer.sizeHint().height() + 8
        height = max(ANSWER_MIN_HEIGHT, min(ANSWER_MAX_HEIGHT, wanted))
        if height != self.answer_area.height():
            self.answer_area.setFixedHeight(height)
            self.adjustSize()

    @Slot(int, int, int)
    def _on_answer_finished(self, request_id: int, conversation_id: int, message_id: int) -> None:
        if request_id != self.request:
            return
        self._render_timer.stop()
        self.answer_id = message_id
        message = next(
            (m for m in self.history.messages(conversation_id) if m.id == message_id), None
        )
        if message is not None:
            self.answer.set_message(message)
            self.answer.copy_button.hide()
            self._text = message.text
            QTimer.singleShot(0, self, self._fit_answer)
        self._show_status("Stopped." if message and message.status == "interrupted" else "")
        self._set_answer_actions(bool(self._text))

    @Slot(int, int, str, str, str, bool)
    def _on_answer_failed(
        self, request_id: int, _cid: int, message: str, hint: str, _details: str, _saved: bool
    ) -> None:
        if request_id == self.request:
            self._render_timer.stop()
            self._show_status(f"{message} {hint}".strip())

    @Slot(int, int, str)
    def _on_question_returned(self, request_id: int, _cid: int, _question: str) -> None:
        if request_id == self.request:
            self._show_status("Not asked.")

    @Slot(int)
    def _on_request_ended(self, request_id: int) -> None:
        if request_id != self.request:
            return
        self.request = None
        if self._temporary and self.conversation_id is not None:
            self._drop_temporary()

    def _drop_temporary(self) -> None:
        try:  # purged when the app quits, like any deleted chat
            self.history.delete_conversation(self.conversation_id)  # type: ignore[arg-type]
        except AssistantError as exc:
            log.warning("Could not drop the quick ask: %s", exc)

    @Slot(int, int)
    def _on_scroll_range_changed(self, _minimum: int, maximum: int) -> None:
        self.answer_area.verticalScrollBar().setValue(maximum)

    # --- after the answer ------------------------------------------------------------------

    @Slot()
    def copy_answer(self) -> None:
        QGuiApplication.clipboard().setText(self._text)
        self._show_status("Copied.")

    @Slot()
    def continue_in_chat(self) -> int | None:
        """Copy this question and answer into a new conversation and hand it to the chat
        window (``continueRequested``); returns its id."""
        if self.conversation_id is None or self.answer_id is None:
            return None
        try:
            answer = self._saved(self.answer_id)
            created = self.history.create_conversation(
                model=answer.model if answer else self.runner.model_id,
                system_prompt=self.settings["system_prompt"] or None,
                settings=self.settings.generation_settings().to_dict(),
            )
            self.history.add_message(created.id, "user", self._question)
            if answer is not None:
                self.history.add_message(
                    created.id,
                    "assistant",
                    answer.text,
                    model=answer.model,
                    provider=answer.provider,
                    stats=answer.stats,
                    status=answer.status,
                )
        except AssistantError as exc:
            self._show_status(exc.message)
            return None
        self.hide()
        self.continueRequested.emit(created.id)
        return created.id

    def _saved(self, message_id: int) -> Message | None:
        if self.conversation_id is None:
            return None
        conversation_id = self.conversation_id
        if self._temporary:
            # Deleted when the answer ended; its messages are still there until the purge.
            self.history.restore_conversation(conversation_id)
            try:
                messages = self.history.messages(conversation_id)
            finally:
                self.history.delete_conversation(conversation_id)
        else:
            messages = self.history.messages(conversation_id)
        return next((m for m in messages if m.id == message_id), None)
