"""Start at login: the entry each desktop reads, written into a temporary home."""

from __future__ import annotations

import plistlib
import shlex
from pathlib import Path

import pytest

from assistant import autostart

COMMAND = ["/opt/offline assistant/bin/offline-assistant", "--hidden"]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path / "user"


def test_linux_writes_a_desktop_entry_that_starts_hidden(home: Path) -> None:
    assert not autostart.is_enabled("linux", home)
    autostart.set_enabled(True, "linux", home, COMMAND)

    entry = home / ".config" / "autostart" / "offline-assistant.desktop"
    assert autostart.is_enabled("linux", home)
    lines = entry.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "[Desktop Entry]"
    values = dict(line.split("=", 1) for line in lines[1:])
    assert values["Type"] == "Application"
    assert values["Name"] == "Offline Assistant"
    assert shlex.split(values["Exec"]) == COMMAND  # the space in the path survives
    assert values["Terminal"] == "false"

    autostart.set_enabled(False, "linux", home, COMMAND)
    assert not entry.exists() and not autostart.is_enabled("linux", home)
    autostart.set_enabled(False, "linux", home, COMMAND)  # already off: nothing to do


def test_linux_follows_xdg_config_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = home / "elsewhere"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    autostart.set_enabled(True, "linux", home, COMMAND)
    assert (config / "autostart" / "offline-assistant.desktop").exists()


def test_macos_writes_a_launch_agent(home: Path) -> None:
    autostart.set_enabled(True, "darwin", home, COMMAND)

    agent = home / "Library" / "LaunchAgents" / "offline-assistant.plist"
    data = plistlib.loads(agent.read_bytes())
    assert data == {"Label": "offline-assistant", "ProgramArguments": COMMAND, "RunAtLoad": True}
    assert autostart.is_enabled("darwin", home)
    autostart.set_enabled(False, "darwin", home, COMMAND)
    assert not agent.exists()


def test_windows_keeps_the_command_in_the_run_key_as_one_line() -> None:
    assert autostart.entry_path("win32") is None  # a registry value, not a file
    line = autostart.subprocess_line(["C:\\Program Files\\OA\\oa.exe", "--hidden"])
    assert line == '"C:\\Program Files\\OA\\oa.exe" --hidden'


def test_the_start_command_starts_hidden() -> None:
    command = autostart.start_command()
    assert command[-1] == "--hidden"
    assert Path(command[0]).exists()
