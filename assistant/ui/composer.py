"""The message box: Enter sends, Shift+Enter starts a new line, Esc stops the answer.

The unsent draft is written to the window state a moment after typing pauses (and when the
window closes), so it is still there after a restart.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QEvent, QSize, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QKeyEvent, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.state import WindowState

log = logging.getLogger(__name__)

DRAFT_SAVE_DELAY_MS = 600
PLACEHOLDER = "Ask anything…  (Enter sends, Shift+Enter adds a line)"
SHORT_PLACEHOLDER = "Ask anything…"
MAX_VISIBLE_LINES = 8


class MessageEdit(QPlainTextEdit):
    """A text box that grows with its text up to a few lines.

    Signals:
        submitted(): Enter was pressed (without Shift).
        escapePressed(): Esc was pressed.
    """

    submitted = Signal()
    escapePressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTabChangesFocus(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.document().contentsChanged.connect(self._on_contents_changed)
        self._on_contents_changed()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.insertPlainText("\n")
                self.ensureCursorVisible()
            else:
                self.submitted.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.escapePressed.emit()
            return
        super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(super().sizeHint().width(), self.height())

    def minimumSizeHint(self) -> QSize:
        return QSize(80, self.height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        # A placeholder is never wrapped: a narrow box gets the short one instead of a clip.
        room = self.viewport().width() - 2 * int(self.document().documentMargin())
        fits = self.fontMetrics().horizontalAdvance(PLACEHOLDER) <= room
        self.setPlaceholderText(PLACEHOLDER if fits else SHORT_PLACEHOLDER)

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        # The stylesheet's padding and the font arrive after construction: measure again.
        if event.type() in (QEvent.Type.StyleChange, QEvent.Type.FontChange):
            self._on_contents_changed()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._on_contents_changed()

    @Slot()
    def _on_contents_changed(self) -> None:
        # QPlainTextEdit's document measures its height in lines.
        lines = max(1, min(MAX_VISIBLE_LINES, int(self.document().size().height())))
        text = lines * self.fontMetrics().lineSpacing() + 2 * self.document().documentMargin()
        chrome = self.height() - self.viewport().height()  # frame, padding, border
        height = int(text) + chrome + 4  # QPlainTextEdit scrolls when a line fits exactly
        if height != self.height():
            self.setFixedHeight(height)


class Composer(QFrame):
    """Where the user writes. Send turns into Stop while an answer is being written.

    Signals:
        sendRequested(str): the text to send (already stripped, never empty).
        stopRequested(): Stop or Esc while an answer is being written.
    """

    sendRequested = Signal(str)
    stopRequested = Signal()

    def __init__(self, state: WindowState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ComposerFrame")
        self._state = state
        self._busy = False
        self.editing_id: int | None = None
        self._saved_draft = ""
        self._before_edit = ""

        self.edit = MessageEdit()
        self.edit.setPlaceholderText(PLACEHOLDER)
        self.edit.setAccessibleName("Message")
        self.edit.setAccessibleDescription(
            "Type your message. Enter sends it, Shift+Enter starts a new line, "
            "Escape stops an answer."
        )
        self.edit.submitted.connect(self._on_submitted)
        self.edit.escapePressed.connect(self._on_escape_pressed)
        self.edit.textChanged.connect(self._on_text_changed)

        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("SendButton")
        self.send_button.setAccessibleName("Send message")
        self.send_button.setToolTip("Send (Enter)")
        self.send_button.clicked.connect(self._on_submitted)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("StopButton")
        self.stop_button.setAccessibleName("Stop answer")
        self.stop_button.setToolTip("Stop the answer (Esc)")
        self.stop_button.clicked.connect(self.stopRequested)
        self.stop_button.hide()

        self.editing_note = QLabel(
            "Editing an earlier question: the answers after it will be replaced."
        )
        self.editing_note.setObjectName("EditingNote")
        self.cancel_edit_button = QToolButton()
        self.cancel_edit_button.setText("Cancel edit")
        self.cancel_edit_button.setAccessibleName("Cancel edit")
        self.cancel_edit_button.setToolTip("Keep the question as it was (Esc)")
        self.cancel_edit_button.clicked.connect(self._on_cancel_edit_clicked)
        editing = QHBoxLayout()
        editing.addWidget(self.editing_note, 1)
        editing.addWidget(self.cancel_edit_button)
        self._editing_row = QWidget()
        self._editing_row.setLayout(editing)
        editing.setContentsMargins(0, 0, 0, 0)
        self._editing_row.hide()

        row = QHBoxLayout()
        row.setSpacing(8)
        row.addWidget(self.edit, 1)
        row.addWidget(self.send_button, 0, Qt.AlignmentFlag.AlignBottom)
        row.addWidget(self.stop_button, 0, Qt.AlignmentFlag.AlignBottom)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 8, 20, 14)
        layout.setSpacing(4)
        layout.addWidget(self._editing_row)
        layout.addLayout(row)

        self._draft_timer = QTimer(self)
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(DRAFT_SAVE_DELAY_MS)
        self._draft_timer.timeout.connect(self.save_draft)
        draft = str(state["draft"])
        self._saved_draft = draft
        self.edit.setPlainText(draft)
        self.edit.moveCursor(self.edit.textCursor().MoveOperation.End)
        self._update_buttons()

    # --- public ----------------------------------------------------------------------------

    def text(self) -> str:
        return self.edit.toPlainText()

    def set_text(self, text: str) -> None:
        self.edit.setPlainText(text)
        self.edit.moveCursor(self.edit.textCursor().MoveOperation.End)

    def focus_input(self) -> None:
        self.edit.setFocus(Qt.FocusReason.OtherFocusReason)

    def set_busy(self, busy: bool) -> None:
        """While an answer is written, Send becomes Stop (typing the next message still works)."""
        had_focus = self.send_button.hasFocus() or self.stop_button.hasFocus()
        self._busy = busy
        self._update_buttons()
        if had_focus:
            # Send turns into Stop and back: the keyboard follows, or goes to the text box
            # when the button it would land on cannot take it (Send with nothing to send).
            target = self.stop_button if busy else self.send_button
            if target.isEnabled():
                target.setFocus()
            else:
                self.focus_input()

    def start_editing(self, message_id: int, text: str) -> None:
        """Put an earlier question into the box; sending replaces it."""
        if self.editing_id is None:
            self._before_edit = self.text()
        self.editing_id = message_id
        self.set_text(text)
        self._editing_row.show()
        self.focus_input()

    @Slot()
    def cancel_editing(self) -> None:
        if self.editing_id is None:
            return
        self.editing_id = None
        self._editing_row.hide()
        self.set_text(self._before_edit)

    @Slot()
    def _on_cancel_edit_clicked(self) -> None:
        self.cancel_editing()
        self.focus_input()  # the button that had the focus is gone

    def restore_unsent(self, question: str) -> None:
        """Put back a question that was sent but never saved, ahead of anything typed since."""
        self.cancel_editing()
        typed = self.text().strip()
        self.set_text(f"{question}\n\n{typed}" if typed else question)

    def clear_sent(self) -> None:
        """The text was sent: empty the box and forget the draft (and any edit)."""
        editing = self.editing_id is not None
        self.editing_id = None
        self._editing_row.hide()
        self.set_text(self._before_edit if editing else "")
        self._before_edit = ""
        self.save_draft()

    @Slot()
    def save_draft(self) -> None:
        """Write the draft now (also called when the window closes)."""
        self._draft_timer.stop()
        draft = "" if self.editing_id is not None else self.text()
        if draft == self._saved_draft:
            return
        try:
            self._state.set("draft", draft)
            self._state.save()
            self._saved_draft = draft
        except OSError as exc:  # a full or read-only disk must not break typing
            log.warning("Could not save the draft: %s", exc)

    # --- events ----------------------------------------------------------------------------

    def _update_buttons(self) -> None:
        self.send_button.setVisible(not self._busy)
        self.stop_button.setVisible(self._busy)
        self.send_button.setEnabled(bool(self.text().strip()))

    @Slot()
    def _on_text_changed(self) -> None:
        self._update_buttons()
        if self.editing_id is None:
            self._draft_timer.start()

    @Slot()
    def _on_submitted(self) -> None:
        if self._busy:
            return  # Enter while an answer streams does nothing; the text stays
        text = self.text().strip()
        if text:
            self.sendRequested.emit(text)

    @Slot()
    def _on_escape_pressed(self) -> None:
        if self._busy:
            self.stopRequested.emit()
        elif self.editing_id is not None:
            self.cancel_editing()
            self.focus_input()
