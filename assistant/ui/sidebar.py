"""The list of conversations, grouped by date: new, rename (F2), delete with undo, and search.

Moving through the list (arrow keys, Tab) only moves the highlight; Enter or a click opens a
conversation. The search runs off the UI thread (``assistant.ui.history_search``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from PySide6.QtCore import (
    QEvent,
    QItemSelectionModel,
    QObject,
    QPoint,
    Qt,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
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

from assistant.chat.history import SNIPPET_END, SNIPPET_START, HistoryStore, SearchHit
from assistant.errors import AssistantError
from assistant.ui.history_search import HistorySearch
from assistant.ui.sidebar_parts import (
    RESULT_HTML_ROLE,
    RenameDelegate,
    ResultDelegate,
    UndoBar,
    date_group,
    local_time,
    result_html,
)

log = logging.getLogger(__name__)

CONVERSATION_ROLE = Qt.ItemDataRole.UserRole
MESSAGE_ROLE = Qt.ItemDataRole.UserRole + 1
UNTITLED = "New chat"
# Off the UI thread and cancelled by the next key, a search can start at once.
SEARCH_DELAY_MS = 0
RESULTS_PER_TURN = 10
# Rows past the first screenful wait this long: while the user types on, each key replaces the
# results before then, and only the rows in view are ever laid out.
MORE_RESULTS_AFTER_MS = 120
# Conversations listed at a time (more as the list is scrolled down).
PAGE = 150


class Sidebar(QWidget):
    """Conversations, newest first under date headings, and a search box over all of them.

    Signals:
        conversationSelected(int): the user opened a conversation.
        newChatRequested(): the New chat button was pressed.
        conversationDeleted(int): a conversation was deleted (it can still be restored).
        conversationRestored(int): a deleted conversation was brought back (undo).
        searchHitActivated(int, int): conversation id and message id (-1: its title matched).
        problem(str, str): message and hint of something that failed.
    """

    conversationSelected = Signal(int)
    newChatRequested = Signal()
    conversationDeleted = Signal(int)
    conversationRestored = Signal(int)
    searchHitActivated = Signal(int, int)
    problem = Signal(str, str)

    def __init__(self, history: HistoryStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._history = history
        self._filling = False
        self._activate_first_result = False
        self._final_query: str | None = None
        self._searched_for: str | None = None  # the query last searched for
        self._shown: tuple[str, list[SearchHit]] | None = None  # the query and hits listed
        self._items: dict[int, QListWidgetItem] = {}  # the list's item of each conversation
        self._unshown: list[SearchHit] = []
        self._fitted_width = 0  # the width the result rows were measured at
        self._more_results = QTimer(self)
        self._more_results.setSingleShot(True)
        self._more_results.setInterval(0)
        self._more_results.timeout.connect(self._add_some_results)
        self.searcher = HistorySearch(history.db_path, self)
        self.searcher.resultsReady.connect(self._on_results_ready)
        self.searcher.failed.connect(self.problem)

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
        self.list.setToolTip("Arrow keys move, Enter opens, F2 renames, Delete deletes")
        # Renaming only by F2 or the menu: a click on the highlighted chat opens it.
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed)
        self.list.setItemDelegate(RenameDelegate(self.list))
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._on_context_menu)
        self.list.itemActivated.connect(self._on_item_activated)
        self.list.itemClicked.connect(self._on_item_activated)
        self.list.itemChanged.connect(self._on_item_renamed)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.installEventFilter(self)
        self.list.verticalScrollBar().valueChanged.connect(self._on_list_scrolled)
        self._heading = ""
        self._complete = False

        self.results = QListWidget()
        self.results.setAccessibleName("Search results")
        self.results.setWordWrap(True)
        self.results.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.results.itemActivated.connect(self._on_result_activated)
        self.results.itemClicked.connect(self._on_result_activated)
        self.results.viewport().installEventFilter(self)
        self._result_delegate = ResultDelegate(self.results)
        self.results.setItemDelegate(self._result_delegate)
        self.results.setObjectName("SearchResults")
        self.no_results = QLabel("No conversation contains that.")
        self.no_results.setObjectName("EmptyHint")
        self.no_results.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.no_results.setWordWrap(True)
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
        value = None if item is None else item.data(CONVERSATION_ROLE)
        return None if value is None else int(value)

    def conversation_ids(self) -> list[int]:
        """The conversations listed, top to bottom (headings left out)."""
        items = (self.list.item(row) for row in range(self.list.count()))
        return [int(i.data(CONVERSATION_ROLE)) for i in items if i.data(CONVERSATION_ROLE)]

    def refresh(self, select_id: int | None = None) -> None:
        """Re-read the conversations; keep (or move) the highlight without emitting."""
        keep = self.current_id() if select_id is None else select_id
        shown = max(PAGE, len(self._items))
        self._filling = True
        try:
            self.list.clear()
            self._items = {}
            self._heading = ""
            self._complete = False
            self._add_page(shown)
            if keep is not None and keep > 0:
                self._load_until(keep)
                item = self._items.get(keep)
                if item is not None:
                    self.list.setCurrentItem(item)
            if keep is None or self.current_id() != keep:
                self.list.setCurrentRow(-1)
                self.list.clearSelection()
        finally:
            self._filling = False
        if self.search.text().strip():
            self.run_search()

    def _add_page(self, count: int = 0) -> None:
        """List the next conversations: a heavy user's thousands are listed a page at a
        time, as the list is scrolled, so the window opens as fast as with ten."""
        if self._complete:
            return
        count = count or PAGE
        page = self._history.list_conversations(limit=count, offset=len(self._items))
        self._complete = len(page) < count
        now = datetime.now().astimezone()
        for conversation in page:
            updated = local_time(conversation.updated_at)
            group = date_group(updated, now)
            if group != self._heading:
                self._heading = group
                self.list.addItem(self._heading_item(group))
            title = conversation.title or UNTITLED
            item = QListWidgetItem(title)
            item.setData(CONVERSATION_ROLE, conversation.id)
            item.setToolTip(f"{title}\n{updated.strftime('%A %d %B %Y, %H:%M')}")
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.list.addItem(item)
            self._items[conversation.id] = item

    def _load_until(self, conversation_id: int) -> None:
        """List pages until ``conversation_id`` is listed (or every one is)."""
        while conversation_id not in self._items and not self._complete:
            self._add_page()

    @Slot(int)
    def _on_list_scrolled(self, value: int) -> None:
        bar = self.list.verticalScrollBar()
        if not self._complete and value >= bar.maximum() - 200:
            was = self._filling
            self._filling = True
            try:
                self._add_page()
            finally:
                self._filling = was

    @staticmethod
    def _heading_item(text: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setFlags(Qt.ItemFlag.NoItemFlags)  # not selectable, not a tab stop
        font = item.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 0.85)
        item.setFont(font)
        item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{text}:")
        return item

    def headings(self) -> list[str]:
        items = (self.list.item(row) for row in range(self.list.count()))
        return [i.text() for i in items if i.data(CONVERSATION_ROLE) is None]

    def select(self, conversation_id: int | None) -> None:
        """Highlight a conversation without emitting ``conversationSelected``."""
        self._filling = True
        try:
            if conversation_id is not None:
                self._load_until(conversation_id)
            self.list.setCurrentRow(-1)
            self.list.clearSelection()
            item = self._items.get(conversation_id) if conversation_id is not None else None
            if item is not None:
                self.list.setCurrentItem(item)
        finally:
            self._filling = False

    def item_for(self, conversation_id: int) -> QListWidgetItem | None:
        return self._items.get(conversation_id)

    def point_at(self, conversation_id: int) -> None:
        """Put the keyboard's focus mark on a conversation without highlighting or opening it."""
        item = self._items.get(conversation_id)
        if item is not None:
            self._filling = True
            try:
                self.list.setCurrentItem(item, QItemSelectionModel.SelectionFlag.NoUpdate)
            finally:
                self._filling = False

    def activate(self, conversation_id: int) -> None:
        """Highlight and open a conversation, as a click on it does."""
        self.select(conversation_id)
        self.conversationSelected.emit(conversation_id)

    def titles(self) -> list[str]:
        items = (self.list.item(row) for row in range(self.list.count()))
        return [i.text() for i in items if i.data(CONVERSATION_ROLE) is not None]

    @Slot()
    def rename_current(self) -> None:
        item = self.list.currentItem()
        if item is not None and item.data(CONVERSATION_ROLE) is not None:
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
        ids = self.conversation_ids()
        index = ids.index(conversation_id) if conversation_id in ids else 0
        self.undo_bar.offer(conversation_id, title)
        self.conversationDeleted.emit(conversation_id)  # the window may show another chat
        self.refresh(select_id=-1)
        # The keyboard moves on to the neighbour (so Delete can be pressed again) without
        # highlighting a chat that is not the one shown.
        left = self.conversation_ids()
        if left:
            self.point_at(left[min(index, len(left) - 1)])
        self.list.setFocus()

    @Slot()
    def undo_delete(self) -> None:
        """Bring back the conversation deleted last (the toast's Undo, or Ctrl+Z)."""
        self.undo_bar.undo()

    @Slot(int)
    def restore(self, conversation_id: int) -> None:
        try:
            self._history.restore_conversation(conversation_id)
        except AssistantError as exc:
            self.problem.emit(exc.message, exc.hint)
            return
        self.refresh()
        self.conversationRestored.emit(conversation_id)

    @Slot(QPoint)
    def _on_context_menu(self, position: QPoint) -> None:
        item = self.list.itemAt(position)
        if item is None or item.data(CONVERSATION_ROLE) is None:
            return
        self.list.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction(self.rename_action)
        menu.addAction(self.delete_action)
        menu.popup(self.list.viewport().mapToGlobal(position))

    @Slot(QListWidgetItem)
    def _on_item_activated(self, item: QListWidgetItem) -> None:
        value = item.data(CONVERSATION_ROLE)
        if value is not None and not self._filling:
            self.conversationSelected.emit(int(value))

    @Slot(QListWidgetItem)
    def _on_item_renamed(self, item: QListWidgetItem) -> None:
        if self._filling or item.data(CONVERSATION_ROLE) is None:
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

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.list and event.type() == QEvent.Type.FocusIn:
            # Tabbing in shows where the keyboard is without opening anything.
            if self.list.currentItem() is None and self.conversation_ids():
                self.point_at(self.conversation_ids()[0])
        elif (
            watched is self.results.viewport()
            and isinstance(event, QResizeEvent)
            and self._results_width() != self._fitted_width
        ):
            self._fit_results()  # rows wrap anew at another width
        return super().eventFilter(watched, event)

    # --- search ----------------------------------------------------------------------------

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    @Slot(str)
    def _on_search_text_changed(self, text: str) -> None:
        if text.strip():
            # A space typed after a word asks nothing new: the search asked for stands.
            if text.strip() != self._searched_for:
                self._search_timer.start()
        else:
            self._search_timer.stop()
            self.searcher.cancel()
            self._unshown = []
            self._final_query = self._searched_for = None
            self._shown = None
            self.pages.setCurrentIndex(0)

    @Slot()
    def run_search(self) -> None:
        """Search now, off the UI thread; results replace the list as they come."""
        self._search_timer.stop()
        query = self.search.text().strip()
        if not query:
            self.pages.setCurrentIndex(0)
            return
        self._final_query = None
        self._searched_for = query
        self.searcher.search(query)

    @Slot(str, list, bool)
    def _on_results_ready(self, query: str, hits: list[SearchHit], final: bool) -> None:
        if query != self.search.text().strip():
            return  # typed on meanwhile; the newer search reports soon
        if not hits and not final:
            return  # a better stage follows: keep what is shown until then
        # The next stage often brings the same list: nothing to lay out again.
        if (query, hits) != self._shown:
            self._shown = (query, list(hits))
            # Laid out a few per event-loop turn, so typing never waits for 50 of them.
            self.results.clear()
            self._fitted_width = self._results_width()
            self._unshown = list(hits)
            self._add_some_results()
        self.no_results.setVisible(not hits)
        self.results.setVisible(bool(hits))
        self.pages.setCurrentIndex(1)
        if final:
            self._final_query = query
            if self._activate_first_result:
                self._activate_first_result = False
                if self.results.count():
                    self.results.setCurrentRow(0)
                    self._on_result_activated(self.results.item(0))

    @Slot()
    def _add_some_results(self) -> None:
        batch, self._unshown = self._unshown[:RESULTS_PER_TURN], self._unshown[RESULTS_PER_TURN:]
        for hit in batch:
            self._add_result(hit)
        if self._unshown:
            first = self.results.count() <= RESULTS_PER_TURN
            self._more_results.start(MORE_RESULTS_AFTER_MS if first else 0)

    def _add_result(self, hit: SearchHit) -> None:
        title = hit.conversation_title or UNTITLED
        snippet = " ".join(hit.snippet.split())
        plain = snippet.replace(SNIPPET_START, "").replace(SNIPPET_END, "")
        item = QListWidgetItem()
        item.setData(CONVERSATION_ROLE, hit.conversation_id)
        item.setData(MESSAGE_ROLE, -1 if hit.message_id is None else hit.message_id)
        spoken = title if hit.message_id is None else f"{title}: {plain}"
        item.setData(Qt.ItemDataRole.AccessibleTextRole, spoken)
        item.setToolTip(plain)
        html = result_html(title, None if hit.message_id is None else snippet)
        item.setData(RESULT_HTML_ROLE, html)
        item.setSizeHint(
            self._result_delegate.row_size(html, self._fitted_width, self.results.font())
        )
        self.results.addItem(item)

    def _results_width(self) -> int:
        """The width rows are measured at: the list's inside with its scroll bar shown,
        whether it is or not. The bar comes and goes as results are replaced while typing;
        each time, every row was measured again (a stall)."""
        inside = self.results.contentsRect().width()  # the viewport with no bar beside it
        return inside - self.results.verticalScrollBar().sizeHint().width()

    def _fit_results(self) -> None:
        """Rows are as tall as their text at the list's width: measured again when it changes."""
        width = self._fitted_width = self._results_width()
        font = self.results.font()
        for row in range(self.results.count()):
            item = self.results.item(row)
            html = str(item.data(RESULT_HTML_ROLE) or "")
            item.setSizeHint(self._result_delegate.row_size(html, width, font))

    @property
    def searching(self) -> bool:
        """A query is typed and its final results have not all been shown yet."""
        typed = self.search.text().strip()
        return bool(typed) and (self._final_query != typed or bool(self._unshown))

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
        if self.searching:
            self._activate_first_result = True  # once the final results are in
            return
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
