"""Cloud answers in the chat window: only after consent, exactly what was previewed, on the
remote lane while the real local model (SmolLM2) stays loaded. Plus the offline guarantee: with
cloud off, no flow opens a connection to anything but loopback (checked at the socket).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest
from keyring.backends import fail
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from assistant import secrets
from assistant.cli import main
from assistant.cloud import make_endpoint
from assistant.models.hardware import Hardware
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.settings import Settings
from assistant.ui.main_window import MainWindow
from assistant.ui.message_view import format_footer
from assistant.ui.services import AppServices
from tests.cloud_server import FakeCloud

pytestmark = [pytest.mark.gui, pytest.mark.slow]

KEY = "sk-test-0123456789abcdef"
QUESTION = "What is the capital of France?"
LOAD_MS = 120_000
ANSWER_MS = 300_000


@pytest.fixture
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud("openai", key=KEY) as started:
        yield started


@pytest.fixture
def services(
    hardware: Hardware, model_path: Path, cloud: FakeCloud, memory_keyring: object
) -> Iterator[AppServices]:
    ModelStore().import_file(model_path)
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.update({"temperature": 0.0, "max_tokens": 32, "cloud_enabled": True})
    from assistant.cloud import CloudConfig

    CloudConfig.for_paths(app_paths()).save(
        make_endpoint("team", "openai", cloud.url, "big-model", "Team server")
    )
    secrets.set_cloud_key("team", KEY)
    started = AppServices(app_paths().ensure(), hardware=hardware)
    yield started
    started.shutdown()


def open_window(qtbot: QtBot, services: AppServices) -> MainWindow:
    window = MainWindow(services)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(lambda: services.runner.ready, timeout=LOAD_MS)
    return window


def ask_locally(qtbot: QtBot, window: MainWindow, text: str = QUESTION) -> int:
    window.composer.set_text(text)
    window.composer.send_button.click()
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    conversation_id = window.chat.conversation_id
    assert conversation_id is not None
    return conversation_id


def answer_boxes(monkeypatch: pytest.MonkeyPatch, answer: QMessageBox.StandardButton) -> list[str]:
    """Answer every question box with ``answer``; returns their texts."""
    asked: list[str] = []

    def question(_parent: Any, _title: str, text: str, *_args: Any) -> QMessageBox.StandardButton:
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    return asked


def test_a_cloud_answer_goes_only_after_consent_and_exactly_as_previewed(
    qtbot: QtBot,
    services: AppServices,
    cloud: FakeCloud,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    app_home: Path,
) -> None:
    caplog.set_level(logging.DEBUG)
    window = open_window(qtbot, services)
    loads: list[str] = []
    services.runner.loadStarted.connect(loads.append)
    conversation_id = ask_locally(qtbot, window, QUESTION + " Reply to bob@example.com.")
    local = services.history.messages(conversation_id)
    assert window.cloud.mode_button.text().endswith("Local only")

    # Local only: asking is refused unless the user allows the cloud for this chat.
    asked = answer_boxes(monkeypatch, QMessageBox.StandardButton.No)
    assert window.cloud.ask_cloud() is None
    assert "Local only" in asked[0] and window.cloud.consent is None
    answer_boxes(monkeypatch, QMessageBox.StandardButton.Yes)

    # The preview, declined: nothing leaves.
    window.cloud.ask_cloud()
    dialog = window.cloud.consent
    assert dialog is not None
    assert "Cloud: ask each time" in window.cloud.mode_button.text()
    assert dialog.redact_box.isChecked()
    assert "[email]" in dialog.text.toPlainText() and "bob@" not in dialog.text.toPlainText()
    dialog.reject()
    assert cloud.requests == []

    # The preview, accepted with "latest question only" and no redaction.
    window.cloud.ask_cloud()
    dialog = window.cloud.consent
    assert dialog is not None
    dialog.latest_only_box.setChecked(True)
    dialog.redact_box.setChecked(False)
    previewed = [m.to_dict() for m in dialog.messages()]
    assert previewed == [
        {"role": "system", "content": services.settings["system_prompt"]},
        {"role": "user", "content": QUESTION + " Reply to bob@example.com."},
    ]
    assert "bob@example.com" in dialog.text.toPlainText()
    dialog.send_button.click()
    assert window.busy
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)

    (request,) = cloud.chat_requests
    assert request.body["messages"] == previewed  # exactly what was shown
    messages = services.history.messages(conversation_id)
    assert messages[:2] == local  # the local answer is kept
    cloud_answer = messages[2]
    assert (cloud_answer.role, cloud_answer.provider, cloud_answer.text) == (
        "assistant",
        "team",
        cloud.reply,
    )
    assert "cloud: team" in format_footer(cloud_answer)
    assert window.chat.message_widgets()[-1].text == cloud.reply
    # Answered on the remote lane: the local model was neither unloaded nor loaded again.
    assert loads == [] and services.runner.ready and services.runner.model_id

    (entry,) = services.ledger.entries()
    assert entry.sent == previewed and entry.status == "complete"
    assert entry.received_chars == len(cloud.reply) and entry.message_id == cloud_answer.id

    # Allowed for this provider: the next ask sends at once, with the remembered options.
    services.ledger.set_mode(conversation_id, "allowed", "team")
    window.cloud.refresh()
    assert "Cloud allowed: Team server" in window.cloud.mode_button.text()
    assert window.cloud.ask_cloud() is not None
    assert window.cloud.consent is None
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    assert len(cloud.chat_requests) == 2

    services.shutdown()
    for path in app_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert not any(KEY in record.getMessage() for record in caplog.records)


def test_the_global_switch_and_a_failure_leave_the_chat_as_it_was(
    qtbot: QtBot, services: AppServices, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, services)
    conversation_id = ask_locally(qtbot, window)
    services.ledger.set_mode(conversation_id, "allowed", "team")
    before = services.history.messages(conversation_id)

    services.settings.update({"cloud_enabled": False})
    asked = answer_boxes(monkeypatch, QMessageBox.StandardButton.Cancel)
    assert window.cloud.ask_cloud() is None
    assert "switched off" in asked[0]
    assert not window.cloud.ask_button.isVisible()
    assert "Local only" in window.cloud.mode_button.text()
    assert cloud.requests == []

    services.settings.update({"cloud_enabled": True})
    cloud.fault.status = 401
    assert window.cloud.ask_cloud() is not None
    qtbot.waitUntil(lambda: not window.busy, timeout=ANSWER_MS)
    assert "rejected the API key" in window.banner.message()
    assert KEY not in window.banner.message() + window.banner.hint()
    assert services.history.messages(conversation_id) == before
    (entry,) = services.ledger.entries()
    assert entry.status == "error" and "401" in entry.error


def test_the_advisor_suggests_and_sends_nothing(
    qtbot: QtBot, services: AppServices, cloud: FakeCloud
) -> None:
    window = open_window(qtbot, services)
    ask_locally(qtbot, window, "What is the latest news about the Mars mission this week?")
    assert window.cloud.advisor.isVisible()
    assert "might answer this better: The " in window.cloud.advisor.label.text()  # a reason
    assert cloud.requests == []


def test_cloud_settings_store_the_key_masked_and_test_the_connection(
    qtbot: QtBot, services: AppServices, cloud: FakeCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = open_window(qtbot, services)
    dialog = window.cloud.open_settings()
    dialog.new_button.click()
    dialog.preset_box.setCurrentIndex(dialog.preset_box.findData("custom"))
    dialog._on_preset_chosen(dialog.preset_box.currentIndex())
    dialog.name_edit.setText("second")
    dialog.url_edit.setText(cloud.url)
    dialog.model_edit.setText("bigger-model")
    dialog.key_edit.setText(KEY)
    dialog.save_button.click()
    assert keyring.get_password(secrets.SERVICE, "cloud-key:second") == KEY
    assert dialog.key_state.text().startswith("Stored: sk-…cdef")
    assert "second" in services.providers
    dialog.test_button.click()
    qtbot.waitUntil(lambda: dialog.status.text().startswith(("✓", "✗")), timeout=30_000)
    assert dialog.status.text().startswith("✓ Connected")
    assert cloud.chat_requests == []

    dialog.url_edit.setText("http://example.com/v1")
    dialog.save_button.click()
    assert "https" in dialog.status.text()

    # No keyring: the user is told, and may keep the key in memory for this session.
    keyring.set_keyring(fail.Keyring())
    asked = answer_boxes(monkeypatch, QMessageBox.StandardButton.Yes)
    dialog.url_edit.setText(cloud.url)
    dialog.key_edit.setText(KEY + "x")
    dialog.save_button.click()
    assert "no system keyring" in asked[0].lower()
    assert secrets.cloud_key_source("second") == "session"
    assert "in memory" in dialog.key_state.text() and KEY not in dialog.key_state.text()
    secrets.delete_cloud_key("second")


# --- the offline guarantee -------------------------------------------------------------------


@pytest.fixture
def network_guard(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Refuse (and record) every connection to anything but loopback."""
    attempts: list[Any] = []
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def loopback(address: Any) -> bool:
        if not isinstance(address, tuple):
            return True  # a Unix socket stays on this computer
        host = str(address[0])
        return host in ("localhost", "::1") or host.startswith("127.")

    def connect(self: socket.socket, address: Any) -> None:
        if not loopback(address):
            attempts.append(address)
            raise OSError("network access blocked by the test")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not loopback(address):
            attempts.append(address)
            return 111
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return attempts


def test_with_cloud_off_nothing_connects_beyond_loopback(
    qtbot: QtBot,
    hardware: Hardware,
    model_path: Path,
    network_guard: list[Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ModelStore().import_file(model_path)
    services = AppServices(app_paths().ensure(), hardware=hardware)
    try:
        window = open_window(qtbot, services)
        conversation_id = ask_locally(qtbot, window)  # chat
        window.sidebar.refresh()
        services.history.search("capital")  # history
        services.models.list_installed()  # model listing
        services.catalog()
        asked = answer_boxes(monkeypatch, QMessageBox.StandardButton.Cancel)
        window.cloud.ask_cloud()  # cloud is off: refused before anything
        assert "switched off" in asked[0] and window.cloud.consent is None
        # A second front end on the same queue (what the quick-ask popup will be).
        rid = services.runner.ask(
            conversation_id,
            "And of Italy?",
            services.settings.generation_settings(),
            client="quick",
        )
        qtbot.waitUntil(lambda: not services.runner.is_active(rid), timeout=ANSWER_MS)
    finally:
        services.shutdown()
    assert main(["history", "list"]) == 0
    assert main(["models", "list"]) == 0
    capsys.readouterr()
    assert network_guard == []


def test_a_closed_window_is_freed_at_once(qtbot: QtBot) -> None:
    """The cloud part must not hold its window in a reference cycle: a closed window is
    gone without waiting for the garbage collector (tests and a long session count on it)."""
    import gc
    import weakref

    services = AppServices(app_paths().ensure())
    try:
        gc.disable()
        window = MainWindow(services)
        freed = weakref.ref(window)
        window.close()
        del window
        assert freed() is None
    finally:
        gc.enable()
        services.shutdown()
