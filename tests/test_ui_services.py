"""Several front ends on one loaded model: the app's services, answers scoped to a request, and
a second provider beside the local engine. Real model, real SQLite, real Qt offscreen.

The "second client" here is what the quick-ask popup and the local API will be: plain code that
submits requests to the shared runner and follows only its own ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QThread
from pytestqt.qtbot import QtBot

from assistant.chat.history import HistoryStore
from assistant.engine.base import (
    CancelToken,
    ChatMessage,
    Generation,
    GenerationSettings,
    GenerationStats,
)
from assistant.models.hardware import Hardware
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.providers import ProviderEntry, ProviderSettings
from assistant.settings import Settings
from assistant.ui.main_window import MainWindow
from assistant.ui.services import AppServices
from assistant.ui.worker import ModelRunner

pytestmark = [pytest.mark.gui, pytest.mark.slow]

QUESTION = "What is the capital of France?"
LONG_QUESTION = "Write a long story about a dragon who learns to fly over the mountains."
LOAD_MS = 120_000
ANSWER_MS = 300_000
GREEDY = GenerationSettings(temperature=0.0, max_tokens=48, repeat_penalty=1.0)
LONG = GenerationSettings(temperature=0.0, max_tokens=400)


@pytest.fixture
def model_id(model_path: Path) -> str:
    return ModelStore().import_file(model_path).id


@pytest.fixture
def services(hardware: Hardware, model_id: str) -> Iterator[AppServices]:
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.update({"temperature": 0.0, "max_tokens": 48})
    started = AppServices(app_paths().ensure(), hardware=hardware)
    yield started
    started.shutdown()


@dataclass
class Client:
    """A second front end: submits requests and keeps what it hears about its own ids only."""

    runner: ModelRunner
    ids: set[int] = field(default_factory=set)
    text: dict[int, str] = field(default_factory=dict)
    chunks: dict[int, int] = field(default_factory=dict)  # request id -> pieces received
    finished: dict[int, int] = field(default_factory=dict)  # request id -> answer message id
    failed: dict[int, str] = field(default_factory=dict)
    returned: dict[int, str] = field(default_factory=dict)
    ended: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.runner.textReceived.connect(self._on_text)
        self.runner.answerFinished.connect(self._on_finished)
        self.runner.answerFailed.connect(self._on_failed)
        self.runner.questionReturned.connect(self._on_returned)
        self.runner.requestEnded.connect(self._on_ended)

    def ask(self, conversation_id: int, question: str, **options: Any) -> int:
        generation = options.pop("generation", GREEDY)
        rid = self.runner.ask(conversation_id, question, generation, client="test", **options)
        self.ids.add(rid)
        return rid

    def _on_text(self, rid: int, _conversation_id: int, text: str) -> None:
        if rid in self.ids:
            self.text[rid] = self.text.get(rid, "") + text
            self.chunks[rid] = self.chunks.get(rid, 0) + 1

    def _on_finished(self, rid: int, _conversation_id: int, message_id: int) -> None:
        if rid in self.ids:
            self.finished[rid] = message_id

    def _on_failed(self, rid: int, _cid: int, message: str, *_rest: object) -> None:
        if rid in self.ids:
            self.failed[rid] = message

    def _on_returned(self, rid: int, _conversation_id: int, question: str) -> None:
        if rid in self.ids:
            self.returned[rid] = question

    def _on_ended(self, rid: int) -> None:
        if rid in self.ids:
            self.ended.append(rid)


def open_window(qtbot: QtBot, services: AppServices) -> MainWindow:
    window = MainWindow(services)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: services.runner.ready, timeout=LOAD_MS)
    return window


def send(qtbot: QtBot, window: MainWindow, text: str) -> int:
    window.composer.set_text(text)
    window.composer.send_button.click()
    assert window.busy and window._request is not None
    return window._request


def new_conversation(history: HistoryStore) -> int:
    return history.create_conversation(system_prompt="You are a helpful assistant.").id


def saved_answer(history: HistoryStore, conversation_id: int) -> tuple[str, str, str]:
    messages = history.messages(conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    answer = messages[1]
    return answer.text, answer.status, answer.provider or ""


# --- two front ends, one model --------------------------------------------------------------


def test_two_front_ends_ask_at_once_and_each_sees_only_its_own_answer(
    qtbot: QtBot, services: AppServices
) -> None:
    window = open_window(qtbot, services)
    loads: list[str] = []
    services.runner.loadStarted.connect(loads.append)
    client = Client(services.runner)
    popup_conversation = new_conversation(services.history)
    started: list[int] = []
    services.runner.answerStarted.connect(lambda rid, _cid: started.append(rid))

    chat_request = send(qtbot, window, LONG_QUESTION)
    popup_request = client.ask(popup_conversation, QUESTION)
    assert services.runner.busy and window.busy

    qtbot.waitUntil(lambda: popup_request in client.ended, timeout=ANSWER_MS)
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)

    assert started == [chat_request, popup_request]  # one model thread, in order of asking
    chat_conversation = window.chat.conversation_id
    assert chat_conversation is not None and chat_conversation != popup_conversation
    chat_text, chat_status, _ = saved_answer(services.history, chat_conversation)
    popup_text, popup_status, _ = saved_answer(services.history, popup_conversation)
    assert chat_status == popup_status == "complete"
    assert "Paris" in popup_text and "Paris" not in chat_text
    # Each front end heard its own stream, whole, and nothing of the other's.
    assert client.text == {popup_request: popup_text}
    assert window.chat.message_widgets()[-1].text == chat_text
    assert popup_text not in window.chat.message_widgets()[-1].text
    assert loads == []  # the same loaded model served both


def test_stopping_one_request_leaves_the_other_running(qtbot: QtBot, services: AppServices) -> None:
    window = open_window(qtbot, services)
    client = Client(services.runner)
    popup_conversation = new_conversation(services.history)

    send(qtbot, window, LONG_QUESTION)
    popup_request = client.ask(popup_conversation, LONG_QUESTION, generation=LONG)
    streaming = window.chat.streaming_widget
    assert streaming is not None
    qtbot.waitUntil(lambda: len(streaming.text) > 20, timeout=ANSWER_MS)

    window.stop_action.trigger()  # Esc in the chat stops the chat's answer, nothing else
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    qtbot.waitUntil(lambda: len(client.text.get(popup_request, "")) > 20, timeout=ANSWER_MS)
    assert services.runner.is_active(popup_request)
    chat_conversation = window.chat.conversation_id
    assert chat_conversation is not None
    assert saved_answer(services.history, chat_conversation)[1] == "interrupted"

    services.runner.stop(popup_request)
    qtbot.waitUntil(lambda: popup_request in client.ended, timeout=ANSWER_MS)
    text, status, _ = saved_answer(services.history, popup_conversation)
    assert status == "interrupted" and text == client.text[popup_request]
    # It streamed: many pieces, not one block at the end (at most one per frame).
    assert client.chunks[popup_request] >= 2


def test_a_request_stopped_while_queued_never_starts_and_comes_back(
    qtbot: QtBot, services: AppServices
) -> None:
    window = open_window(qtbot, services)
    client = Client(services.runner)
    conversation_id = new_conversation(services.history)
    send(qtbot, window, LONG_QUESTION)
    queued = client.ask(conversation_id, QUESTION)

    services.runner.stop(queued)
    qtbot.waitUntil(lambda: queued in client.ended, timeout=ANSWER_MS)
    assert client.returned == {queued: QUESTION}
    assert services.history.messages(conversation_id) == []  # never saved, never answered
    assert window.busy or window.chat.streaming_widget is None  # the chat went on
    window.stop_answer()


def test_closing_the_chat_window_keeps_the_model_for_other_front_ends(
    qtbot: QtBot, services: AppServices
) -> None:
    window = open_window(qtbot, services)
    loads: list[str] = []
    services.runner.loadStarted.connect(loads.append)
    window.close()

    assert services.runner.ready and not services.shutting_down
    client = Client(services.runner)
    conversation_id = new_conversation(services.history)
    rid = client.ask(conversation_id, QUESTION)
    qtbot.waitUntil(lambda: rid in client.finished, timeout=ANSWER_MS)
    assert "Paris" in saved_answer(services.history, conversation_id)[0]
    assert loads == []


def test_quitting_saves_every_answer_in_progress_and_returns_queued_questions(
    qtbot: QtBot, services: AppServices
) -> None:
    window = open_window(qtbot, services)
    client = Client(services.runner)
    first = new_conversation(services.history)
    second = new_conversation(services.history)
    writing = client.ask(first, LONG_QUESTION, generation=LONG)
    queued = client.ask(second, QUESTION)
    qtbot.waitUntil(lambda: len(client.text.get(writing, "")) > 20, timeout=ANSWER_MS)
    window.composer.set_text("a draft")

    assert services.shutdown()

    assert client.returned == {queued: QUESTION}
    with HistoryStore(app_paths().history_db) as history:
        text, status, _ = saved_answer(history, first)
        assert status == "interrupted" and len(text) > 20
        assert history.messages(second) == []
    from assistant.state import WindowState

    assert WindowState.load(app_paths().state_file)["draft"] == "a draft"
    assert services.shutdown()  # a second quit does nothing


# --- a second provider ------------------------------------------------------------------------


class ReversingProvider:
    """A remote provider in miniature: answers with the last question reversed, word by word,
    and remembers what it was sent and on which thread it ran."""

    provider_name = "reverser"
    kind = "remote"
    needs_key = False
    needs_network = True

    def __init__(self, model: str) -> None:
        self.model_name = model
        self.warnings: list[str] = []
        self.sent: list[list[ChatMessage]] = []
        self.threads: list[QThread] = []
        self.closed = False

    def stream_chat(
        self,
        messages: list[ChatMessage],
        settings: GenerationSettings,
        cancel: CancelToken | None = None,
    ) -> Generation:
        self.sent.append(list(messages))
        self.threads.append(QThread.currentThread())
        words = messages[-1].content.split()[::-1]
        generation = Generation(iter([]))

        def chunks() -> Iterator[str]:
            for index, word in enumerate(words):
                if cancel is not None and cancel.cancelled:
                    break
                yield word if index == 0 else " " + word
            generation.stats = GenerationStats(
                model=self.model_name,
                provider=self.provider_name,
                completion_tokens=len(words),
                stop_reason="stop",
            )

        generation._chunks = chunks()
        return generation

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def reverser(services: AppServices) -> list[ReversingProvider]:
    opened: list[ReversingProvider] = []

    def open_reverser(model: str, _settings: ProviderSettings) -> ReversingProvider:
        provider = ReversingProvider(model)
        opened.append(provider)
        return provider

    services.providers.register(
        ProviderEntry("reverser", "remote", open_reverser, needs_network=True)  # type: ignore[arg-type]
    )
    return opened


def test_a_front_end_switches_provider_per_question_without_reloading_the_local_model(
    qtbot: QtBot, services: AppServices, reverser: list[ReversingProvider]
) -> None:
    window = open_window(qtbot, services)
    loads: list[str] = []
    services.runner.loadStarted.connect(loads.append)
    model_thread: QThread = services.runner.model_thread
    client = Client(services.runner)
    conversation_id = new_conversation(services.history)

    local_first = client.ask(conversation_id, QUESTION)
    qtbot.waitUntil(lambda: local_first in client.finished, timeout=ANSWER_MS)
    remote = client.ask(conversation_id, "one two three", provider="reverser", model="big-1")
    qtbot.waitUntil(lambda: remote in client.finished, timeout=ANSWER_MS)
    local_again = client.ask(conversation_id, QUESTION)
    qtbot.waitUntil(lambda: local_again in client.finished, timeout=ANSWER_MS)

    assert client.failed == {}
    messages = services.history.messages(conversation_id)
    answers = [m for m in messages if m.role == "assistant"]
    assert [m.provider for m in answers] == ["local", "reverser", "local"]
    assert answers[1].text == "three two one" and answers[1].model == "big-1"
    assert "Paris" in answers[2].text
    assert loads == [] and services.runner.ready  # the local model stayed loaded
    (provider,) = reverser
    assert provider.model_name == "big-1"
    # It ran off the model thread, so a slow network never holds up a local answer.
    (ran_on,) = provider.threads
    assert ran_on.objectName() == "remote-worker"
    assert ran_on is not model_thread and model_thread.objectName() == "model-worker"
    window.close()


def test_a_prepare_step_decides_exactly_what_is_sent(
    qtbot: QtBot, services: AppServices, reverser: list[ReversingProvider]
) -> None:
    client = Client(services.runner)
    conversation_id = new_conversation(services.history)
    services.history.add_message(conversation_id, "user", "a private earlier question")
    services.history.add_message(conversation_id, "assistant", "a private earlier answer")

    def latest_question_only(messages: list[ChatMessage]) -> list[ChatMessage]:
        return [m for m in messages if m.role == "system"] + messages[-1:]

    rid = client.ask(
        conversation_id, "alpha beta", provider="reverser", model="m", prepare=latest_question_only
    )
    qtbot.waitUntil(lambda: rid in client.ended, timeout=ANSWER_MS)
    (provider,) = reverser
    assert provider.sent == [
        [
            ChatMessage("system", "You are a helpful assistant."),
            ChatMessage("user", "alpha beta"),
        ]
    ]
    assert client.text[rid] == "beta alpha"


def test_an_unknown_provider_fails_with_a_clear_message(
    qtbot: QtBot, services: AppServices
) -> None:
    client = Client(services.runner)
    conversation_id = new_conversation(services.history)
    rid = client.ask(conversation_id, QUESTION, provider="nobody", model="x")
    qtbot.waitUntil(lambda: rid in client.ended, timeout=ANSWER_MS)
    assert "no provider called 'nobody'" in client.failed[rid]


def test_remote_providers_are_closed_on_quit(
    qtbot: QtBot, services: AppServices, reverser: list[ReversingProvider]
) -> None:
    client = Client(services.runner)
    rid = client.ask(new_conversation(services.history), "x y", provider="reverser", model="m")
    qtbot.waitUntil(lambda: rid in client.ended, timeout=ANSWER_MS)
    assert services.shutdown()
    assert [p.closed for p in reverser] == [True]


# --- settings told to every front end ---------------------------------------------------------


def test_front_ends_hear_of_a_setting_changed_by_another_process(
    qtbot: QtBot, services: AppServices
) -> None:
    """The CLI (another process) changes the theme while the app runs: the app re-reads the
    file and tells its windows."""
    import subprocess
    import sys

    heard: list[list[str]] = []
    services.settingsChanged.connect(heard.append)
    code = (
        "from assistant.paths import app_paths\n"
        "from assistant.settings import Settings\n"
        "s = Settings.load(app_paths().settings_file)\n"
        "s.set('theme', 'dark')\n"
        "s.save()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    qtbot.waitUntil(lambda: any("theme" in keys for keys in heard), timeout=10_000)
    assert services.settings["theme"] == "dark"
