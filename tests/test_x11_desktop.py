"""The desktop parts that need a real X server: the global shortcut (a key grab, pressed with
xdotool), the selection brought along (set with xclip) and the tray (trayer as the tray host).

Runs on its own Xvfb, without a window manager: the hardest case for taking the focus. The
tools are build dependencies (packaging/debian-build-deps.txt); a box without them says so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from assistant.ui.hotkey import GlobalHotkey, parse_shortcut

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("Xvfb", "xdotool", "xclip", "trayer")


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (see packaging/debian-build-deps.txt)")
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        number = pipe.readline().strip()
    assert number, "Xvfb did not start"
    yield f":{number}"
    server.terminate()
    server.wait(timeout=30)


def x_env(display: str) -> dict[str, str]:
    env = dict(os.environ)
    env["DISPLAY"] = display
    return env


def xdotool(display: str, *args: str) -> None:
    subprocess.run(["xdotool", *args], env=x_env(display), check=True, timeout=30)


def test_shortcuts_are_read_from_settings_text() -> None:
    shortcut = parse_shortcut("Ctrl+Alt+Space")
    assert shortcut.modifiers == {"ctrl", "alt"} and shortcut.key == "Space"
    assert str(parse_shortcut("alt+shift+k")) == "Alt+Shift+k"
    for bad in ("Space", "Ctrl+", "Ctrl+Alt", "Hyper+X", ""):
        with pytest.raises(ValueError):
            parse_shortcut(bad)


def test_the_shortcut_fires_for_its_combination_only(qtbot: QtBot, display: str) -> None:
    hotkey = GlobalHotkey(display=display)
    try:
        assert hotkey.set_shortcut("Ctrl+Alt+Space") == ""
        pressed: list[int] = []
        hotkey.activated.connect(pressed.append)
        xdotool(display, "key", "ctrl+alt+x", "space", "ctrl+space")  # none of these
        xdotool(display, "key", "ctrl+alt+space")
        qtbot.waitUntil(lambda: len(pressed) == 1)
        assert pressed[0] > 0  # the X server's time of the key press
        qtbot.wait(300)
        assert len(pressed) == 1

        assert hotkey.set_shortcut("") == "" and not hotkey.active  # off
        xdotool(display, "key", "ctrl+alt+space")
        qtbot.wait(300)
        assert len(pressed) == 1
    finally:
        hotkey.close()


def test_a_combination_taken_by_another_app_is_named(display: str) -> None:
    other_app = GlobalHotkey(display=display)
    ours = GlobalHotkey(display=display)
    try:
        assert other_app.set_shortcut("Ctrl+Alt+Q") == ""
        problem = ours.set_shortcut("Ctrl+Alt+Q")
        assert "Ctrl+Alt+Q is already used by another app" in problem
        assert not ours.active
        assert ours.set_shortcut("Ctrl+Alt+W") == ""  # another one still works
        assert "not a key" in ours.set_shortcut("Ctrl+NoSuchKey")
    finally:
        other_app.close()
        ours.close()


SESSION = textwrap.dedent(
    """
    import json, subprocess, sys, time
    from PySide6.QtWidgets import QApplication, QSystemTrayIcon
    from assistant.ui.desktop import DesktopShell
    from assistant.ui.main_window import MainWindow
    from assistant.ui.services import AppServices

    app = QApplication(sys.argv)
    def wait_until(condition, seconds=20.0):
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.02)
        return bool(condition())

    wait_until(QSystemTrayIcon.isSystemTrayAvailable)
    services = AppServices.create()
    window = MainWindow(services)
    shell = DesktopShell(services, window)
    out = {"tray": shell.tray.available, "quit_on_close": app.quitOnLastWindowClosed(),
           "hotkey_problem": shell.hotkey_problem}
    window.show()
    wait_until(window.isActiveWindow, 5)
    window.close()
    wait_until(lambda: services.state["tray_notice_shown"], 5)
    out["notice_shown"] = services.state["tray_notice_shown"]
    out["running_after_close"] = not services.shutting_down

    # xclip stays behind to serve the selection: it must not hold our output open.
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["xclip", "-selection", "clipboard"], input=b"the user's clipboard", **quiet)
    subprocess.run(["xclip", "-selection", "primary"], input=b"Selected in another app", **quiet)
    subprocess.run(["xdotool", "key", "ctrl+alt+space"])
    wait_until(lambda: shell._popup is not None and shell.popup.input.hasFocus())
    popup = shell.popup
    out["popup_visible"] = popup.isVisible()
    out["popup_focused"] = popup.isActiveWindow() and popup.input.hasFocus()
    out["selection"] = popup.selection
    out["selection_shown"] = popup.selection_frame.isVisible()
    screen = app.screenAt(popup.geometry().center()).availableGeometry()
    out["centred"] = abs(popup.geometry().center().x() - screen.center().x()) <= 2

    # Focus elsewhere, then the shortcut again: the popup takes the keyboard back.
    window.show()
    shell._focus_x11(window)
    wait_until(window.isActiveWindow, 5)
    subprocess.run(["xdotool", "key", "ctrl+alt+space"])
    out["refocused"] = wait_until(lambda: popup.isActiveWindow() and popup.input.hasFocus())
    # Pressed while the popup has the focus, the shortcut puts it away.
    subprocess.run(["xdotool", "key", "ctrl+alt+space"])
    out["hidden_again"] = wait_until(lambda: not popup.isVisible(), 5)
    clip = subprocess.run(["xclip", "-o", "-selection", "clipboard"], capture_output=True)
    out["clipboard_after"] = clip.stdout.decode()
    services.quit()
    print("RESULT " + json.dumps(out))
    """
)


def test_in_a_real_x11_session_the_tray_keeps_the_app_and_the_shortcut_opens_the_popup(
    display: str, tmp_path: Path
) -> None:
    tray_host = subprocess.Popen(
        ["trayer", "--edge", "bottom", "--align", "right"],
        env=x_env(display),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        env = x_env(display)
        env["QT_QPA_PLATFORM"] = "xcb"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        run = subprocess.run(
            [sys.executable, "-c", SESSION],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=300,
        )
    finally:
        tray_host.terminate()
        tray_host.wait(timeout=30)
    lines = [line for line in run.stdout.decode().splitlines() if line.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr.decode()[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result == {
        "tray": True,
        "quit_on_close": False,
        "hotkey_problem": "",
        "notice_shown": True,
        "running_after_close": True,
        "popup_visible": True,
        "popup_focused": True,
        "selection": "Selected in another app",
        "selection_shown": True,
        "centred": True,
        "refocused": True,
        "hidden_again": True,
        "clipboard_after": "the user's clipboard",  # read, never changed
    }
