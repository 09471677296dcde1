"""The parts of the chat list: its date headings, search result rows, the rename editor and
the undo toast (``assistant.ui.sidebar`` puts them together)."""

from __future__ import annotations

import html
from datetime import datetime

from PySide6.QtCore import QModelIndex, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAbstractTextDocumentLayout, QFont, QPainter, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from assistant.chat.history import SNIPPET_END, SNIPPET_START

UNDO_SECONDS = 10


def date_group(updated: datetime, now: datetime) -> str:
    """The heading a conversation last changed at ``updated`` sits under (both local times):
    Today, Yesterday, Previous 7 days, then one heading per month."""
    days = (now.date() - updated.date()).days
    if days <= 0:
        return "Today"
    if days == 1:
        return "Yesterday"
    if days < 8:
        return "Previous 7 days"
    if updated.year == now.year:
        return updated.strftime("%B")
    return updated.strftime("%B %Y")


def local_time(stamp: str) -> datetime:
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return datetime.now()
    return moment.astimezone() if moment.tzinfo else moment


RESULT_HTML_ROLE = Qt.ItemDataRole.UserRole + 2
# Room around a result's text (the stylesheet pads item rows of the chat list alike).
RESULT_PADDING = QSize(10, 6)


def result_html(title: str, snippet: str | None) -> str:
    """A search result: the conversation's title, and the snippet with the match in bold."""
    text = f"<b>{html.escape(title)}</b>"
    if snippet is not None:
        marked = html.escape(snippet)
        marked = marked.replace(SNIPPET_START, "<b>").replace(SNIPPET_END, "</b>")
        text += f"<br>{marked}"
    return text


_SELECTED = QStyle.StateFlag.State_Selected
_ITEM_VIEW_ITEM = QStyle.ControlElement.CE_ItemViewItem
_TEXT = QPalette.ColorRole.Text
_HIGHLIGHTED_TEXT = QPalette.ColorRole.HighlightedText


class ResultDelegate(QStyledItemDelegate):
    """Paints search results as rich text, wrapped to the list's width. Painting rows (only
    the visible ones) costs far less than a rich-text label per result, so results appear
    without stalling the typing that asked for them.

    A row's height is measured once, by :meth:`row_size`, and kept in the item
    (``setSizeHint``): the list lays out its rows again each time some are added, and asking
    Python for every row's size each time (under the GIL a search worker may hold) cost
    more than painting them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._documents: dict[tuple[str, int], QTextDocument] = {}

    def _document(self, text: str, width: int, font: QFont) -> QTextDocument:
        key = (text, width)
        document = self._documents.get(key)
        if document is None:
            if len(self._documents) > 400:
                self._documents.clear()
            document = QTextDocument()
            document.setDefaultFont(font)
            document.setDocumentMargin(0)
            document.setHtml(text)
            document.setTextWidth(width)
            self._documents[key] = document
        return document

    def row_size(self, text: str, width: int, font: QFont) -> QSize:
        """The size of a row showing ``text`` (``result_html``) in a list ``width`` wide."""
        inner = max(60, width - 2 * RESULT_PADDING.width())
        document = self._document(text, inner, font)
        return QSize(width, int(document.size().height()) + 2 * RESULT_PADDING.height())

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | object
    ) -> None:
        text = str(index.data(RESULT_HTML_ROLE) or "")  # type: ignore[union-attr]
        widget = option.widget
        if widget is not None:  # the row's background: selection, hover, focus
            opt = QStyleOptionViewItem(option)
            self.initStyleOption(opt, index)  # type: ignore[arg-type]
            opt.text = ""
            widget.style().drawControl(_ITEM_VIEW_ITEM, opt, painter, widget)
        rect = option.rect
        # Laid out at the width the row was measured at (its size hint), which stays put when
        # the scroll bar comes or goes: a new layout of every row on screen was a stall.
        measured = index.data(Qt.ItemDataRole.SizeHintRole)  # type: ignore[union-attr]
        width = measured.width() if isinstance(measured, QSize) else rect.width()
        inner = max(60, width - 2 * RESULT_PADDING.width())
        document = self._document(text, inner, option.font)
        role = _HIGHLIGHTED_TEXT if option.state & _SELECTED else _TEXT
        context = QAbstractTextDocumentLayout.PaintContext()
        context.palette.setColor(_TEXT, option.palette.color(role))
        painter.save()
        painter.translate(
            rect.left() + RESULT_PADDING.width(), rect.top() + RESULT_PADDING.height()
        )
        document.documentLayout().draw(painter, context)
        painter.restore()


class RenameDelegate(QStyledItemDelegate):
    """The rename editor, as tall as a line edit needs (an item row is shorter than a styled
    line edit, which left a 2-pixel strip of text)."""

    def createEditor(
        self, parent: QWidget, option: QStyleOptionViewItem, index: QModelIndex | object
    ) -> QWidget:
        editor = QLineEdit(parent)
        editor.setObjectName("RenameEditor")
        editor.setAccessibleName("Conversation name")
        return editor

    def updateEditorGeometry(
        self, editor: QWidget, option: QStyleOptionViewItem, index: QModelIndex | object
    ) -> None:
        rect = option.rect.adjusted(2, 0, -2, 0)
        height = max(rect.height(), editor.sizeHint().height())
        rect.setTop(rect.center().y() - height // 2)
        rect.setHeight(height)
        editor.setGeometry(rect)


class UndoBar(QFrame):
    """ "Conversation deleted — Undo", for a few seconds.

    Signals:
        undoRequested(int): the conversation id to restore.
    """

    undoRequested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("UndoBar")
        self.conversation_id: int | None = None
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setAccessibleName("Undo delete")
        self.undo_button.setToolTip("Bring the conversation back (Ctrl+Z)")
        self.undo_button.clicked.connect(self.undo)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.undo_button)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_expired)
        self.hide()

    def offer(self, conversation_id: int, title: str) -> None:
        self.conversation_id = conversation_id
        self.label.setText(f"Deleted \u201c{title}\u201d.")
        self.setAccessibleDescription(f"Deleted {title}. Undo is available.")
        self.show()
        self._timer.start(UNDO_SECONDS * 1000)

    @property
    def can_undo(self) -> bool:
        return self.conversation_id is not None

    @Slot()
    def undo(self) -> None:
        self._timer.stop()
        self.hide()
        if self.conversation_id is not None:
            conversation_id, self.conversation_id = self.conversation_id, None
            self.undoRequested.emit(conversation_id)

    @Slot()
    def _on_expired(self) -> None:
        self.hide()
        self.conversation_id = None
