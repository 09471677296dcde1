"""The tray menu's actions and the model state it shows, offscreen (where no tray exists, the
menu still works and closing the window quits as before). The real tray is tested under Xvfb
in test_x11_desktop.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from assistant.models.hardware import Hardware
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.ui.desktop import DesktopShell
from assistant.ui.main_window import MainWindow
from assistant.ui.services import AppServices

pytestmark = pytest.mark.gui


@pytest.fixture
def services(hardware: Hardware) -> Iterator[AppServices]:
    started = AppServices(app_paths().ensure(), hardware=hardware)
    started.settings.update({"quick_ask_hotkey": ""})
    yield started
    started.shutdown()


@pytest.fixture
def shell(qtbot: QtBot, services: AppServices) -> Iterator[DesktopShell]:
    window = MainWindow(services)
    qtbot.addWidget(window)
    shell = DesktopShell(services, window)
    yield shell
    if shell._popup is not None:
        shell._popup.close()
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    app.setQuitOnLastWindowClosed(True)


def test_the_menu_offers_quick_ask_open_chat_the_model_and_quit(shell: DesktopShell) -> None:
    texts = [a.text() for a in shell.tray.menu.actions() if a.isVisible() and not a.isSeparator()]
    assert texts == ["Quick ask…", "Open chat", "No model loaded", "Quit"]
    assert not shell.tray.model_action.isEnabled()  # a state, not a command


def test_quick_ask_shows_the_popup_with_its_input_focused(
    qtbot: QtBot, shell: DesktopShell
) -> None:
    shell.tray.quick_ask_action.trigger()
    popup = shell.popup
    qtbot.waitExposed(popup)
    qtbot.waitUntil(popup.input.hasFocus)


def test_open_chat_brings_the_window_forward(qtbot: QtBot, shell: DesktopShell) -> None:
    assert not shell.window.isVisible()
    shell.tray.open_chat_action.trigger()
    qtbot.waitExposed(shell.window)
    assert shell.window.isVisible()


def test_quit_shuts_the_app_down(shell: DesktopShell, services: AppServices) -> None:
    shell.tray.quit_action.trigger()
    assert services.shutting_down


def test_without_a_tray_closing_the_window_quits_as_before(shell: DesktopShell) -> None:
    assert not shell.tray.available  # offscreen has no tray
    assert not shell.tray.keeps_running
    app = QApplication.instance()
    assert isinstance(app, QApplication) and app.quitOnLastWindowClosed()


@pytest.mark.slow
def test_the_menu_follows_the_model_loading_ready_and_answering(
    qtbot: QtBot, services: AppServices, model_path: Path
) -> None:
    model_id = ModelStore().import_file(model_path).id
    window = MainWindow(services)  # loads the default model
    qtbot.addWidget(window)
    shell = DesktopShell(services, window)
    seen: list[str] = []
    services.runner.busyChanged.connect(lambda busy: seen.append(shell.tray.model_state(busy)))
    assert shell.tray.model_action.text() == f"{model_id}: loading"
    qtbot.waitUntil(lambda: shell.tray.model_action.text() == f"{model_id}: ready", timeout=120_000)

    conversation = services.history.create_conversation().id
    generation = services.settings.generation_settings()
    rid = services.runner.ask(conversation, "Hi", generation, client="test")
    assert shell.tray.model_action.text() == f"{model_id}: answering"
    qtbot.waitUntil(lambda: not services.runner.is_active(rid), timeout=300_000)
    assert shell.tray.model_action.text() == f"{model_id}: ready"
    assert seen == [f"{model_id}: answering", f"{model_id}: ready"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG autostart entry")
def test_start_at_login_writes_and_removes_the_login_entry(
    shell: DesktopShell, services: AppServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    entry = tmp_path / "xdg" / "autostart" / "offline-assistant.desktop"
    services.settings.update({"start_at_login": True})
    assert "--hidden" in entry.read_text(encoding="utf-8")
    services.settings.update({"start_at_login": False})
    assert not entry.exists()
