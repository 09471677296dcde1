"""The quick-ask popup with the real model: a second front end of the shared runner, beside
the chat window. Real SQLite, real Qt offscreen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from assistant.models.hardware import Hardware
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.settings import Settings
from assistant.ui.desktop import DesktopShell
from assistant.ui.main_window import MainWindow
from assistant.ui.quick_ask import QuickAskPopup, daily_title, with_selection
from assistant.ui.services import AppServices

pytestmark = [pytest.mark.gui, pytest.mark.slow]

QUESTION = "What is the capital of France?"
LONG_QUESTION = "Write a long story about a dragon who learns to fly over the mountains."
LOAD_MS = 120_000
ANSWER_MS = 300_000


@pytest.fixture
def services(hardware: Hardware, model_path: Path) -> Iterator[AppServices]:
    ModelStore().import_file(model_path)
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.update({"temperature": 0.0, "max_tokens": 48, "quick_ask_hotkey": ""})
    started = AppServices(app_paths().ensure(), hardware=hardware)
    yield started
    started.shutdown()


@pytest.fixture
def window(qtbot: QtBot, services: AppServices) -> MainWindow:
    window = MainWindow(services)
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: services.runner.ready, timeout=LOAD_MS)
    return window


@pytest.fixture
def shell(window: MainWindow, services: AppServices) -> Iterator[DesktopShell]:
    shell = DesktopShell(services, window)
    yield shell
    if shell._popup is not None:
        shell._popup.close()
        shell._popup.deleteLater()


def open_popup(qtbot: QtBot, shell: DesktopShell, selection: str = "") -> QuickAskPopup:
    shell.popup.show_popup(selection)
    qtbot.waitExposed(shell.popup)
    qtbot.waitUntil(shell.popup.input.hasFocus)  # activation is asynchronous
    return shell.popup


def ask(qtbot: QtBot, popup: QuickAskPopup, text: str) -> int:
    qtbot.keyClicks(popup.input, text)
    qtbot.keyClick(popup.input, Qt.Key.Key_Return)
    assert popup.request is not None
    return popup.request


def test_a_quick_ask_streams_its_answer_into_todays_quick_ask_conversation(
    qtbot: QtBot, shell: DesktopShell, services: AppServices
) -> None:
    popup = open_popup(qtbot, shell)
    assert popup.isVisible() and popup.input.hasFocus()
    chunks: list[str] = []
    services.runner.textReceived.connect(lambda rid, _cid, text: chunks.append(text))

    first = ask(qtbot, popup, QUESTION)
    qtbot.waitUntil(lambda: not popup.busy, timeout=ANSWER_MS)

    assert len(chunks) > 1  # streamed, not delivered in one piece
    assert "Paris" in popup.answer.text and popup.copy_button.isEnabled()
    assert popup.answer.text_views()  # shown through the chat's Markdown renderer
    (conversation,) = services.history.list_conversations()
    assert conversation.title == daily_title()
    messages = services.history.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].text == popup.answer.text and messages[1].status == "complete"

    # A second quick ask the same day joins the same conversation, asked on its own.
    second = ask(qtbot, popup, "What is 2 + 2?")
    assert second != first
    qtbot.waitUntil(lambda: not popup.busy, timeout=ANSWER_MS)
    assert len(services.history.list_conversations()) == 1
    assert len(services.history.messages(conversation.id)) == 4

    popup.copy_button.click()
    assert QApplication.clipboard().text() == popup.answer.text


def test_esc_hides_the_popup_and_stops_its_answer(
    qtbot: QtBot, shell: DesktopShell, services: AppServices
) -> None:
    services.settings.update({"max_tokens": 400})
    popup = open_popup(qtbot, shell)
    rid = ask(qtbot, popup, LONG_QUESTION)
    qtbot.waitUntil(lambda: len(services.runner.text_so_far(rid)) > 20, timeout=ANSWER_MS)

    qtbot.keyClick(popup.input, Qt.Key.Key_Escape)

    assert not popup.isVisible()
    qtbot.waitUntil(lambda: not services.runner.is_active(rid), timeout=ANSWER_MS)
    (conversation,) = services.history.list_conversations()
    answer = services.history.messages(conversation.id)[-1]
    assert answer.status == "interrupted" and len(answer.text) > 20

    # Shown again: focused, ready for the next question.
    open_popup(qtbot, shell)
    assert popup.input.hasFocus() and not popup.busy


def test_continue_in_chat_opens_the_exchange_as_a_new_conversation(
    qtbot: QtBot, shell: DesktopShell, services: AppServices, window: MainWindow
) -> None:
    popup = open_popup(qtbot, shell, selection="Bonjour tout le monde")
    assert popup.selection_frame.isVisibleTo(popup)
    ask(qtbot, popup, "Translate this.")
    qtbot.waitUntil(lambda: not popup.busy, timeout=ANSWER_MS)
    assert popup.continue_button.isEnabled()

    popup.continue_button.click()

    assert not popup.isVisible() and window.isVisible()
    opened = window.chat.conversation_id
    assert opened is not None and opened != popup.conversation_id
    messages = services.history.messages(opened)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].text == with_selection("Translate this.", "Bonjour tout le monde")
    assert messages[1].text == popup.answer.text
    assert [w.role for w in window.chat.message_widgets()] == ["user", "assistant"]


def test_a_removed_selection_is_not_sent(
    qtbot: QtBot, shell: DesktopShell, services: AppServices
) -> None:
    popup = open_popup(qtbot, shell, selection="secret text")
    popup.remove_selection_button.click()
    assert not popup.selection_frame.isVisibleTo(popup)
    ask(qtbot, popup, QUESTION)
    qtbot.waitUntil(lambda: not popup.busy, timeout=ANSWER_MS)
    (conversation,) = services.history.list_conversations()
    assert services.history.messages(conversation.id)[0].text == QUESTION


def test_a_quick_ask_while_the_chat_answers_waits_and_lands_in_its_own_conversation(
    qtbot: QtBot, shell: DesktopShell, services: AppServices, window: MainWindow
) -> None:
    window.show()
    started: list[int] = []
    services.runner.answerStarted.connect(lambda rid, _cid: started.append(rid))
    window.composer.set_text(LONG_QUESTION)
    window.composer.send_button.click()
    chat_request = window._request
    assert chat_request is not None

    popup = open_popup(qtbot, shell)
    popup_request = ask(qtbot, popup, QUESTION)
    assert "Waiting" in popup.status.text()

    qtbot.waitUntil(lambda: not popup.busy and not window.busy, timeout=ANSWER_MS)
    assert started == [chat_request, popup_request]  # one model, in the order asked
    chat_conversation = window.chat.conversation_id
    assert chat_conversation is not None and chat_conversation != popup.conversation_id
    chat_answer = services.history.messages(chat_conversation)[-1].text
    assert popup.conversation_id is not None
    popup_answer = services.history.messages(popup.conversation_id)[-1].text
    assert "Paris" in popup_answer and "Paris" not in chat_answer
    assert popup.answer.text == popup_answer


def test_with_history_off_the_quick_ask_leaves_no_conversation_behind(
    qtbot: QtBot, shell: DesktopShell, services: AppServices, window: MainWindow
) -> None:
    services.settings.update({"quick_ask_history": False})
    popup = open_popup(qtbot, shell)
    ask(qtbot, popup, QUESTION)
    qtbot.waitUntil(lambda: not popup.busy, timeout=ANSWER_MS)
    assert services.history.list_conversations() == []

    created = popup.continue_in_chat()  # continuing still works: the exchange is copied
    assert created is not None
    assert [c.id for c in services.history.list_conversations()] == [created]
    assert "Paris" in services.history.messages(created)[1].text


def test_without_a_model_the_popup_says_so(qtbot: QtBot, hardware: Hardware) -> None:
    services = AppServices(app_paths().ensure(), hardware=hardware)
    try:
        popup = QuickAskPopup(services)
        qtbot.addWidget(popup)
        popup.show_popup("")
        assert popup.ask(QUESTION) is None
        assert "No model" in popup.status.text()
    finally:
        services.shutdown()
