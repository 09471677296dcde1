"""The conversation pane: the messages of one conversation and the answer streaming into it.

While an answer streams, the view re-renders only the answer in progress, at most once per frame
and less often when rendering itself gets slow, so typing stays smooth.
"""

from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.history import Message
from assistant.ui.first_paint import after_first_paint
from assistant.ui.markdown import Style, warm_up_in_background
from assistant.ui.message_view import MessageWidget
from assistant.ui.theme import colors_for

# A frame at 60 Hz: the most often the answer in progress is re-rendered.
FRAME_MS = 16
# Keep lines readable on wide screens.
COLUMN_MAX_WIDTH = 860
# A long conversation opens with its latest messages; older ones come as the user scrolls up
# (or presses "Show earlier messages"), a few at a time, so opening one costs the same at 10
# or 500 messages.
FIRST_MESSAGES = 6
EARLIER_BATCH = 6
# How close to the top (pixels) the view must be scrolled to bring in earlier messages.
EARLIER_MARGIN = 120


class ChatView(QWidget):
    """The messages of one conversation, and the answer streaming into it.

    Signals:
        regenerateRequested(int): message id of an answer to write again.
        editRequested(int, str): message id and text of a question to edit and resend.
        getModelsRequested(): the "Get a model" button of the empty page was pressed.
        continueRequested(int): message id of the last answer, cut short, to continue.
    """

    regenerateRequested = Signal(int)
    continueRequested = Signal(int)
    editRequested = Signal(int, str)
    getModelsRequested = Signal()

    def __init__(self, parent: QWidget | None = None, *, dark: bool = False) -> None:
        super().__init__(parent)
        self.conversation_id: int | None = None
        self._widgets: list[MessageWidget] = []
        self._streaming: MessageWidget | None = None
        self._stream_text = ""
        self._busy = False
        self._stick_to_bottom = True
        self._next_render_at = 0.0
        self._scroll_target: int | None = None
        self._keep_from_bottom = 0
        self._model_names: dict[str, str] = {}
        self._style = self._make_style(dark)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.timeout.connect(self._on_render_due)

        self.scroll_area = QScrollArea()
        self.scroll_area.setObjectName("ChatScroll")
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll_area.setAccessibleName("Conversation")
        content = QWidget()
        content.setObjectName("ChatContent")
        row = QHBoxLayout(content)
        row.setContentsMargins(20, 16, 20, 16)
        self.column = QWidget()
        self.column.setMaximumWidth(COLUMN_MAX_WIDTH)
        self.column.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self._list = QVBoxLayout(self.column)
        self._list.setContentsMargins(0, 0, 0, 0)
        self._list.setSpacing(8)
        self._list.addWidget(self._build_empty_state())
        self.earlier_button = QPushButton("Show earlier messages")
        self.earlier_button.setAccessibleName("Show earlier messages")
        self.earlier_button.setToolTip("Earlier messages appear as you scroll up, too")
        self.earlier_button.clicked.connect(self.show_earlier)
        self.earlier_button.hide()
        self._list.addWidget(self.earlier_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self._list.addStretch(1)
        # Saved messages not made into widgets yet, oldest first (see FIRST_MESSAGES).
        self._earlier: list[Message] = []
        row.addStretch(0)
        row.addWidget(self.column, 1)
        row.addStretch(0)
        self.scroll_area.setWidget(content)
        bar = self.scroll_area.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_scroll_range_changed)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area)
        # Not before the window is on screen: the warm-up would compete with its first paint.
        after_first_paint(self, self._on_first_paint)

    def _build_empty_state(self) -> QWidget:
        self.empty = QWidget()
        layout = QVBoxLayout(self.empty)
        layout.setContentsMargins(0, 80, 0, 0)
        self.empty_title = QLabel("How can I help?")
        self.empty_title.setObjectName("EmptyTitle")
        font = self.empty_title.font()
        font.setPointSizeF(font.pointSizeF() * 1.8)
        font.setBold(True)
        self.empty_title.setFont(font)
        self.empty_hint = QLabel("Everything runs on this computer: nothing you type leaves it.")
        self.empty_hint.setObjectName("EmptyHint")
        self.empty_hint.setWordWrap(True)
        self.get_models_button = QPushButton("Get a model…")
        self.get_models_button.setObjectName("PrimaryButton")
        self.get_models_button.setAccessibleName("Get a model")
        self.get_models_button.clicked.connect(self.getModelsRequested)
        self.get_models_button.hide()
        for widget in (self.empty_title, self.empty_hint):
            widget.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            layout.addWidget(widget)
        layout.addSpacing(12)
        layout.addWidget(self.get_models_button, 0, Qt.AlignmentFlag.AlignHCenter)
        return self.empty

    @staticmethod
    def _make_style(dark: bool) -> Style:
        colors = colors_for(dark)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        return Style(
            dark=dark, mono_family=mono, border=colors.border, code_inline_bg=colors.alt_base
        )

    # --- what is shown ---------------------------------------------------------------------

    @property
    def dark(self) -> bool:
        return self._style.dark

    def set_dark(self, dark: bool) -> None:
        style = self._make_style(dark)
        if style != self._style:
            warm_up_in_background(style)  # answers are rendered (and cached) per style
        self._style = style
        for widget in self._widgets:
            widget.set_style(style)

    def set_empty_state(self, title: str, hint: str, offer_models: bool) -> None:
        self.empty_title.setText(title)
        self.empty_hint.setText(hint)
        self.get_models_button.setVisible(offer_models)

    def message_widgets(self) -> list[MessageWidget]:
        return list(self._widgets)

    @property
    def streaming_widget(self) -> MessageWidget | None:
        return self._streaming

    def clear(self, conversation_id: int | None = None) -> None:
        self._render_timer.stop()
        for widget in self._widgets:
            self._list.removeWidget(widget)
            widget.deleteLater()
        self._widgets.clear()
        self._earlier = []
        self.earlier_button.hide()
        self._streaming = None
        self._stream_text = ""
        self.conversation_id = conversation_id
        self.empty.show()

    def show_conversation(
        self,
        conversation_id: int,
        messages: list[Message],
        streaming_text: str | None = None,
        streaming_model: str = "",
    ) -> None:
        """Show saved messages. ``streaming_text`` (when this conversation's answer is still
        coming) replaces whatever was saved after the last question."""
        self.clear(conversation_id)
        if streaming_text is not None:
            last_question = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
            messages = messages[: last_question + 1]
        shown = [m for m in messages if m.role != "system"]
        cut = max(0, len(shown) - FIRST_MESSAGES)
        self._earlier = shown[:cut]
        for message in shown[cut:]:
            widget = self._add_widget(message.role)
            widget.set_message(message)
        self.earlier_button.setVisible(bool(self._earlier))
        if streaming_text is not None:
            self.begin_answer(streaming_model)
            self.append_answer_text(streaming_text)
        self._stick_to_bottom = True
        self._refresh_actions()

    def add_question(self, text: str) -> MessageWidget:
        """A question just sent (saved by the worker a moment later)."""
        widget = self._add_widget("user")
        widget.set_text(text)
        self._stick_to_bottom = True
        self._refresh_actions()
        return widget

    def begin_answer(self, model_name: str, text: str = "") -> MessageWidget:
        """An answer starts streaming; ``text`` is what it already says (one being continued)."""
        widget = self._add_widget("assistant")
        widget.setAccessibleDescription(f"Answer from {model_name}, being written")
        widget.set_streaming()
        self._streaming = widget
        self._stream_text = text
        if text:
            widget.set_text(text)
        self._stick_to_bottom = True
        return widget

    def continue_answer(self, message_id: int, model_name: str) -> MessageWidget | None:
        """The saved answer ``message_id`` is being continued: it streams on in place."""
        widget = next((w for w in self._widgets if w.message_id == message_id), None)
        if widget is None:
            return None
        text = widget.text
        self._list.removeWidget(widget)
        self._widgets.remove(widget)
        widget.deleteLater()
        return self.begin_answer(model_name, text)

    def append_answer_text(self, delta: str) -> None:
        """Add streamed text; the widget is re-rendered at most once per frame."""
        if self._streaming is None:
            return
        self._stream_text += delta
        if not self._render_timer.isActive():
            wait_ms = max(0.0, (self._next_render_at - time.perf_counter()) * 1000)
            self._render_timer.start(int(wait_ms))

    def finish_answer(self, message: Message | None) -> None:
        """The answer ended: show it as saved (``None`` when nothing was saved)."""
        self._render_timer.stop()
        widget, self._streaming = self._streaming, None
        if widget is not None:
            if message is None:
                self._list.removeWidget(widget)
                self._widgets.remove(widget)
                widget.deleteLater()
            else:
                widget.set_message(message)
        self._stream_text = ""
        self._refresh_actions()

    def mark_question_saved(self, message_id: int) -> None:
        pending = next(
            (w for w in reversed(self._widgets) if w.role == "user" and w.message_id is None),
            None,
        )
        if pending is not None:
            pending.message_id = message_id
            self._refresh_actions()

    @property
    def earlier_count(self) -> int:
        """Saved messages of this conversation not shown yet (above the first one shown)."""
        return len(self._earlier)

    @Slot()
    def show_earlier(self, count: int = EARLIER_BATCH) -> None:
        """Add up to ``count`` earlier messages above the first one shown, keeping what is on
        screen where it is."""
        if not self._earlier:
            return
        bar = self.scroll_area.verticalScrollBar()
        from_bottom = bar.maximum() - bar.value()
        batch, self._earlier = self._earlier[-count:], self._earlier[:-count]
        for offset, message in enumerate(batch):
            widget = self._make_widget(message.role)
            widget.set_message(message)
            self._list.insertWidget(2 + offset, widget)
            self._widgets.insert(offset, widget)
        self.earlier_button.setVisible(bool(self._earlier))
        self._refresh_actions()
        self._keep_from_bottom = from_bottom
        QTimer.singleShot(0, self, self._on_earlier_shown)

    @Slot()
    def _on_earlier_shown(self) -> None:
        bar = self.scroll_area.verticalScrollBar()
        bar.setValue(max(0, bar.maximum() - self._keep_from_bottom))

    def scroll_to_message(self, message_id: int) -> None:
        """Bring a message into view (a search result), once the layout has settled."""
        index = next((i for i, m in enumerate(self._earlier) if m.id == message_id), None)
        if index is not None:
            self.show_earlier(len(self._earlier) - index)
        self._stick_to_bottom = False
        self._scroll_target = message_id
        QTimer.singleShot(0, self, self._on_scroll_target_due)

    @Slot()
    def _on_scroll_target_due(self) -> None:
        widget = next((w for w in self._widgets if w.message_id == self._scroll_target), None)
        if widget is not None:
            self.scroll_area.ensureWidgetVisible(widget, 0, 40)

    def set_busy(self, busy: bool) -> None:
        """While an answer is being written, nothing may regenerate or edit."""
        self._busy = busy
        self._refresh_actions()

    def _add_widget(self, role: str) -> MessageWidget:
        widget = self._make_widget(role)
        self._list.insertWidget(self._list.count() - 1, widget)
        self._widgets.append(widget)
        self.empty.hide()
        return widget

    def set_model_names(self, names: dict[str, str]) -> None:
        """How each model is called (its id is what the history keeps)."""
        self._model_names = dict(names)

    def _make_widget(self, role: str) -> MessageWidget:
        widget = MessageWidget(role, self._style)
        widget.model_names = self._model_names
        widget.regenerateRequested.connect(self.regenerateRequested)
        widget.editRequested.connect(self.editRequested)
        widget.continueRequested.connect(self.continueRequested)
        widget.set_max_bubble_width(self._bubble_width())
        return widget

    def _refresh_actions(self) -> None:
        last_answer = next((w for w in reversed(self._widgets) if w.role == "assistant"), None)
        at_end = bool(self._widgets) and self._widgets[-1] is last_answer
        for widget in self._widgets:
            if widget is self._streaming:
                continue
            widget.set_actions_enabled(not self._busy)
            widget.regenerate_button.setVisible(widget is last_answer)
            widget.continue_button.setVisible(
                at_end and widget is last_answer and widget.can_continue
            )

    def _bubble_width(self) -> int:
        # From the visible width, not the column's: on a resize the column follows later,
        # and a bubble sized from its old width would reach past the window's edge.
        margins = self.column.parentWidget().layout().contentsMargins()  # type: ignore[union-attr]
        room = self.scroll_area.viewport().width() - margins.left() - margins.right()
        return max(160, int(min(room, COLUMN_MAX_WIDTH) * 0.8))

    # --- events ----------------------------------------------------------------------------

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        width = self._bubble_width()
        for widget in self._widgets:
            widget.set_max_bubble_width(width)

    @Slot()
    def _on_first_paint(self) -> None:
        warm_up_in_background(self._style)
        # The first rich-text widget costs more than the rest (fonts, layout engine): pay for
        # it while the window is idle rather than when the first answer arrives.
        QTimer.singleShot(300, self, self._on_warm_up_due)

    @Slot()
    def _on_warm_up_due(self) -> None:
        probe = MessageWidget("assistant", self._style, self.column)
        probe.hide()
        probe.set_text("*warm-up*\n\n```\nx\n```")
        probe.deleteLater()

    @Slot()
    def _on_render_due(self) -> None:
        if self._streaming is None:
            return
        started = time.perf_counter()
        self._streaming.set_text(self._stream_text)
        cost = time.perf_counter() - started
        # Slow renders (a long answer on a slow machine) are spaced out so input stays fluid.
        self._next_render_at = time.perf_counter() + max(FRAME_MS / 1000, 3 * cost)

    @Slot(int)
    def _on_scrolled(self, value: int) -> None:
        bar = self.scroll_area.verticalScrollBar()
        self._stick_to_bottom = value >= bar.maximum() - 8
        if self._earlier and value <= EARLIER_MARGIN and bar.maximum() > 0:
            self.show_earlier()

    @Slot(int, int)
    def _on_scroll_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._stick_to_bottom:
            self.scroll_area.verticalScrollBar().setValue(maximum)
