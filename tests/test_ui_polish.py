# ruff: noqa: F811  (the window fixtures are imported from test_ui_chat and used by name)
"""The chat window as a new user meets it: it fits the screen, keeps the keyboard's focus where
the hands expect it, says what happened to each answer, and never clips or freezes.

Real parts: the real SmolLM2 model, real SQLite, real widgets offscreen; screen sizes and scale
factors in fresh processes (the offscreen platform's screen is set by a config file).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)
from pytestqt.qtbot import QtBot

from assistant.chat.history import HistoryStore
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import app_paths
from assistant.ui.main_window import MainWindow
from assistant.ui.sidebar import date_group
from tests.test_ui_chat import (  # noqa: F401  (fixtures)
    QUESTION,
    OpenWindow,
    answers,
    ask,
    model_id,
    open_window,
    saved,
    send,
    start_long_answer,
    start_services,
    test_settings,
    wait_answered,
    wait_ready,
)

ROOT = Path(__file__).resolve().parent.parent


def focus_window(qtbot: QtBot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5_000)


def in_composer(window: MainWindow) -> bool:
    return QApplication.focusWidget() is window.composer.edit


# --- fits every screen --------------------------------------------------------------------------

GEOMETRY_PROBE = r"""
import json, sys
from PySide6.QtCore import QByteArray, QRect
from PySide6.QtWidgets import QApplication
app = QApplication([])
from assistant.ui.services import AppServices
from assistant.ui.main_window import MainWindow
from assistant.ui.window_geometry import is_inside_screen
services = AppServices.create()
if sys.argv[1] == "restore":
    # A geometry saved on a bigger screen (or at a smaller scale) is brought back inside.
    big = MainWindow(services)
    big.setGeometry(QRect(300, 200, 2600, 1800))
    big.save_state()
    big.close()
window = MainWindow(services)
window.show()
app.processEvents()
area = window.screen().availableGeometry()
result = {"screen": [area.width(), area.height()]}
def report(name, widget):
    widget.show()
    app.processEvents()
    result[name] = {
        "inside": is_inside_screen(widget),
        "size": [widget.width(), widget.height()],
        "min_fits": widget.minimumWidth() <= area.width()
        and widget.minimumHeight() <= area.height(),
    }
report("main", window)
composer = window.composer.mapTo(window, window.composer.rect().bottomRight())
result["composer_visible"] = window.rect().contains(composer)
window.open_model_manager()
report("models", window.model_manager)
report("settings", window.open_settings())
report("shortcuts", window.show_shortcuts())
print(json.dumps(result))
services.shutdown()
"""


@pytest.mark.gui
@pytest.mark.parametrize("screen", [(1440, 900), (1280, 720)])
@pytest.mark.parametrize("scale", ["1", "2"])
@pytest.mark.parametrize("mode", ["first", "restore"])
def test_every_window_fits_the_screen(
    tmp_path: Path, screen: tuple[int, int], scale: str, mode: str
) -> None:
    config = tmp_path / "screens.json"
    width, height = screen
    config.write_text(
        json.dumps(
            {"screens": [{"name": "S", "x": 0, "y": 0, "width": width, "height": height, "dpr": 1}]}
        )
    )
    env = dict(os.environ)
    env.update(
        QT_QPA_PLATFORM=f"offscreen:configfile={config}",
        QT_SCALE_FACTOR=scale,
        PYTHONPATH=str(ROOT),
    )
    done = subprocess.run(
        [sys.executable, "-c", GEOMETRY_PROBE, mode],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["screen"] == [width // int(scale), height // int(scale)]
    for name in ("main", "models", "settings", "shortcuts"):
        assert result[name]["inside"], (name, result)
        assert result[name]["min_fits"], (name, result)
    assert result["composer_visible"]


# --- focus --------------------------------------------------------------------------------------


def test_focus_stays_in_the_composer_after_every_action(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    focus_window(qtbot, window)
    wait_ready(qtbot, window)

    send(qtbot, window, QUESTION)  # Send
    assert in_composer(window)
    wait_answered(qtbot, window)

    (answer,) = answers(window)
    qtbot.mouseClick(answer.regenerate_button, Qt.MouseButton.LeftButton)  # Regenerate
    assert in_composer(window)
    wait_answered(qtbot, window)

    streaming = start_long_answer(qtbot, window)
    assert streaming is not None
    window.composer.stop_button.setFocus()
    qtbot.mouseClick(window.composer.stop_button, Qt.MouseButton.LeftButton)  # Stop
    wait_answered(qtbot, window)
    assert in_composer(window)
    qtbot.keyClicks(QApplication.focusWidget(), "next thought")
    assert window.composer.text() == "next thought"  # typed text lands in the composer

    question = next(w for w in window.chat.message_widgets() if w.role == "user")
    qtbot.mouseClick(question.edit_button, Qt.MouseButton.LeftButton)  # Edit
    assert in_composer(window) and window.composer.editing_id is not None
    window.composer.cancel_edit_button.setFocus()
    qtbot.mouseClick(window.composer.cancel_edit_button, Qt.MouseButton.LeftButton)  # Cancel
    assert in_composer(window) and window.composer.text() == "next thought"

    dialog = window.open_settings()  # closing a dialog
    dialog.reject()
    qtbot.waitUntil(lambda: in_composer(window), timeout=5_000)


def test_tabbing_into_the_chat_list_opens_nothing(qtbot: QtBot, open_window: OpenWindow) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        first = history.create_conversation(title="First")
        second = history.create_conversation(title="Second")
    window = open_window()
    focus_window(qtbot, window)
    sidebar = window.sidebar
    sidebar.list.setFocus(Qt.FocusReason.TabFocusReason)
    assert window.chat.conversation_id is None
    assert sidebar.current_id() == second.id  # the keyboard's place is shown…
    assert not sidebar.list.selectedItems()  # …without pretending that chat is open
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Down)
    assert window.chat.conversation_id is None and sidebar.current_id() == first.id
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Return)
    assert window.chat.conversation_id == first.id


# --- what happened to an answer -----------------------------------------------------------------


def test_a_length_limited_answer_says_so_and_continues(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    window.settings.set("max_tokens", 10)
    wait_ready(qtbot, window)
    ask(qtbot, window, "Write a long story about a dragon.")
    (answer,) = answers(window)
    assert "cut at the length limit" in answer.footer.text()
    assert answer.continue_button.isVisible()
    first_text = answer.text

    qtbot.mouseClick(answer.continue_button, Qt.MouseButton.LeftButton)
    assert window.busy and in_composer(window)
    wait_answered(qtbot, window)
    (longer,) = answers(window)
    assert longer.text.startswith(first_text) and len(longer.text) > len(first_text)
    rows = saved(window)
    assert [r[0] for r in rows] == ["user", "assistant"]  # the same answer, grown
    assert rows[1][1] == longer.text
    assert "cut at the length limit" in longer.footer.text()
    assert window.history.messages(window.chat.conversation_id or 0)[1].stats["continued"] == 1


def test_stopped_and_app_closed_are_told_apart(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    start_long_answer(qtbot, window)
    window.stop_action.trigger()
    wait_answered(qtbot, window)
    (stopped,) = answers(window)
    assert "stopped by you" in stopped.footer.text()
    assert stopped.continue_button.isVisible()

    window.new_chat()
    start_long_answer(qtbot, window)
    closed_chat = window.chat.conversation_id
    window.services.shutdown()
    with HistoryStore(app_paths().history_db) as history:
        last = history.messages(closed_chat or 0)[-1]
    assert last.status == "interrupted" and last.stats["stop_reason"] == "app_closed"
    assert last.outcome == "interrupted when the app closed"


# --- small things -------------------------------------------------------------------------------


def test_copy_gives_feedback(qtbot: QtBot, open_window: OpenWindow, model_id: str) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    (answer,) = answers(window)
    qtbot.mouseClick(answer.copy_button, Qt.MouseButton.LeftButton)
    assert answer.copy_button.text() == "Copied"
    assert QApplication.clipboard().text() == answer.text
    qtbot.waitUntil(lambda: answer.copy_button.text() == "Copy", timeout=5_000)
    QApplication.clipboard().clear()
    window.copy_last_action.trigger()
    assert QApplication.clipboard().text() == answer.text


def test_chats_are_grouped_by_date() -> None:
    now = datetime(2025, 6, 20, 15, 0)
    assert date_group(now - timedelta(hours=2), now) == "Today"
    assert date_group(now - timedelta(days=1), now) == "Yesterday"
    assert date_group(now - timedelta(days=5), now) == "Previous 7 days"
    assert date_group(datetime(2025, 3, 2), now) == "March"
    assert date_group(datetime(2023, 3, 2), now) == "March 2023"


def _age(history: HistoryStore, conversation_id: int, days: int) -> None:
    stamp = (datetime.now(timezone.utc) - timedelta(days=days)).isoformat()
    with history._lock:
        history._conn.execute(
            "UPDATE conversations SET updated_at = ? WHERE id = ?", (stamp, conversation_id)
        )


def test_the_list_shows_date_headings_and_dates(qtbot: QtBot, open_window: OpenWindow) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        old = history.create_conversation(title="Same title")
        new = history.create_conversation(title="Same title")
        _age(history, old.id, 40)
    window = open_window()
    sidebar = window.sidebar
    assert sidebar.headings()[0] == "Today" and len(sidebar.headings()) == 2
    assert sidebar.conversation_ids() == [new.id, old.id]
    tips = [sidebar.item_for(i).toolTip() for i in (new.id, old.id)]  # type: ignore[union-attr]
    assert tips[0] != tips[1]  # same title, told apart by the date


def test_undo_restores_the_same_selection_and_view(qtbot: QtBot, open_window: OpenWindow) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        shown = history.create_conversation(title="Shown")
        other = history.create_conversation(title="Other")
    window = open_window()
    focus_window(qtbot, window)
    sidebar = window.sidebar

    # Deleting another chat leaves the one shown; undo brings it back, the view unchanged.
    sidebar.activate(shown.id)
    sidebar.delete(other.id)
    assert window.chat.conversation_id == shown.id
    qtbot.mouseClick(sidebar.undo_bar.undo_button, Qt.MouseButton.LeftButton)
    assert sidebar.conversation_ids() == [other.id, shown.id]
    assert window.chat.conversation_id == shown.id and sidebar.current_id() == shown.id
    assert [i.data(Qt.ItemDataRole.UserRole) for i in sidebar.list.selectedItems()] == [shown.id]
    assert in_composer(window)

    # Deleting the chat shown empties the view; Ctrl+Z opens it again, highlighted.
    sidebar.list.setFocus()
    sidebar.delete(shown.id)
    assert window.chat.conversation_id is None
    assert not sidebar.list.selectedItems()
    qtbot.keyClick(sidebar.list, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.chat.conversation_id == shown.id and sidebar.current_id() == shown.id
    assert [i.data(Qt.ItemDataRole.UserRole) for i in sidebar.list.selectedItems()] == [shown.id]

    # A click on the highlighted chat opens it; it does not start renaming it.
    item = sidebar.item_for(shown.id)
    assert item is not None
    rect = sidebar.list.visualItemRect(item)
    qtbot.mouseClick(sidebar.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert sidebar.list.state() != QAbstractItemView.State.EditingState
    sidebar.rename_action.trigger()  # F2: a readable editor
    editor = sidebar.list.findChild(QLineEdit, "RenameEditor")
    assert editor is not None and editor.isVisible()
    assert editor.height() >= editor.sizeHint().height()


def test_export_and_import_from_the_file_menu(
    qtbot: QtBot,
    open_window: OpenWindow,
    model_id: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    original = window.chat.conversation_id
    target = tmp_path / "chat.json"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    window.export_json_action.trigger()
    assert json.loads(target.read_text())["messages"][0]["text"] == QUESTION
    markdown = tmp_path / "chat.md"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(markdown), ""))
    )
    window.export_md_action.trigger()
    assert QUESTION in markdown.read_text()

    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    window.import_action.trigger()
    imported = window.chat.conversation_id
    assert imported not in (None, original)
    assert [w.text for w in window.chat.message_widgets()] == [
        m.text for m in window.history.messages(original or 0)
    ]
    assert window.sidebar.current_id() == imported

    target.write_text("not json")
    window.import_action.trigger()
    assert window.banner.isVisible() and "not a chat exported" in window.banner.message()


def test_a_missing_model_file_offers_buttons_not_commands(
    qtbot: QtBot, open_window: OpenWindow, model_path: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "gone.gguf"
    copy.write_bytes(model_path.read_bytes())
    store = ModelStore()
    installed = store.import_file(copy)
    assert isinstance(installed, InstalledModel)
    copy.unlink()
    window = open_window()
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=60_000)
    assert "`" not in window.banner.message() + window.banner.hint()
    assert window.display_name(installed.id) in window.banner.message()
    assert window.banner.fix_labels() == ["Locate file…", "Remove from list", "Open model manager"]
    qtbot.mouseClick(window.banner.fix_button("Remove from list"), Qt.MouseButton.LeftButton)
    assert ModelStore().find(installed.id) is None
    assert window.picker.combo.findData(installed.id) == -1


def test_search_keeps_up_and_shows_only_the_newest_query(
    qtbot: QtBot, open_window: OpenWindow
) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        for i in range(40):
            chat = history.create_conversation(title=f"Chat {i}")
            history.add_message(chat.id, "user", f"kiwi and apples {i} " * 10)
            history.add_message(chat.id, "assistant", "zebra crossing " + "filler " * 200)
    window = open_window()
    sidebar = window.sidebar
    sidebar.search.setText("kiwi")
    sidebar.search.setText("zebra")  # at once: the older search is dropped
    qtbot.waitUntil(lambda: not sidebar.searching, timeout=30_000)
    texts = sidebar.result_texts()
    assert texts and all("zebra" in t.lower() for t in texts)
    for row in range(sidebar.results.count()):  # the word that matched is in the snippet
        shown = sidebar.results.item(row).data(Qt.ItemDataRole.UserRole + 2)
        assert "<b>zebra</b>" in shown


def test_a_space_after_a_word_searches_nothing_new(
    qtbot: QtBot, open_window: OpenWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        chat = history.create_conversation(title="Fruit")
        history.add_message(chat.id, "user", "kiwi and mango")
    window = open_window()
    sidebar = window.sidebar
    asked: list[str] = []
    search = sidebar.searcher.search

    def spy(query: str) -> None:
        asked.append(query)
        search(query)

    monkeypatch.setattr(sidebar.searcher, "search", spy)
    qtbot.keyClicks(sidebar.search, "kiwi")
    qtbot.waitUntil(lambda: not sidebar.searching, timeout=30_000)
    first_row = sidebar.results.item(0)
    qtbot.keyClicks(sidebar.search, " ")
    qtbot.wait(200)
    assert asked == ["kiwi"] and not sidebar.searching and sidebar.result_count() == 1
    sidebar.run_search()  # asked again (the history changed): the same list stays as it is
    qtbot.waitUntil(lambda: not sidebar.searching, timeout=30_000)
    assert asked[-1] == "kiwi" and sidebar.results.item(0) is first_row
    qtbot.keyClicks(sidebar.search, "mango")
    qtbot.waitUntil(lambda: not sidebar.searching, timeout=30_000)
    assert asked[-1] == "kiwi mango" and sidebar.result_count() == 1


def test_search_result_rows_fit_their_wrapped_text_at_any_width(
    qtbot: QtBot, open_window: OpenWindow
) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        chat = history.create_conversation(title="Fruit")
        history.add_message(chat.id, "user", "kiwi " + "and a longer sentence " * 12)
        history.add_message(chat.id, "user", "kiwi")
    window = open_window()
    sidebar = window.sidebar
    sidebar.search.setText("kiwi")
    qtbot.waitUntil(lambda: not sidebar.searching, timeout=30_000)

    def heights() -> list[tuple[int, int]]:
        """Each row's height, and the height its text needs at the list's width."""
        width = sidebar.results.viewport().width() - 20  # the row's padding
        pairs = []
        for row in range(sidebar.results.count()):
            item = sidebar.results.item(row)
            document = QTextDocument()
            document.setDefaultFont(sidebar.results.font())
            document.setDocumentMargin(0)
            document.setHtml(str(item.data(Qt.ItemDataRole.UserRole + 2)))
            document.setTextWidth(width)
            pairs.append(
                (sidebar.results.visualItemRect(item).height(), int(document.size().height()))
            )
        return pairs

    before = heights()
    assert len(before) == 2
    assert all(shown >= needed for shown, needed in before)
    tallest = max(shown for shown, _ in before)
    assert tallest > min(shown for shown, _ in before)  # the long message wraps
    window.sidebar.setFixedWidth(sidebar.width() - 80)  # narrower: it wraps onto more lines
    qtbot.waitUntil(lambda: max(shown for shown, _ in heights()) > tallest)
    assert all(shown >= needed for shown, needed in heights())


# --- a layout that breathes ----------------------------------------------------------------------


def _clipped(window: QWidget) -> list[str]:
    """Visible controls narrower than they need, or reaching past the window's right edge."""
    problems = []
    for widget in window.findChildren(QWidget):
        if not widget.isVisible() or widget.window() is not window:
            continue
        right = widget.mapTo(window, QPoint(widget.width(), 0)).x()
        if (
            isinstance(widget, (QAbstractButton, QComboBox))
            or (isinstance(widget, QLabel) and not widget.wordWrap() and widget.text())
        ) and widget.width() < widget.minimumSizeHint().width():
            problems.append(f"{type(widget).__name__} {widget.accessibleName()!r} squeezed")
        if right > window.width() + 1:
            problems.append(f"{type(widget).__name__} {widget.accessibleName()!r} past the edge")
    return problems


def test_nothing_is_clipped_at_600_by_400(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    window.settings.set("max_tokens", 120)
    ask(qtbot, window, "Write a Python function that adds two numbers, with a long comment.")
    window.resize(600, 400)
    qtbot.waitUntil(lambda: window.width() <= 620, timeout=5_000)
    assert not window.sidebar.isVisible()  # folded away in a narrow window
    # Layouts settle over a few event-loop turns after a resize.
    qtbot.waitUntil(lambda: _clipped(window) == [], timeout=10_000)
    window.toggle_sidebar_action.trigger()  # and back on demand
    assert window.sidebar.isVisible()
    qtbot.waitUntil(lambda: _clipped(window) == [], timeout=10_000)


# --- accessible ---------------------------------------------------------------------------------

FOCUSABLE = (
    QAbstractButton,
    QLineEdit,
    QComboBox,
    QAbstractSpinBox,
    QPlainTextEdit,
    QTextEdit,
    QAbstractItemView,
)


def _unnamed(window: QWidget) -> list[str]:
    missing = []
    for widget in [window, *window.findChildren(QWidget)]:
        if not isinstance(widget, FOCUSABLE) or widget.focusPolicy() == Qt.FocusPolicy.NoFocus:
            continue
        if widget.window() is not window:
            continue  # a popup (a combo box's list) is a window of its own
        parent = widget.parentWidget()
        if isinstance(parent, (QComboBox, QAbstractSpinBox)):
            continue  # a combo box's or spin box's own part, named through it
        # A button's text is its name for a screen reader (Qt reads it out); others need one.
        text = widget.text().replace("&", "").strip() if isinstance(widget, QAbstractButton) else ""
        if not widget.accessibleName().strip() and not text:
            missing.append(f"{type(widget).__name__} {widget.objectName()!r} {text!r}")
    return missing


def test_every_focusable_control_has_a_name(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    window.open_model_manager()
    dialogs = [window, window.model_manager, window.open_settings(), window.show_shortcuts()]
    for dialog in dialogs:
        assert _unnamed(dialog) == [], type(dialog).__name__
    for button in window.findChildren(QAbstractButton):
        if button.isVisible() and len(button.text().strip()) <= 1:
            assert button.toolTip(), button.accessibleName()  # an icon: say what it does
