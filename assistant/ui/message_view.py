"""One question or answer on screen, with its Copy, Regenerate and Edit actions.

An answer is split by ``assistant.ui.markdown`` into prose and code pieces; prose shows in a
``RichTextView`` (a read-only browser that grows with its text), code in a ``CodeBlock`` with its
own copy button. Re-rendering reuses the pieces already there, so a streaming answer only
re-lays out its last piece.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QWheelEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.history import Message
from assistant.ui.markdown import Segment, Style, render

EXTERNAL_SCHEMES = ("http", "https", "mailto")


COPIED_FEEDBACK_MS = 1500


def format_footer(message: Message, names: dict[str, str] | None = None) -> str:
    """The quiet line under an answer: model, tokens and speed, and what happened to it when
    it did not simply end (stopped by you, cut at the length limit, interrupted, failed)."""
    parts: list[str] = []
    if message.provider and message.provider != "local":
        parts.append(f"☁ cloud: {message.provider}")  # what left the machine is marked
    if message.model:
        parts.append((names or {}).get(message.model, message.model))
    tokens = message.stats.get("completion_tokens")
    if tokens:
        parts.append(f"{tokens} tokens")
    speed = message.stats.get("tokens_per_s")
    if speed:
        parts.append(f"{speed:.1f} tokens/s")
    if message.outcome:
        parts.append(message.outcome)
    return " · ".join(parts)


def show_copied(button: QToolButton, text: str = "Copy") -> None:
    """Say "Copied" on a copy button for a moment."""
    button.setText("Copied")
    button.setAccessibleDescription("Copied to the clipboard")
    QTimer.singleShot(COPIED_FEEDBACK_MS, button, lambda: _reset_copy(button, text))


def _reset_copy(button: QToolButton, text: str) -> None:
    button.setText(text)
    button.setAccessibleDescription("")


class RichTextView(QTextBrowser):
    """Read-only rich text that is exactly as tall as its content (the page scrolls, not it).

    Links open in the system browser; nothing (no image) is ever loaded from the network.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(2)
        self._html = ""
        layout = self.document().documentLayout()
        layout.documentSizeChanged.connect(self._on_document_size_changed)
        self.anchorClicked.connect(self._on_anchor_clicked)
        self.setFixedHeight(self.fontMetrics().lineSpacing() + 6)

    def set_html(self, html: str) -> None:
        if html != self._html:
            self._html = html
            self.setHtml(html)

    def loadResource(self, kind: int, name: QUrl | str) -> Any:
        # Never fetch anything an answer points at: no remote (or local) images.
        return None

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())

    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()  # let the chat page scroll

    def scroll_sideways(self) -> None:
        """Keep long lines (code) whole and let them scroll inside the view, rather than
        wrapping them or clipping them at a narrow window's edge."""
        self.setLineWrapMode(QTextBrowser.LineWrapMode.NoWrap)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._on_document_size_changed(self.document().size())

    @Slot(QSize)
    def _on_document_size_changed(self, size: Any) -> None:
        height = math.ceil(size.height()) + 2 * self.frameWidth()
        bar = self.horizontalScrollBar()
        sideways = self.horizontalScrollBarPolicy() != Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        if sideways and size.width() > self.viewport().width():
            height += bar.sizeHint().height()  # room for the scroll bar under the last line
        if height != self.height():
            self.setFixedHeight(height)

    @Slot(QUrl)
    def _on_anchor_clicked(self, url: QUrl) -> None:
        if url.scheme().lower() in EXTERNAL_SCHEMES:
            QDesktopServices.openUrl(url)


class CodeBlock(QFrame):
    """A highlighted code block with its language and a Copy button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("CodeBlock")
        self.code = ""
        header = QFrame()
        header.setObjectName("CodeHeader")
        self._language = QLabel()
        self._language.setObjectName("CodeLanguage")
        self.copy_button = QToolButton()
        self.copy_button.setObjectName("CodeCopy")
        self.copy_button.setText("Copy")
        self.copy_button.setToolTip("Copy this code")
        self.copy_button.setAccessibleName("Copy code")
        self.copy_button.clicked.connect(self._on_copy_clicked)
        head = QHBoxLayout(header)
        head.setContentsMargins(10, 3, 4, 3)
        head.addWidget(self._language)
        head.addStretch(1)
        head.addWidget(self.copy_button)
        self.view = RichTextView()
        self.view.setAccessibleName("Code")
        self.view.scroll_sideways()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(header)
        body = QVBoxLayout()
        body.setContentsMargins(8, 6, 8, 6)
        body.addWidget(self.view)
        layout.addLayout(body)

    def set_segment(self, segment: Segment) -> None:
        self.code = segment.code
        self._language.setText(segment.language or "code")
        self.view.set_html(segment.html)

    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.code)
        show_copied(self.copy_button)


def _action(text: str, accessible: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setObjectName("MessageAction")
    button.setText(text)
    button.setAccessibleName(accessible)
    button.setToolTip(tip)
    button.setCursor(Qt.CursorShape.PointingHandCursor)
    return button


class MessageWidget(QFrame):
    """One question or answer, with Copy and Regenerate / Edit.

    Signals:
        regenerateRequested(int): message id of the answer to write again.
        editRequested(int, str): message id and text of the question to edit and resend.
        continueRequested(int): message id of an answer cut short, to continue.
    """

    regenerateRequested = Signal(int)
    editRequested = Signal(int, str)
    continueRequested = Signal(int)

    def __init__(self, role: str, style: Style, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role
        self.message_id: int | None = None
        self.status = "complete"
        self.text = ""
        self._style = style
        self._pieces: list[QWidget] = []
        self._max_bubble = 600
        self.model_names: dict[str, str] = {}  # model id -> the name the window shows
        self.setAccessibleName("Your message" if role == "user" else "Answer")

        self.copy_button = _action("Copy", "Copy message", "Copy the text")
        self.copy_button.clicked.connect(self._on_copy_clicked)
        self.regenerate_button = _action("Regenerate", "Regenerate answer", "Write this again")
        self.regenerate_button.clicked.connect(self._on_regenerate_clicked)
        self.edit_button = _action(
            "Edit",
            "Edit and resend",
            "Edit this question and send it again (the answers after it are replaced)",
        )
        self.edit_button.clicked.connect(self._on_edit_clicked)
        self.continue_button = _action(
            "Continue", "Continue answer", "Ask the model to go on from where it stopped"
        )
        self.continue_button.clicked.connect(self._on_continue_clicked)
        self.continue_button.hide()
        self.can_continue = False
        self.footer = QLabel()
        self.footer.setWordWrap(True)  # a narrow window wraps it rather than clipping
        self.footer.setObjectName("MessageFooter")
        small = self.footer.font()
        small.setPointSizeF(small.pointSizeF() * 0.88)
        self.footer.setFont(small)

        actions = QHBoxLayout()
        actions.setContentsMargins(0, 0, 0, 0)
        actions.setSpacing(2)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 6, 0, 6)
        outer.setSpacing(4)
        if role == "user":
            self.label = QLabel()
            self.label.setWordWrap(True)
            self.label.setTextFormat(Qt.TextFormat.PlainText)
            self.label.setTextInteractionFlags(
                Qt.TextInteractionFlag.TextSelectableByMouse
                | Qt.TextInteractionFlag.TextSelectableByKeyboard
            )
            self.label.setAccessibleName("Your message")
            self.bubble = QFrame()
            self.bubble.setObjectName("UserBubble")
            self._bubble_layout = QVBoxLayout(self.bubble)
            self._bubble_layout.setContentsMargins(14, 9, 14, 9)
            self._bubble_layout.addWidget(self.label)
            row = QHBoxLayout()
            row.addStretch(1)
            row.addWidget(self.bubble, 0)
            outer.addLayout(row)
            actions.addStretch(1)
            actions.addWidget(self.copy_button)
            actions.addWidget(self.edit_button)
            self.regenerate_button.hide()
            self.footer.hide()
        else:
            self.role_label = QLabel("Assistant")
            self.role_label.setObjectName("MessageRole")
            self.body = QVBoxLayout()
            self.body.setContentsMargins(0, 0, 0, 0)
            self.body.setSpacing(6)
            self.thinking = QLabel("Thinking…")
            self.thinking.setObjectName("MessageFooter")
            self.body.addWidget(self.thinking)
            self.thinking.hide()
            outer.addWidget(self.role_label)
            outer.addLayout(self.body)
            actions.addWidget(self.footer, 1)
            actions.addWidget(self.continue_button)
            actions.addWidget(self.copy_button)
            actions.addWidget(self.regenerate_button)
            self.edit_button.hide()
        outer.addLayout(actions)

    # --- content ---------------------------------------------------------------------------

    def set_text(self, text: str) -> None:
        self.text = text
        if self.role == "user":
            self.label.setText(text)
            self._fit_bubble()
            return
        self.thinking.setVisible(not text and self.status == "streaming")
        segments = render(text, self._style)
        for index, segment in enumerate(segments):
            piece = self._pieces[index] if index < len(self._pieces) else None
            wanted = CodeBlock if segment.kind == "code" else RichTextView
            if piece is not None and type(piece) is not wanted:
                self._drop_pieces_from(index)
                piece = None
            if piece is None:
                piece = wanted()
                if isinstance(piece, RichTextView):
                    piece.setAccessibleName("Answer text")
                self._pieces.append(piece)
                self.body.addWidget(piece)
            if isinstance(piece, CodeBlock):
                piece.set_segment(segment)
            elif isinstance(piece, RichTextView):
                piece.set_html(segment.html)
        self._drop_pieces_from(len(segments))

    def _drop_pieces_from(self, index: int) -> None:
        for piece in self._pieces[index:]:
            self.body.removeWidget(piece)
            piece.deleteLater()
        del self._pieces[index:]

    def code_blocks(self) -> list[CodeBlock]:
        return [piece for piece in self._pieces if isinstance(piece, CodeBlock)]

    def text_views(self) -> list[RichTextView]:
        return [piece for piece in self._pieces if isinstance(piece, RichTextView)]

    def set_style(self, style: Style) -> None:
        self._style = style
        if self.role != "user":
            self._drop_pieces_from(0)
            self.set_text(self.text)

    def set_message(self, message: Message) -> None:
        """Show a saved message (its id enables the actions)."""
        self.message_id = message.id
        self.status = message.status
        self.copy_button.show()
        if self.role != "user":
            self.footer.setText(format_footer(message, self.model_names))
            self.footer.setVisible(bool(self.footer.text()))
            self.can_continue = message.can_continue
            self.setAccessibleDescription(message.outcome)
            if message.status == "error" and not message.text:
                self.set_text("*The answer failed.*")
                self.text = ""
                self.setAccessibleDescription("failed")
                return
        self.set_text(message.text)

    def set_streaming(self) -> None:
        """An answer being written: no actions until it is saved."""
        self.status = "streaming"
        self.footer.setText("")
        self.thinking.setVisible(not self.text)
        self.copy_button.hide()
        self.regenerate_button.hide()
        self.continue_button.hide()
        self.can_continue = False

    def set_actions_enabled(self, enabled: bool) -> None:
        has_id = self.message_id is not None
        self.regenerate_button.setEnabled(enabled and has_id)
        self.continue_button.setEnabled(enabled and has_id)
        self.edit_button.setEnabled(enabled and has_id)
        self.copy_button.setEnabled(self.status != "streaming")

    def set_max_bubble_width(self, width: int) -> None:
        if self.role == "user":
            self._max_bubble = width
            self.bubble.setMaximumWidth(width)
            self._fit_bubble()

    def _fit_bubble(self) -> None:
        # A QLabel that wraps picks a narrow width by itself; ask for the width the longest
        # line needs (up to the bubble's limit) so short questions stay on one line.
        metrics = self.label.fontMetrics()
        natural = max(
            (metrics.horizontalAdvance(line) for line in self.text.splitlines()), default=0
        )
        margins = self._bubble_layout.contentsMargins()
        room = self._max_bubble - margins.left() - margins.right()
        self.label.setMinimumWidth(max(0, min(natural + 4, room)))

    # --- actions ---------------------------------------------------------------------------

    @Slot()
    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        show_copied(self.copy_button)

    @Slot()
    def _on_continue_clicked(self) -> None:
        if self.message_id is not None:
            self.continueRequested.emit(self.message_id)

    @Slot()
    def _on_regenerate_clicked(self) -> None:
        if self.message_id is not None:
            self.regenerateRequested.emit(self.message_id)

    @Slot()
    def _on_edit_clicked(self) -> None:
        if self.message_id is not None:
            self.editRequested.emit(self.message_id, self.text)
