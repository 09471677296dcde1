"""Help → Keyboard shortcuts: every shortcut of the chat window, in one list."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from assistant.ui.window_geometry import fit_window

# The keys the chat window's actions are bound to (main_window reads them from here, so the
# list shown is the list in force).
NEW_CHAT = "Ctrl+N"
SEARCH = "Ctrl+F"
SETTINGS = "Ctrl+,"
QUIT = "Ctrl+Q"
STOP = "Esc"
MODELS = "Ctrl+M"
REGENERATE = "Ctrl+R"
CONTINUE = "Ctrl+Shift+Return"
COPY_LAST = "Ctrl+Shift+C"
PREVIOUS_CHAT = "Ctrl+PgUp"
NEXT_CHAT = "Ctrl+PgDown"
TOGGLE_SIDEBAR = "Ctrl+B"
UNDO_DELETE = "Ctrl+Z"
EXPORT = "Ctrl+E"
IMPORT = "Ctrl+O"
SHORTCUTS = "F1"

# What each key does, in the order shown, including keys that belong to one widget.
TABLE: list[tuple[str, str]] = [
    (NEW_CHAT, "New chat"),
    ("Enter", "Send the message"),
    ("Shift+Enter", "New line in the message"),
    (STOP, "Stop the answer (or cancel an edit)"),
    (REGENERATE, "Write the last answer again"),
    (CONTINUE, "Continue an answer that was cut short"),
    (COPY_LAST, "Copy the last answer"),
    (PREVIOUS_CHAT, "Open the previous chat in the list"),
    (NEXT_CHAT, "Open the next chat in the list"),
    (SEARCH, "Search all chats"),
    ("Up / Down, Enter", "Move through the chat list, open the chat"),
    ("F2", "Rename the chat"),
    ("Delete", "Delete the chat"),
    (UNDO_DELETE, "Undo the delete"),
    (TOGGLE_SIDEBAR, "Show or hide the chat list"),
    (EXPORT, "Export the chat as Markdown"),
    (IMPORT, "Import a chat"),
    (MODELS, "Get models"),
    (SETTINGS, "Settings"),
    (SHORTCUTS, "This list"),
    (QUIT, "Quit"),
]


def native(keys: str) -> str:
    """A key sequence as this platform writes it (Ctrl becomes ⌘ on macOS)."""
    sequence = QKeySequence(keys)
    text = sequence.toString(QKeySequence.SequenceFormat.NativeText)
    return text or keys


class ShortcutsDialog(QDialog):
    """A read-only table of the shortcuts."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        self.setAccessibleName("Keyboard shortcuts")
        self.table = QTableWidget(len(TABLE), 2)
        self.table.setAccessibleName("Keyboard shortcuts")
        self.table.setHorizontalHeaderLabels(["Keys", "Action"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        for row, (keys, action) in enumerate(TABLE):
            shown = keys if " " in keys or keys in ("Enter", "Shift+Enter") else native(keys)
            self.table.setItem(row, 0, QTableWidgetItem(shown))
            self.table.setItem(row, 1, QTableWidgetItem(action))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.Close).setAccessibleName("Close")
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self.setMinimumSize(320, 240)
        fit_window(self, QSize(480, 560))
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

    def rows(self) -> list[tuple[str, str]]:
        def text(row: int, column: int) -> str:
            item = self.table.item(row, column)
            return item.text() if item is not None else ""

        return [(text(row, 0), text(row, 1)) for row in range(self.table.rowCount())]
