"""The chat window with real parts: the real SmolLM2 model, real SQLite, real widgets offscreen.

Waits are generous (the test machine is slow) and never assert on wall time.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
)
from pytestqt.qtbot import QtBot

from assistant.chat.history import HistoryStore
from assistant.engine.base import ChatProvider
from assistant.models.hardware import Hardware
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import app_paths
from assistant.providers import FileLoader, ProviderRegistry, load_gguf, local_provider
from assistant.settings import Settings
from assistant.state import WindowState
from assistant.ui.errors import BugReportDialog
from assistant.ui.main_window import MainWindow
from assistant.ui.message_view import MessageWidget
from assistant.ui.model_picker import GET_MODELS
from assistant.ui.services import AppServices
from assistant.ui.settings_dialog import NO_GPU_NOTE, SettingsDialog
from assistant.ui.worker import ModelRunner

QUESTION = "What is the capital of France?"
LONG_QUESTION = "Write a long story about a dragon who learns to fly over the mountains."
LOAD_MS = 120_000
ANSWER_MS = 300_000

OpenWindow = Callable[[], MainWindow]


@pytest.fixture
def model_id(model_path: Path) -> str:
    """The real test model, imported into this test's store (in place, not copied)."""
    return ModelStore().import_file(model_path).id


@pytest.fixture
def test_settings() -> Settings:
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.set("temperature", 0.0)
    settings.set("system_prompt", "You are a helpful assistant.")
    settings.set("max_tokens", 64)
    settings.save()
    return settings


@pytest.fixture
def start_services(hardware: Hardware) -> Iterator[Callable[..., AppServices]]:
    """Start the app's services on this test's home, as the app does (each call is a new
    start of the app); every one still running is shut down at the end."""
    started: list[AppServices] = []

    def start(load_file: FileLoader = load_gguf) -> AppServices:
        services = AppServices(app_paths().ensure(), hardware=hardware, load_file=load_file)
        started.append(services)
        return services

    yield start
    for services in started:
        services.shutdown()


@pytest.fixture
def open_window(
    qtbot: QtBot, test_settings: Settings, start_services: Callable[..., AppServices]
) -> Iterator[OpenWindow]:
    """Open the real main window on this test's home, as the app would (a new start of the
    app each time); close and quit all at the end."""
    opened: list[MainWindow] = []

    def open_one() -> MainWindow:
        window = MainWindow(start_services())
        window.show()
        qtbot.waitExposed(window)
        opened.append(window)
        return window

    yield open_one
    for window in opened:
        window.close()
        window.services.shutdown()


def wait_ready(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.runner.ready, timeout=LOAD_MS)


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert window.busy


def wait_answered(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)


def ask(qtbot: QtBot, window: MainWindow, text: str = QUESTION) -> None:
    send(qtbot, window, text)
    wait_answered(qtbot, window)


def answers(window: MainWindow) -> list[MessageWidget]:
    return [w for w in window.chat.message_widgets() if w.role == "assistant"]


def saved(window: MainWindow) -> list[tuple[str, str, str]]:
    conversation_id = window.chat.conversation_id
    assert conversation_id is not None
    return [(m.role, m.text, m.status) for m in window.history.messages(conversation_id)]


def start_long_answer(qtbot: QtBot, window: MainWindow) -> MessageWidget:
    window.settings.set("max_tokens", 400)
    send(qtbot, window, LONG_QUESTION)
    streaming = window.chat.streaming_widget
    assert streaming is not None
    qtbot.waitUntil(lambda: len(streaming.text) > 20, timeout=ANSWER_MS)
    return streaming


# --- asking -------------------------------------------------------------------------------------


def test_ask_streams_answer_and_saves_it(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    qtbot.waitUntil(window.composer.edit.hasFocus, timeout=5_000)  # focused on start
    assert window.picker.combo.currentData() == model_id
    wait_ready(qtbot, window)
    pieces: list[str] = []
    window.runner.textReceived.connect(lambda _rid, _cid, text: pieces.append(text))

    ask(qtbot, window)

    assert pieces, "the answer should arrive in streamed pieces"
    (answer,) = answers(window)
    assert "Paris" in answer.text
    assert "".join(pieces) == answer.text
    assert saved(window) == [("user", QUESTION, "complete"), ("assistant", answer.text, "complete")]
    # The footer names the model as the picker does (one display name everywhere).
    assert window.picker.combo.currentText() in answer.footer.text()
    assert "tokens/s" in answer.footer.text()
    assert window.sidebar.titles() == [QUESTION]
    assert window.composer.text() == ""
    qtbot.mouseClick(answer.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == answer.text


def test_enter_sends_and_shift_enter_adds_a_line(qtbot: QtBot, open_window: OpenWindow) -> None:
    window = open_window()  # no model installed: nothing can be sent, nothing is lost
    sent: list[str] = []
    window.composer.sendRequested.connect(sent.append)
    edit = window.composer.edit
    qtbot.keyClicks(edit, "first line")
    qtbot.keyClick(edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(edit, "second line")
    assert sent == []
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    assert sent == ["first line\nsecond line"]
    assert window.banner.isVisible()  # "There is no model to answer yet."
    assert window.composer.text() == "first line\nsecond line"


def test_stop_mid_answer_keeps_partial_answer(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    start_long_answer(qtbot, window)
    assert window.composer.stop_button.isVisible()

    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Escape)
    wait_answered(qtbot, window)

    (_question, answer) = saved(window)
    assert answer[2] == "interrupted"
    assert answer[1] and len(answer[1]) < 2000
    (widget,) = answers(window)
    assert widget.text == answer[1]
    assert "stopped" in widget.footer.text()
    assert window.composer.send_button.isVisible()


def test_regenerate_replaces_the_answer(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    conversation_id = window.chat.conversation_id
    assert conversation_id is not None
    first = window.history.messages(conversation_id)[1]

    (widget,) = answers(window)
    assert widget.regenerate_button.isEnabled()
    qtbot.mouseClick(widget.regenerate_button, Qt.MouseButton.LeftButton)
    assert window.busy
    wait_answered(qtbot, window)

    messages = window.history.messages(conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].created_at > first.created_at  # a new answer, not the old one
    assert messages[1].status == "complete" and "Paris" in messages[1].text
    (widget,) = answers(window)
    assert widget.message_id == messages[1].id


def test_edit_and_resend(qtbot: QtBot, open_window: OpenWindow, model_id: str) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    question = next(w for w in window.chat.message_widgets() if w.role == "user")

    qtbot.mouseClick(question.edit_button, Qt.MouseButton.LeftButton)
    assert window.composer.editing_id == question.message_id
    assert window.composer.text() == QUESTION
    ask(qtbot, window, "What is the capital of Germany?")

    rows = saved(window)
    assert [(r[0], r[2]) for r in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[0][1] == "What is the capital of Germany?"
    assert rows[1][1]
    assert window.composer.editing_id is None
    shown = [w.text for w in window.chat.message_widgets()]
    assert shown == [rows[0][1], rows[1][1]]


def test_switch_conversations(qtbot: QtBot, open_window: OpenWindow, model_id: str) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    first = window.chat.conversation_id
    window.new_chat_action.trigger()
    assert window.chat.message_widgets() == []
    ask(qtbot, window, "Name a color.")
    second = window.chat.conversation_id
    assert first != second
    assert window.sidebar.titles() == ["Name a color.", QUESTION]

    item = window.sidebar.item_for(first)
    assert item is not None
    rect = window.sidebar.list.visualItemRect(item)
    qtbot.mouseClick(window.sidebar.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.chat.conversation_id == first
    assert window.chat.message_widgets()[0].text == QUESTION
    assert "Paris" in window.chat.message_widgets()[1].text


def test_restart_finds_history_and_draft(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    qtbot.keyClicks(window.composer.edit, "an unsent thought")
    # The draft is saved shortly after typing stops, before any close or quit, and apart
    # from the user's settings.
    state_file = app_paths().state_file
    qtbot.waitUntil(
        lambda: WindowState.load(state_file)["draft"] == "an unsent thought", timeout=10_000
    )
    assert "draft" not in app_paths().settings_file.read_text(encoding="utf-8")
    window.close()
    window.services.shutdown()

    again = open_window()
    assert again.composer.text() == "an unsent thought"
    assert again.sidebar.titles() == [QUESTION]
    again.sidebar.activate(again.sidebar.conversation_ids()[0])
    texts = [w.text for w in again.chat.message_widgets()]
    assert texts[0] == QUESTION and "Paris" in texts[1]


def test_search_finds_and_opens_conversation(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window)
    target = window.chat.conversation_id
    window.new_chat_action.trigger()

    window.find_action.trigger()
    assert window.sidebar.search.hasFocus()
    qtbot.keyClicks(window.sidebar.search, "paris")
    qtbot.waitUntil(
        lambda: not window.sidebar.searching and window.sidebar.result_count() == 1,
        timeout=5_000,
    )
    (result,) = window.sidebar.result_texts()
    assert result.startswith(QUESTION) and "Paris" in result
    qtbot.keyClick(window.sidebar.search, Qt.Key.Key_Return)
    assert window.chat.conversation_id == target

    window.sidebar.search.clear()
    qtbot.keyClicks(window.sidebar.search, "zeppelin")
    qtbot.waitUntil(lambda: window.sidebar.no_results.isVisible(), timeout=5_000)


def test_broken_model_shows_error_and_app_keeps_working(
    qtbot: QtBot, open_window: OpenWindow, model_id: str, model_path: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    with model_path.open("rb") as source:
        broken.write_bytes(source.read(2_000_000))  # a download cut short
    store = ModelStore()
    store.register(
        InstalledModel(
            id="broken",
            name="Broken model",
            path=broken,
            size_bytes=broken.stat().st_size,
            source="import",
            owned=False,
        )
    )
    window = open_window()
    wait_ready(qtbot, window)

    window.picker.pick("broken")
    qtbot.waitUntil(window.banner.isVisible, timeout=LOAD_MS)
    assert window.banner.message()  # the cause...
    assert window.banner.hint()  # ...and what to do next
    assert not window.runner.ready

    assert window.picker.state.text() == "Not loaded"
    window.picker.pick(model_id)
    wait_ready(qtbot, window)
    ask(qtbot, window)
    assert "Paris" in answers(window)[0].text


def test_quitting_mid_answer_keeps_partial(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    start_long_answer(qtbot, window)
    conversation_id = window.chat.conversation_id
    assert conversation_id is not None

    window.close()
    assert window.services.shutdown()  # waits for the worker to save the answer

    with HistoryStore(app_paths().history_db) as history:
        _question, answer = history.messages(conversation_id)
    assert answer.status == "interrupted"
    assert len(answer.text) > 20


def test_loading_does_not_block_typing_and_queues_the_question(
    qtbot: QtBot,
    test_settings: Settings,
    model_id: str,
    start_services: Callable[..., AppServices],
) -> None:
    release = threading.Event()

    def slow_loader(path: Path, settings: Any, name: str) -> ChatProvider:
        release.wait(timeout=120)  # a big model taking its time
        return load_gguf(path, settings, name)

    window = MainWindow(start_services(slow_loader))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(window.picker.progress.isVisible, timeout=10_000)
    assert window.runner.loading

    qtbot.keyClicks(window.composer.edit, QUESTION)  # the window answers while loading
    assert window.composer.text() == QUESTION
    qtbot.keyClick(window.composer.edit, Qt.Key.Key_Return)
    assert window.busy and window.runner.loading
    release.set()
    wait_answered(qtbot, window)
    assert not window.picker.progress.isVisible()
    assert "Paris" in answers(window)[0].text
    window.close()


def test_question_sent_while_loading_is_kept_when_the_app_quits(
    qtbot: QtBot,
    open_window: OpenWindow,
    test_settings: Settings,
    model_id: str,
    monkeypatch: pytest.MonkeyPatch,
    start_services: Callable[..., AppServices],
) -> None:
    release = threading.Event()

    def slow_loader(path: Path, settings: Any, name: str) -> ChatProvider:
        release.wait(timeout=120)
        return load_gguf(path, settings, name)

    services = start_services(slow_loader)
    runner = services.runner
    window = MainWindow(services)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(window.picker.progress.isVisible, timeout=10_000)
    send(qtbot, window, QUESTION)  # queued behind the load; the box is emptied
    assert window.composer.text() == ""
    conversation_id = window.chat.conversation_id
    assert conversation_id is not None
    begin_shutdown = runner.begin_shutdown

    def begin_then_finish_loading() -> list[str]:
        unsent = begin_shutdown()
        release.set()  # the model is ready only once the app is quitting
        return unsent

    monkeypatch.setattr(runner, "begin_shutdown", begin_then_finish_loading)
    window.close()
    assert services.shutdown()  # the workers have ended: nothing more will be written
    with HistoryStore(app_paths().history_db) as history:
        assert history.messages(conversation_id) == []  # kept once, as the draft

    again = open_window()
    assert again.composer.text() == QUESTION


def test_a_second_shutdown_does_not_wait_again(
    qtbot: QtBot, test_settings: Settings, model_id: str
) -> None:
    release = threading.Event()

    def stuck_loader(path: Path, settings: Any, name: str) -> ChatProvider:
        release.wait(timeout=120)
        raise RuntimeError("not loaded")

    paths = app_paths()
    with HistoryStore(paths.history_db) as history:
        registry = ProviderRegistry([local_provider(ModelStore(paths), stuck_loader)])
        runner = ModelRunner(history, registry)
        with qtbot.waitSignal(runner.loadStarted, timeout=10_000):
            runner.load(model_id, test_settings)
        assert runner.shutdown(timeout_ms=50) is False  # the load goes on
        # The loader is let go in 5 s: a second wait would see the thread end and say True.
        timer = threading.Timer(5.0, release.set)
        timer.start()
        try:
            assert runner.shutdown(timeout_ms=60_000) is False
        finally:
            timer.cancel()
            release.set()
        qtbot.waitUntil(runner.shutdown, timeout=LOAD_MS)


def test_switching_away_and_back_while_an_answer_streams(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    wait_ready(qtbot, window)
    start_long_answer(qtbot, window)
    streaming_conversation = window.chat.conversation_id

    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.chat.conversation_id is None
    assert window.chat.message_widgets() == []  # the answer goes on, elsewhere
    qtbot.wait(200)
    assert window.chat.message_widgets() == []

    window.sidebar.activate(window.sidebar.conversation_ids()[0])
    assert window.chat.conversation_id == streaming_conversation
    streaming = window.chat.streaming_widget
    assert streaming is not None
    seen = len(streaming.text)
    qtbot.waitUntil(lambda: len(streaming.text) > seen, timeout=ANSWER_MS)
    window.stop_action.trigger()
    wait_answered(qtbot, window)
    assert saved(window)[1][2] == "interrupted"


def test_get_models_entry_opens_the_model_manager(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    window = open_window()
    combo = window.picker.combo
    index = combo.findData(GET_MODELS)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)
    manager = window.model_manager
    assert manager is not None and manager.isVisible()
    assert combo.currentData() == model_id  # the picker still shows the model


def test_keyboard_shortcuts_and_accessible_names(qtbot: QtBot, open_window: OpenWindow) -> None:
    window = open_window()
    window.activateWindow()
    qtbot.waitUntil(window.composer.edit.hasFocus, timeout=5_000)
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search.hasFocus()
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.composer.edit.hasFocus()
    qtbot.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    dialog = window.findChild(SettingsDialog)
    assert dialog is not None and dialog.isVisible()
    dialog.reject()

    controls = (
        window.findChildren(QAbstractButton)
        + window.findChildren(QLineEdit)
        + window.findChildren(QComboBox)
        + window.findChildren(QPlainTextEdit)
    )
    unnamed = [
        c
        for c in controls
        if c.isVisibleTo(window)
        and not c.accessibleName()
        and not (isinstance(c, QAbstractButton) and c.text())
        and not isinstance(c.parent(), (QComboBox, QAbstractSpinBox))
    ]
    assert unnamed == []


def test_too_long_question_is_refused_with_a_hint(
    qtbot: QtBot, open_window: OpenWindow, model_id: str
) -> None:
    settings = Settings.load(app_paths().settings_file)
    settings.set("context_size", 512)
    settings.set("overflow_policy", "refuse")
    settings.save()
    window = open_window()
    wait_ready(qtbot, window)
    ask(qtbot, window, "Summarize this: " + "the cat sat on the mat " * 150)

    assert window.banner.isVisible()
    assert "context window" in window.banner.message()
    assert "context size" in window.banner.hint()
    assert [r[0] for r in saved(window)] == ["user"]  # the question is kept, no fake answer
    window.settings.set("overflow_policy", "drop_oldest")
    window.settings.set("context_size", 4096)
    window.load_model(model_id)
    wait_ready(qtbot, window)
    ask(qtbot, window)
    assert "Paris" in answers(window)[-1].text


def test_a_bug_in_the_worker_is_reported_not_lost(
    qtbot: QtBot,
    test_settings: Settings,
    model_id: str,
    start_services: Callable[..., AppServices],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_loader(path: Path, settings: Any, name: str) -> ChatProvider:
        raise RuntimeError("a bug in the loader")

    window = MainWindow(start_services(broken_loader))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(window.banner.isVisible, timeout=LOAD_MS)
    assert "Something went wrong" in window.banner.message()
    details = window.banner.findChild(QPushButton)
    assert details is not None and details.text() == "Show report…"
    qtbot.mouseClick(details, Qt.MouseButton.LeftButton)
    report = window.findChild(BugReportDialog)
    assert report is not None and report.isVisible()
    assert "a bug in the loader" in report.report
    # The one error presenter also put the traceback in the log.
    assert any(
        "a bug in the loader" in r.getMessage() and "Traceback" in r.getMessage()
        for r in caplog.records
    )
    report.close()
    window.close()


def test_switching_theme_restyles_the_window(qtbot: QtBot, open_window: OpenWindow) -> None:
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    before = (app.style().name(), app.palette(), app.styleSheet())
    try:
        window = open_window()
        dialog = window.open_settings()
        dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
        dialog.accept()
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert window.chat.dark
    finally:
        app.setStyle(before[0])
        app.setPalette(before[1])
        app.setStyleSheet(before[2])


# --- pieces that need no model --------------------------------------------------------------


def test_markdown_code_blocks_links_and_no_remote_images(
    qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.ui.markdown import Style

    widget = MessageWidget("assistant", Style())
    qtbot.addWidget(widget)
    widget.resize(700, 400)
    widget.show()
    widget.set_text(
        "# Title\n\nSee [the docs](https://example.com/docs).\n\n"
        "![tracker](https://example.com/pixel.png)\n\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "```python\nprint('hi')\n```\n\nDone."
    )
    (block,) = widget.code_blocks()
    assert block.code == "print('hi')"
    qtbot.mouseClick(block.copy_button, Qt.MouseButton.LeftButton)
    assert QGuiApplication.clipboard().text() == "print('hi')"
    assert block.copy_button.text() == "Copied"

    first, _done = widget.text_views()
    html = first.toHtml()
    assert "<table" in html and "Title" in html
    assert first.loadResource(2, QUrl("https://example.com/pixel.png")) is None
    assert "pixel.png" in html and "<img" not in html

    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(opened.append))
    first.anchorClicked.emit(QUrl("https://example.com/docs"))
    first.anchorClicked.emit(QUrl("file:///etc/passwd"))
    assert [u.toString() for u in opened] == ["https://example.com/docs"]


def test_rename_delete_and_undo(qtbot: QtBot, open_window: OpenWindow) -> None:
    with HistoryStore(app_paths().ensure().history_db) as history:
        older = history.create_conversation(title="Trip plans")
        newer = history.create_conversation(title="Recipes")
    window = open_window()
    sidebar = window.sidebar
    assert sidebar.titles() == ["Recipes", "Trip plans"]

    sidebar.activate(older.id)
    assert window.chat.conversation_id == older.id
    sidebar.list.currentItem().setText("Summer trip")  # what finishing an F2 edit does
    assert window.history.get_conversation(older.id).title == "Summer trip"

    sidebar.list.setFocus()
    sidebar.point_at(newer.id)
    sidebar.delete_action.trigger()
    assert sidebar.titles() == ["Summer trip"]
    assert sidebar.undo_bar.isVisible()
    qtbot.mouseClick(sidebar.undo_bar.undo_button, Qt.MouseButton.LeftButton)
    assert sidebar.titles() == ["Recipes", "Summer trip"]
    assert window.history.get_conversation(newer.id).title == "Recipes"


def test_settings_dialog_saves_and_explains_missing_gpu(
    qtbot: QtBot, test_settings: Settings
) -> None:
    dialog = SettingsDialog(test_settings, app_paths().data, gpu_offload=False)
    qtbot.addWidget(dialog)
    dialog.show()
    assert not dialog.gpu_mode.isEnabled()
    assert not dialog.gpu_note.isHidden() and dialog.gpu_note.text() == NO_GPU_NOTE
    changes: list[list[str]] = []
    dialog.settingsChanged.connect(changes.append)
    dialog.temperature.setValue(0.5)
    dialog.theme.setCurrentIndex(dialog.theme.findData("dark"))
    dialog.accept()
    assert sorted(changes[0]) == ["temperature", "theme"]
    reloaded = Settings.load(app_paths().settings_file)
    assert reloaded["temperature"] == 0.5 and reloaded["theme"] == "dark"


def test_bug_report_dialog_copies_report(qtbot: QtBot) -> None:
    from assistant.ui.errors import describe

    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        message, hint, details = describe(exc)
    assert "boom" in message and not hint and "RuntimeError" in details
    dialog = BugReportDialog(details)
    qtbot.addWidget(dialog)
    copy = next(b for b in dialog.findChildren(QPushButton) if b.text() == "Copy report")
    qtbot.mouseClick(copy, Qt.MouseButton.LeftButton)
    assert "RuntimeError: boom" in QGuiApplication.clipboard().text()


def test_run_app_opens_window_and_returns(
    qtbot: QtBot, model_id: str, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.ui.app import run_app

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # run_app installs its own
    seen: list[str] = []

    def close_all() -> None:
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow):
                seen.append(widget.windowTitle())
                widget.close()

    QTimer.singleShot(500, close_all)
    assert run_app([]) == 0
    assert seen == ["Offline Assistant"]


def test_first_start_without_a_model_shows_the_welcome_screen(
    qtbot: QtBot, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.ui.app import run_app
    from assistant.ui.first_run import FirstRunDialog

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    shown: list[bool] = []

    def check_and_close() -> None:
        window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow))
        shown.append(isinstance(window.first_run, FirstRunDialog) and window.first_run.isVisible())
        window.first_run.reject()
        window.close()

    QTimer.singleShot(800, check_and_close)
    assert run_app([]) == 0
    assert shown == [True]
    assert WindowState.load(app_paths().state_file)["first_run_done"] is True
