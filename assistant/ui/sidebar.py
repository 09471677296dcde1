"""The list of conversations: new, rename (F2), delete with undo, and full-text search."""

from __future__ import annotations

import html
import logging

from PySide6.QtCore import QPoint, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.chat.history import SNIPPET_END, SNIPPET_START, HistoryStore
from assistant.errors import AssistantError

log = logging.getLogger(__name__)

CONVERSATION_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1
UNTITLED = "New chat"
SEARCH_DELAY_MS = 200
UNDO_SECONDS = 10


def _result_label(title: str, snippet: str | None) -> QLabel:
    """A search result: the conversation's title, and the matching words in bold."""
    text = f"<b>{html.escape(title)}</b>"
    if snippet is not None:
        marked = html.escape(snippet)
        marked = marked.replace(SNIPPET_START, "<b>").replace(SNIPPET_END, "</b>")
        text += f"<br><span>{marked}</span>"
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setWordWrap(True)
    label.setContentsMargins(8, 5, 8, 5)
    label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
    return label


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
        self.undo_button.clicked.connect(self._on_undo_clicked)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.undo_button)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.hide()

    def offer(self, conversation_id: int, title: str) -> None:
        self.conversation_id = conversation_id
        self.label.setText(f"Deleted \u201c{title}\u201d.")
        self.setAccessibleDescription(f"Deleted {title}. Undo is available.")
        self.show()
        self._timer.start(UNDO_SECONDS * 1000)

    @Slot()
    def _on_undo_clicked(self) -> None:
        self._timer.stop()
        self.hide()
        if self.conversation_id is not None:
            self.undoRequested.emit(self.conversation_id)
            self.conversation_id = None


class Sidebar(QWidget):
    """Conversations, newest first, and a search box over all of them.

    Signals:
        conversationSelected(int): the user opened a conversation.
        newChatRequested(): the New chat button was pressed.
        conversationDeleted(int): a conversation was deleted (it can still be restored).
        searchHitActivated(int, int): conversation id and message id (-1: its title matched).
        problem(str, str): message and hint of something that failed.
    """

    conversationSelected = Signal(int)
    newChatRequested = Signal()
    conversationDeleted = Signal(int)
    searchHitActivated = Signal(int, int)
    problem = Signal(str, str)

    def __init__(self, history: HistoryStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._history = history
        self._filling = False

        self.new_button = QPushButton("+  New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.newChatRequested)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats")
        self.search.setAccessibleName("Search conversations")
        self.search.setToolTip("Search all conversations (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._on_search_text_changed)
        self.search.returnPressed.connect(self._on_search_return)
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(self.run_search)

        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed
            | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_context_menu)
        self.list.itemActivated.connect(self._on_item_activated)
        self.list.currentItemChanged.connect(self._on_current_item_changed)
        self.list.itemChanged.connect(self._on_item_renamed)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.results = QListWidget()
        self.results.setAccessibleName("Search results")
        self.results.setWordWrap(True)
        self.results.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results.itemActivated.connect(self._on_result_activated)
        self.results.itemClicked.connect(self._on_result_activated)
        self.no_results = QLabel("No conversation contains that.")
        self.no_results.setObjectName("EmptyHint")
        self.no_results.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.no_results.hide()
        results_page = QWidget()
        results_layout = QVBoxLayout(results_page)
        results_layout.setContentsMargins(0, 0, 0, 0)
        results_layout.addWidget(self.no_results)
        results_layout.addWidget(self.results, 1)
        self.pages = QStackedWidget()
        self.pages.addWidget(self.list)
        self.pages.addWidget(results_page)

        self.undo_bar = UndoBar()
        self.undo_bar.undoRequested.connect(self.restore)

        self.rename_action = QAction("Rename", self)
        self.rename_action.setShortcut(QKeySequence(Qt.Key.Key_F2))
        self.rename_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.rename_action.triggered.connect(self.rename_current)
        self.delete_action = QAction("Delete", self)
        self.delete_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Delete))
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.delete_action.triggered.connect(self.delete_current)
        self.list.addAction(self.rename_action)
        self.list.addAction(self.delete_action)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 12, 10, 10)
        layout.setSpacing(8)
        layout.addWidget(self.new_button)
        layout.addWidget(self.search)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.undo_bar)
        self.refresh()

    # --- the list --------------------------------------------------------------------------

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(CONVERSATION_ROLE))

    def refresh(self, select_id: int | None = None) -> None:
        """Re-read the conversations; keep (or move) the selection without emitting."""
        keep = self.current_id() if select_id is None else select_id
        self._filling = True
        try:
            self.list.clear()
            for conversation in self._history.list_conversations():
                item = QListWidgetItem(conversation.title or UNTITLED)
                item.setData(CONVERSATION_ROLE, conversation.id)
                item.setToolTip(conversation.title or UNTITLED)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
                self.list.addItem(item)
                if conversation.id == keep:
                    self.list.setCurrentItem(item)
            if keep is None or self.current_id() != keep:
                self.list.setCurrentRow(-1)
                self.list.clearSelection()
        finally:
            self._filling = False
        if self.search.text().strip():
            self.run_search()

    def select(self, conversation_id: int | None) -> None:
        """Highlight a conversation without emitting ``conversationSelected``."""
        self._filling = True
        try:
            self.list.setCurrentRow(-1)
            self.list.clearSelection()
            for row in range(self.list.count()):
                item = self.list.item(row)
                if item.data(CONVERSATION_ROLE) == conversation_id:
                    self.list.setCurrentItem(item)
                    break
        finally:
            self._filling = False

    def titles(self) -> list[str]:
        return [self.list.item(row).text() for row in range(self.list.count())]

    @Slot()
    def rename_current(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.list.editItem(item)

    @Slot()
    def delete_current(self) -> None:
        conversation_id = self.current_id()
        if conversation_id is not None:
            self.delete(conversation_id)

    def delete(self, conversation_id: int) -> None:
        try:
            title = self._history.get_conversation(conversation_id).title or UNTITLED
            self._history.delete_conversation(conversation_id)
        except AssistantError as exc:
            self.problem.emit(exc.message, exc.hint)
            return
        row = self.list.currentRow()
        self.refresh(select_id=-1)
        self.undo_bar.offer(conversation_id, title)
        self.conversationDeleted.emit(conversation_id)
        if self.list.count():
            self.list.setCurrentRow(min(max(row, 0), self.list.count() - 1))
        self.list.setFocus()

    @Slot(int)
    def restore(self, conversation_id: int) -> None:
        try:
            self._history.restore_conversation(conversation_id)
        except AssistantError as exc:
            self.problem.emit(exc.message, exc.hint)
            return
        self.refresh(select_id=conversation_id)

    @Slot(QPoint)
    def _on_context_menu(self, position: QPoint) -> None:
        item = self.list.itemAt(position)
        if item is None:
            return
        self.list.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction(self.rename_action)
        menu.addAction(self.delete_action)
        menu.popup(self.list.viewport().mapToGlobal(position))

    @Slot(QListWidgetItem)
    def _on_item_activated(self, item: QListWidgetItem) -> None:
        self.conversationSelected.emit(int(item.data(CONVERSATION_ROLE)))

    @Slot(QListWidgetItem, QListWidgetItem)
    def _on_current_item_changed(
        self, current: QListWidgetItem | None, _previous: QListWidgetItem | None
    ) -> None:
        # Moving through the list with the arrow keys opens each conversation, as in a mail app.
        if current is not None and not self._filling:
            self.conversationSelected.emit(int(current.data(CONVERSATION_ROLE)))

    @Slot(QListWidgetItem)
    def _on_item_renamed(self, item: QListWidgetItem) -> None:
        if self._filling:
            return
        conversation_id = int(item.data(CONVERSATION_ROLE))
        title = " ".join(item.text().split())
        try:
            self._history.rename_conversation(conversation_id, title)
        except AssistantError as exc:
            self.problem.emit(exc.message, exc.hint)
        self._filling = True
        try:
            item.setText(title or UNTITLED)
            item.setToolTip(title or UNTITLED)
        finally:
            self._filling = False

    # --- search ----------------------------------------------------------------------------

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    @Slot(str)
    def _on_search_text_changed(self, text: str) -> None:
        if text.strip():
            self._search_timer.start()
        else:
            self._search_timer.stop()
            self.pages.setCurrentIndex(0)

    @Slot()
    def run_search(self) -> None:
        """Search now (the box also searches by itself shortly after typing stops)."""
        self._search_timer.stop()
        query = self.search.text().strip()
        if not query:
            self.pages.setCurrentIndex(0)
            return
        try:
            hits = self._history.search(query)
        except AssistantError as exc:
            self.problem.emit(exc.message, exc.hint)
            return
        self.results.clear()
        for hit in hits:
            title = hit.conversation_title or UNTITLED
            snippet = " ".join(hit.snippet.split())
            plain = snippet.replace(SNIPPET_START, "").replace(SNIPPET_END, "")
            item = QListWidgetItem()
            item.setData(CONVERSATION_ROLE, hit.conversation_id)
            item.setData(MESSAGE_ROLE, -1 if hit.message_id is None else hit.message_id)
            spoken = title if hit.message_id is None else f"{title}: {plain}"
            item.setData(Qt.ItemDataRole.AccessibleTextRole, spoken)
            item.setToolTip(plain)
            label = _result_label(title, None if hit.message_id is None else snippet)
            item.setSizeHint(label.sizeHint())
            self.results.addItem(item)
            self.results.setItemWidget(item, label)
        self.no_results.setVisible(not hits)
        self.results.setVisible(bool(hits))
        self.pages.setCurrentIndex(1)

    def result_count(self) -> int:
        return self.results.count() if self.pages.currentIndex() == 1 else 0

    def result_texts(self) -> list[str]:
        """What each search result says (as a screen reader reads it)."""
        return [
            str(self.results.item(row).data(Qt.ItemDataRole.AccessibleTextRole))
            for row in range(self.results.count())
        ]

    @Slot()
    def _on_search_return(self) -> None:
        self.run_search()
        if self.results.count():
            self.results.setCurrentRow(0)
            self._on_result_activated(self.results.item(0))

    @Slot(QListWidgetItem)
    def _on_result_activated(self, item: QListWidgetItem) -> None:
        conversation_id = int(item.data(CONVERSATION_ROLE))
        self.select(conversation_id)
        self.searchHitActivated.emit(conversation_id, int(item.data(MESSAGE_ROLE)))

    def keyPressEvent(self, event: QKeyEvent) -> None:
        # Esc in the search box (or its results) clears the search.
        if event.key() == Qt.Key.Key_Escape and self.search.text():
            self.search.clear()
            self.list.setFocus()
            return
        super().keyPressEvent(event)
