"""The local API inside the desktop app: a third client of the shared runner, beside the chat
window, on the same loaded model. Real model, real Qt offscreen, real HTTP, the openai client."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from pytestqt.qtbot import QtBot

from assistant.models.hardware import detect_hardware
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.secrets import get_api_token
from assistant.settings import Settings
from assistant.ui.main_window import MainWindow
from assistant.ui.services import AppServices
from assistant.ui.settings_dialog import SettingsDialog

pytestmark = [pytest.mark.gui, pytest.mark.slow]

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = [SYSTEM, {"role": "user", "content": "What is the capital of France?"}]
LONG = [SYSTEM, {"role": "user", "content": "Write a long story about a dragon who can fly."}]
LOAD_MS = 120_000
ANSWER_MS = 300_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def model_id(model_path: Path) -> str:
    return ModelStore().import_file(model_path).id


@pytest.fixture
def services(model_id: str) -> Iterator[AppServices]:
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.update(
        {
            "temperature": 0.0,
            "max_tokens": 48,
            "repeat_penalty": 1.0,
            "api_enabled": True,
            "api_port": free_port(),
        }
    )
    started = AppServices(app_paths().ensure(), hardware=detect_hardware())
    yield started
    started.shutdown()


def api(services: AppServices) -> openai.OpenAI:
    assert services.local_api.is_running, services.local_api.error
    return openai.OpenAI(
        base_url=services.local_api.base_url,
        api_key=services.local_api.token,
        max_retries=0,
        timeout=300,
    )


def in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run a client on a thread of its own, so the Qt thread the app needs stays free."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def streamed_text(client: openai.OpenAI, messages: list[dict[str, str]], **options: Any) -> str:
    stream = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=messages,  # type: ignore[arg-type]
        stream=True,
        **options,
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_a_chat_answer_and_an_api_answer_at_once_on_one_model(
    qtbot: QtBot, services: AppServices
) -> None:
    window = MainWindow(services)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: services.runner.ready, timeout=LOAD_MS)
    loads: list[str] = []
    services.runner.loadStarted.connect(loads.append)
    started: list[int] = []
    services.runner.answerStarted.connect(lambda rid, _cid: started.append(rid))
    chats_before = len(services.history.list_conversations())

    window.composer.set_text("Write a short poem about the sea.")
    window.composer.send_button.click()
    assert window.busy
    thread, result = in_thread(lambda: streamed_text(api(services), QUESTION, temperature=0))
    qtbot.waitUntil(lambda: not thread.is_alive() and not window.busy, timeout=ANSWER_MS)

    assert isinstance(result[0], str) and "Paris" in result[0]
    assert len(started) == 2 and loads == []  # both on the one model already loaded
    # The chat's answer is saved; the API's is not in the history at all.
    conversations = services.history.list_conversations()
    assert len(conversations) == chats_before + 1
    saved = services.history.messages(conversations[0].id)
    assert [m.role for m in saved] == ["user", "assistant"] and saved[1].status == "complete"
    assert "Paris" not in saved[1].text
    assert window.chat.message_widgets()[-1].text == saved[1].text


def test_api_requests_are_kept_in_the_history_when_the_user_chooses(
    qtbot: QtBot, services: AppServices
) -> None:
    services.settings.update({"api_keep_history": True})
    # No window and no model loaded: the request loads the default model in its turn.
    thread, result = in_thread(
        lambda: api(services).chat.completions.create(
            model="smollm2-135m-instruct",
            messages=QUESTION,  # type: ignore[arg-type]
            temperature=0,
        )
    )
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=ANSWER_MS)
    reply = result[0]
    assert not isinstance(reply, BaseException), reply
    text = reply.choices[0].message.content
    assert "Paris" in text and reply.usage.completion_tokens > 1
    (kept,) = services.history.list_conversations()
    assert kept.title.startswith("API: ") and kept.system_prompt == SYSTEM["content"]
    saved = services.history.messages(kept.id)
    assert [(m.role, m.text) for m in saved] == [
        ("user", QUESTION[1]["content"]),
        ("assistant", text),
    ]


def test_the_setting_turns_the_api_on_and_off(qtbot: QtBot, services: AppServices) -> None:
    local_api = services.local_api
    url = local_api.base_url
    assert local_api.is_running and url.startswith("http://127.0.0.1:")
    assert local_api.token == get_api_token()  # made on first use and kept in the keyring
    heard: list[bool] = []
    local_api.stateChanged.connect(lambda: heard.append(local_api.is_running))

    services.settings.update({"api_enabled": False})
    assert not local_api.is_running and local_api.base_url == ""
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(url + "/models")

    port = free_port()
    services.settings.update({"api_enabled": True, "api_port": port})
    assert local_api.is_running and local_api.base_url == f"http://127.0.0.1:{port}/v1"
    assert heard == [False, True]
    thread, result = in_thread(lambda: [m.id for m in api(services).models.list()])
    qtbot.waitUntil(lambda: not thread.is_alive(), timeout=10_000)
    assert result == [["smollm2-135m-instruct"]]


def test_the_tray_menu_says_when_the_api_is_on(services: AppServices) -> None:
    from assistant.ui.tray import Tray

    tray = Tray(services)
    assert tray.api_action.isVisible()
    assert tray.api_action.text() == f"Local API on at {services.local_api.base_url}"
    services.settings.update({"api_enabled": False})
    assert not tray.api_action.isVisible()


def test_quitting_ends_api_answers_without_waiting_for_them(
    qtbot: QtBot, services: AppServices
) -> None:
    thread, _result = in_thread(lambda: streamed_text(api(services), LONG, max_tokens=2000))
    qtbot.waitUntil(lambda: services.runner.busy, timeout=LOAD_MS)
    qtbot.waitUntil(lambda: services.runner.model_id is not None, timeout=LOAD_MS)
    assert services.shutdown()
    assert not services.local_api.is_running
    thread.join(60)
    assert not thread.is_alive()  # the client heard the end (a cut stream or an error)


def test_settings_show_the_address_and_token(qtbot: QtBot, services: AppServices) -> None:
    dialog = SettingsDialog(services.settings, services.paths.data, gpu_offload=False)
    qtbot.addWidget(dialog)
    rows = dialog.api_rows
    assert rows.address.text() == f"http://127.0.0.1:{services.settings['api_port']}/v1"
    assert rows.token.text() == services.local_api.token
    rows.show_button.click()
    assert rows.token.echoMode() == rows.token.EchoMode.Normal
    dialog.editors["api_port"].setValue(9999)  # type: ignore[attr-defined]
    assert rows.address.text() == "http://127.0.0.1:9999/v1"
