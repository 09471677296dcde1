"""Start at login: the per-user entry each desktop reads when someone logs in.

- Linux and other XDG desktops: ``offline-assistant.desktop`` in ``$XDG_CONFIG_HOME/autostart``
  (``~/.config/autostart``), per the freedesktop Desktop Application Autostart spec;
- macOS: a LaunchAgent, ``~/Library/LaunchAgents/offline-assistant.plist``, with RunAtLoad;
- Windows: a value in the per-user Run key (``HKCU\\...\\CurrentVersion\\Run``).

The app starts hidden in the tray (``--hidden``). Nothing here needs administrator rights, and
turning it off removes exactly what turning it on wrote.
"""

from __future__ import annotations

import contextlib
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from assistant import APP_ID, APP_NAME
from assistant.atomic import atomic_write_text
from assistant.paths import program_command

HIDDEN_FLAG = "--hidden"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def start_command() -> list[str]:
    """How the login starts the app: the installed ``offline-assistant`` script when it is on
    the PATH, else this Python running the package (a checkout, a venv not on the PATH)."""
    script = shutil.which(APP_ID)
    if script:
        return [script, HIDDEN_FLAG]
    # A bundle (the Windows setup, the macOS .app, the Linux tarball) is started by its own
    # executable: `-m assistant` would reach its argument parser as an unknown option.
    return [*program_command(), HIDDEN_FLAG]


def _platform(platform: str | None) -> str:
    name = platform or sys.platform
    if name.startswith("win"):
        return "windows"
    if name == "darwin":
        return "macos"
    return "xdg"


def entry_path(platform: str | None = None, home: Path | None = None) -> Path | None:
    """The file the login reads (``None`` on Windows, where it is a registry value)."""
    kind = _platform(platform)
    home = home or Path.home()
    if kind == "macos":
        return home / "Library" / "LaunchAgents" / f"{APP_ID}.plist"
    if kind == "xdg":
        config = os.environ.get("XDG_CONFIG_HOME") or str(home / ".config")
        return Path(config) / "autostart" / f"{APP_ID}.desktop"
    return None


def desktop_entry(command: list[str]) -> str:
    """A freedesktop autostart entry that starts ``command``."""
    return (
        "[Desktop Entry]\n"
        "Type=Application\n"
        f"Name={APP_NAME}\n"
        "Comment=A private assistant, a keystroke away (starts in the tray)\n"
        f"Exec={shlex.join(command)}\n"
        f"Icon={APP_ID}\n"
        "Terminal=false\n"
        "X-GNOME-Autostart-enabled=true\n"
    )


def launch_agent(command: list[str]) -> str:
    """A LaunchAgent that starts ``command`` once at login (not kept alive: Quit means quit)."""
    plist = {"Label": APP_ID, "ProgramArguments": command, "RunAtLoad": True}
    return plistlib.dumps(plist).decode("utf-8")


def is_enabled(platform: str | None = None, home: Path | None = None) -> bool:
    path = entry_path(platform, home)
    if path is not None:
        return path.exists()
    return _windows_value() is not None


def set_enabled(
    enabled: bool,
    platform: str | None = None,
    home: Path | None = None,
    command: list[str] | None = None,
) -> None:
    """Write (or remove) the login entry. ``OSError`` when the file or key cannot be written."""
    command = command or start_command()
    path = entry_path(platform, home)
    kind = _platform(platform)
    if path is None:
        _set_windows_value(subprocess_line(command) if enabled else None)
        return
    if not enabled:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    text = launch_agent(command) if kind == "macos" else desktop_entry(command)
    atomic_write_text(path, text)


def subprocess_line(command: list[str]) -> str:
    """``command`` as one Windows command line (the Run key holds a string)."""
    return subprocess.list2cmdline(command)


def _windows_value() -> str | None:
    try:
        import winreg  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:  # type: ignore[attr-defined,unused-ignore]
            value, _kind = winreg.QueryValueEx(key, APP_NAME)  # type: ignore[attr-defined,unused-ignore]
    except OSError:
        return None
    return str(value)


def _set_windows_value(line: str | None) -> None:
    import winreg  # type: ignore[import-not-found,unused-ignore]

    access = winreg.KEY_SET_VALUE  # type: ignore[attr-defined,unused-ignore]
    with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, access) as key:  # type: ignore[attr-defined,unused-ignore]
        if line is None:
            with contextlib.suppress(FileNotFoundError):
                winreg.DeleteValue(key, APP_NAME)  # type: ignore[attr-defined,unused-ignore]
        else:
            winreg.SetValueEx(key, APP_NAME, 0, winreg.REG_SZ, line)  # type: ignore[attr-defined,unused-ignore]
