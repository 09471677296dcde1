"""Load progress and cancelling a load in the runner and the chat window, with the real SmolLM2
model (llama.cpp reports the progress and stops the load), real SQLite, real Qt offscreen."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from assistant.engine.base import ChatProvider, GenerationSettings, load_percent
from assistant.models.hardware import Hardware
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.providers import ProviderSettings, load_gguf
from assistant.settings import Settings
from assistant.ui.main_window import MainWindow
from assistant.ui.services import AppServices
from assistant.ui.worker import ModelRunner, SettingsSnapshot

pytestmark = [pytest.mark.gui, pytest.mark.slow]

QUESTION = "What is the capital of France?"
LONG_QUESTION = "Write a long story about a dragon who learns to fly over the mountains."
LOAD_MS = 120_000
ANSWER_MS = 300_000
GREEDY = GenerationSettings(temperature=0.0, max_tokens=32, repeat_penalty=1.0)
LONG = GenerationSettings(temperature=0.0, max_tokens=400)


@pytest.fixture
def model_id(model_path: Path) -> str:
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.update({"temperature": 0.0, "max_tokens": 32, "threads": 1})
    return ModelStore().import_file(model_path).id


class Gate:
    """A loader that waits at the door until opened, then loads the real model for real."""

    def __init__(self, open_now: bool = True) -> None:
        self.opened = threading.Event()
        if open_now:
            self.opened.set()
        self.loads = 0

    def __call__(self, path: Path, settings: ProviderSettings, name: str) -> ChatProvider:
        self.loads += 1
        self.opened.wait(timeout=120)
        return load_gguf(path, settings, name)


@pytest.fixture
def start(hardware: Hardware, model_id: str) -> Iterator[Callable[[Gate], AppServices]]:
    started: list[AppServices] = []

    def start_one(gate: Gate) -> AppServices:
        services = AppServices(app_paths().ensure(), hardware=hardware, load_file=gate)
        started.append(services)
        return services

    yield start_one
    for services in started:
        services.shutdown()


def open_window(qtbot: QtBot, services: AppServices) -> MainWindow:
    window = MainWindow(services)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    return window


def ask(runner: ModelRunner, services: AppServices, question: str, **options: object) -> int:
    conversation_id = services.history.create_conversation().id
    generation = options.pop("generation", GREEDY)
    return runner.ask(conversation_id, question, generation, client="test", **options)


# --- the window --------------------------------------------------------------------------------


def test_the_window_shows_how_far_the_load_is(
    qtbot: QtBot, start: Callable[[Gate], AppServices]
) -> None:
    services = start(Gate())
    runner = services.runner
    seen: list[tuple[float, str, int, bool]] = []
    window: MainWindow | None = None

    def on_progress(_model_id: str, fraction: float) -> None:
        # Connected after the window's own slot: the window has shown this report already.
        assert window is not None
        picker = window.picker
        text = window.status_label.text()
        seen.append((fraction, text, picker.progress.value(), picker.cancel_button.isVisible()))

    window = open_window(qtbot, services)
    runner.loadProgress.connect(on_progress)
    qtbot.waitUntil(lambda: runner.ready, timeout=LOAD_MS)

    assert seen, "no progress reached the window"
    fractions = [f for f, *_ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for fraction, text, value, cancellable in seen:
        assert text.startswith("Loading ") and text.endswith(f"… {load_percent(fraction)} %")
        assert value == load_percent(fraction)
        assert cancellable
    assert not window.picker.progress.isVisible()
    assert not window.picker.cancel_button.isVisible()
    assert window.status_label.text().startswith("Ready")
    assert runner.load_fraction is None


def test_cancel_stops_the_load_and_the_next_load_answers(
    qtbot: QtBot, start: Callable[[Gate], AppServices], model_id: str
) -> None:
    gate = Gate(open_now=False)
    services = start(gate)
    runner = services.runner
    failures: list[str] = []
    runner.loadFailed.connect(lambda *args: failures.append(args[1]))
    window = open_window(qtbot, services)
    picker = window.picker
    qtbot.waitUntil(picker.cancel_button.isVisible, timeout=10_000)
    assert runner.loading
    # The load waits for the window's first paint: cancel once it is at llama.cpp's door, the
    # case this test is about (a cancel before the load began is stopped before it, simpler).
    qtbot.waitUntil(lambda: gate.loads == 1, timeout=10_000)

    qtbot.mouseClick(picker.cancel_button, Qt.MouseButton.LeftButton)
    assert picker.state.text() == "Cancelling…" and not picker.cancel_button.isEnabled()
    with qtbot.waitSignal(runner.loadCancelled, timeout=LOAD_MS) as cancelled:
        gate.opened.set()  # llama.cpp starts reading and stops at its first report
    assert cancelled.args == [model_id]

    assert failures == []  # a cancel is not an error
    assert not window.banner.isVisible()
    assert not (runner.loading or runner.ready) and runner.model_id is None
    assert "was cancelled" in window.status_label.text()
    assert picker.state.text() == "Not loaded"
    assert not picker.progress.isVisible() and not picker.cancel_button.isVisible()
    assert window.composer.edit.hasFocus()

    picker.pick(model_id)  # the app is usable: the next load works and answers
    qtbot.waitUntil(lambda: runner.ready, timeout=LOAD_MS)
    window.composer.set_text(QUESTION)
    window.composer.send_button.click()
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    assert "Paris" in window.chat.message_widgets()[-1].text
    assert gate.loads == 2


# --- the runner --------------------------------------------------------------------------------


def test_a_load_cancelled_before_it_starts_keeps_the_model_in_use(
    qtbot: QtBot, start: Callable[[Gate], AppServices], model_id: str
) -> None:
    gate = Gate()
    services = start(gate)
    runner = services.runner
    with qtbot.waitSignal(runner.loaded, timeout=LOAD_MS):
        runner.load(model_id, services.settings)
    long_answer = ask(runner, services, LONG_QUESTION, generation=LONG)
    started: list[str] = []
    runner.loadStarted.connect(started.append)

    runner.load(model_id, services.settings)  # queued behind the answer
    assert runner.loading and not runner.ready
    runner.cancel_load()
    runner.stop(long_answer)
    with qtbot.waitSignal(runner.loadCancelled, timeout=ANSWER_MS):
        pass
    assert started == []  # it never started: the model in use was not freed
    assert runner.ready and runner.model_id == model_id and not runner.loading

    finished: list[int] = []
    runner.answerFinished.connect(lambda rid, _cid, _mid: finished.append(rid))
    rid = ask(runner, services, QUESTION)
    qtbot.waitUntil(lambda: rid in finished, timeout=ANSWER_MS)
    assert started == [] and gate.loads == 1


def test_stopping_a_request_stops_the_load_it_started(
    qtbot: QtBot, start: Callable[[Gate], AppServices], model_id: str
) -> None:
    gate = Gate(open_now=False)
    services = start(gate)
    runner = services.runner
    returned: dict[int, str] = {}
    runner.questionReturned.connect(lambda rid, _cid, question: returned.update({rid: question}))
    snapshot = SettingsSnapshot(services.settings.as_dict())
    with qtbot.waitSignal(runner.loadStarted, timeout=10_000):
        rid = ask(runner, services, QUESTION, model=model_id, settings=snapshot)

    runner.stop(rid)
    with qtbot.waitSignal(runner.requestEnded, timeout=LOAD_MS):
        gate.opened.set()
    assert returned == {rid: QUESTION}  # never started: its front end keeps the question
    assert not runner.ready
    assert services.history.messages(services.history.list_conversations()[0].id) == []
