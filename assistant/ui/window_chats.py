"""The chat window's chat list: delete and undo in step with the view, previous and next
chat, the list folding away in a narrow window, export and import of a chat, and the
shortcuts for the last answer (regenerate, continue, copy).

``ChatListSection`` is a part of ``MainWindow`` (a mixin, so the window keeps one set of public
methods); it uses the window's ``sidebar``, ``chat``, ``composer``, ``history`` and
``status_label``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Slot
from PySide6.QtGui import QAction, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QToolButton

from assistant import APP_NAME
from assistant.chat.history import HistoryStore
from assistant.errors import AssistantError
from assistant.ui.chat_view import ChatView
from assistant.ui.composer import Composer
from assistant.ui.message_view import MessageWidget
from assistant.ui.sidebar import Sidebar

if TYPE_CHECKING:
    from assistant.ui.errors import FixAction

# Below this width the chat list folds away (Ctrl+B or the header's button bring it back).
SIDEBAR_FOLD_WIDTH = 700


class ChatListSection(QMainWindow):
    """The chat list's part of the chat window (see the module docstring)."""

    sidebar: Sidebar
    sidebar_button: QToolButton
    chat: ChatView
    composer: Composer
    history: HistoryStore
    status_label: QLabel
    undo_delete_action: QAction
    _deleted_open: int | None
    _sidebar_wanted: bool | None

    if TYPE_CHECKING:

        def _on_regenerate_requested(self, message_id: int) -> None: ...

        def _on_continue_requested(self, message_id: int) -> None: ...

        def show_problem(
            self,
            message: str,
            hint: str = "",
            details: str = "",
            actions: list[FixAction] | None = None,
        ) -> None: ...

        def open_conversation(self, conversation_id: int) -> None: ...

    @Slot(int)
    def _on_conversation_deleted(self, conversation_id: int) -> None:
        self._deleted_open = None
        if self.chat.conversation_id == conversation_id:
            self._deleted_open = conversation_id
            self.composer.cancel_editing()
            self.chat.clear(None)
            self.setWindowTitle(APP_NAME)
        self.undo_delete_action.setEnabled(True)

    @Slot()
    def undo_delete(self) -> None:
        """Bring back the chat deleted last (Ctrl+Z, or the toast's Undo)."""
        self.sidebar.undo_delete()

    @Slot(int)
    def _on_conversation_restored(self, conversation_id: int) -> None:
        """The list and the view stay in step: a chat that was open when it was deleted is
        open again; otherwise the chat shown stays shown and highlighted."""
        if self._deleted_open == conversation_id and self.chat.conversation_id is None:
            self.open_conversation(conversation_id)
        else:
            self.sidebar.select(self.chat.conversation_id)
        self._deleted_open = None
        self.composer.focus_input()

    def _step_chat(self, step: int) -> None:
        ids = self.sidebar.conversation_ids()
        if not ids:
            return
        current = self.chat.conversation_id
        index = ids.index(current) + step if current in ids else (0 if step > 0 else len(ids) - 1)
        if 0 <= index < len(ids):
            self.open_conversation(ids[index])

    @Slot()
    def previous_chat(self) -> None:
        """Open the chat above the one shown in the list."""
        self._step_chat(-1)

    @Slot()
    def next_chat(self) -> None:
        """Open the chat below the one shown in the list."""
        self._step_chat(1)

    @Slot()
    def toggle_sidebar(self) -> None:
        """Show or hide the chat list; the choice holds until the window is resized past
        the width where it folds by itself."""
        self._sidebar_wanted = not self.sidebar.isVisible()
        self._show_sidebar(self._sidebar_wanted)
        if self._sidebar_wanted:
            self.sidebar.list.setFocus()
        else:
            self.composer.focus_input()

    def _show_sidebar(self, shown: bool) -> None:
        self.sidebar.setVisible(shown)
        self.sidebar_button.setChecked(shown)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        narrow = event.size().width() < SIDEBAR_FOLD_WIDTH
        was_narrow = (
            event.oldSize().width() < SIDEBAR_FOLD_WIDTH
            if event.oldSize().isValid()
            else not narrow
        )
        if narrow != was_narrow:
            self._sidebar_wanted = None  # crossing the line: the width decides again
        if self._sidebar_wanted is None:
            self._show_sidebar(not narrow)

    # --- files -----------------------------------------------------------------------------

    def export_chat(self, fmt: str = "md", path: Path | None = None) -> Path | None:
        """Export the open chat as Markdown ("md") or JSON; returns the file written."""
        if self.chat.conversation_id is None:
            self.show_problem("Open a chat to export it.", "Pick one in the chat list.")
            return None
        from assistant.ui.conversation_files import export_conversation  # on first use

        try:
            written = export_conversation(self, self.history, self.chat.conversation_id, fmt, path)
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            return None
        if written is not None:
            self.status_label.setText(f"Exported to {written}.")
        self.composer.focus_input()
        return written

    @Slot()
    def export_markdown(self) -> None:
        self.export_chat("md")

    @Slot()
    def export_json(self) -> None:
        self.export_chat("json")

    @Slot()
    def _on_import_triggered(self) -> None:
        self.import_chat()

    def import_chat(self, path: Path | None = None) -> None:
        """Import a chat exported as JSON and open it."""
        from assistant.ui.conversation_files import import_conversation  # on first use

        try:
            conversation = import_conversation(self, self.history, path)
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            return
        if conversation is not None:
            self.sidebar.refresh()
            self.open_conversation(conversation.id)
            self.status_label.setText(f"Imported “{conversation.title}”.")
        self.composer.focus_input()

    # --- the last answer ---------------------------------------------------------------------

    def _last_answer(self) -> MessageWidget | None:
        return next(
            (w for w in reversed(self.chat.message_widgets()) if w.role == "assistant"), None
        )

    @Slot()
    def regenerate_last(self) -> None:
        answer = self._last_answer()
        if answer is not None and answer.message_id is not None:
            self._on_regenerate_requested(answer.message_id)

    @Slot()
    def continue_last(self) -> None:
        answer = self._last_answer()
        if answer is not None and answer.message_id is not None and answer.can_continue:
            self._on_continue_requested(answer.message_id)

    @Slot()
    def copy_last_answer(self) -> None:
        answer = self._last_answer()
        if answer is not None and answer.text:
            QGuiApplication.clipboard().setText(answer.text)
            self.status_label.setText("Copied the last answer.")
