"""A global keyboard shortcut through the system's own hotkey API, never a key logger.

- X11: a passive grab of the one combination on the root window (``assistant.ui.x11``);
- Windows: ``RegisterHotKey`` (the thread's message queue gets ``WM_HOTKEY``);
- macOS: Carbon's ``RegisterEventHotKey`` (``assistant.ui.hotkey_macos``, no accessibility
  permission needed);
- Wayland (no global grabs for clients) is not available: the message says how to bind the
  desktop's own shortcut to ``offline-assistant --quick-ask``.

``GlobalHotkey.set_shortcut(text)`` returns "" when the shortcut works, or a sentence the
settings can show (the combination is taken by another app, unknown key, unsupported session).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractNativeEventFilter,
    QCoreApplication,
    QObject,
    QSocketNotifier,
    Signal,
    Slot,
)
from PySide6.QtGui import QGuiApplication

log = logging.getLogger(__name__)

COMMAND_HINT = "offline-assistant --quick-ask"
MODIFIER_NAMES = {
    "ctrl": "ctrl",
    "control": "ctrl",
    "alt": "alt",
    "option": "alt",
    "shift": "shift",
    "meta": "meta",
    "super": "meta",
    "win": "meta",
    "cmd": "meta",
}


@dataclass(frozen=True)
class Shortcut:
    modifiers: frozenset[str]
    key: str

    def __str__(self) -> str:
        order = [m for m in ("ctrl", "alt", "shift", "meta") if m in self.modifiers]
        return "+".join([m.capitalize() for m in order] + [self.key])


def parse_shortcut(text: str) -> Shortcut:
    """``"Ctrl+Alt+Space"`` as modifiers and a key; ``ValueError`` saying what is wrong."""
    parts = [p.strip() for p in text.replace("-", "+").split("+")]
    if not text.strip() or any(not p for p in parts):
        raise ValueError(f"“{text}” is not a shortcut like Ctrl+Alt+Space")
    *mods, key = parts
    modifiers = set()
    for mod in mods:
        name = MODIFIER_NAMES.get(mod.lower())
        if name is None:
            raise ValueError(f"“{mod}” is not a modifier key (use Ctrl, Alt, Shift or Meta)")
        modifiers.add(name)
    if key.lower() in MODIFIER_NAMES:
        raise ValueError(f"“{text}” has no key besides the modifiers")
    if not modifiers:
        raise ValueError(f"“{text}” needs at least one modifier, or it would steal a plain key")
    return Shortcut(frozenset(modifiers), key)


def wayland_hint() -> str:
    return (
        "This desktop session (Wayland) does not let apps set global shortcuts. Bind your "
        f"desktop's own keyboard shortcut to the command: {COMMAND_HINT}"
    )


class GlobalHotkey(QObject):
    """One global shortcut at a time.

    Signals:
        activated(int): the shortcut was pressed (with the X server time on X11, else 0).
    """

    activated = Signal(int)

    def __init__(self, parent: QObject | None = None, *, display: str | None = None) -> None:
        super().__init__(parent)
        self._display_name = display
        self._backend: _Backend | None = None
        self.shortcut: Shortcut | None = None

    @property
    def active(self) -> bool:
        return self.shortcut is not None

    def set_shortcut(self, text: str) -> str:
        """Use ``text`` ("" turns the shortcut off). Returns "" when it works, else why not."""
        self.clear()
        if not text.strip():
            return ""
        try:
            shortcut = parse_shortcut(text)
        except ValueError as exc:
            return str(exc)
        if self._backend is None:
            backend, problem = self._make_backend()
            if backend is None:
                return problem
            self._backend = backend
        problem = self._backend.register(shortcut)
        if not problem:
            self.shortcut = shortcut
        return problem

    def clear(self) -> None:
        if self._backend is not None and self.shortcut is not None:
            self._backend.unregister()
        self.shortcut = None

    def close(self) -> None:
        self.clear()
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _make_backend(self) -> tuple[_Backend | None, str]:
        if sys.platform.startswith("win"):
            return _WindowsBackend(self), ""
        if sys.platform == "darwin":
            from assistant.ui.hotkey_macos import MacBackend

            try:
                return MacBackend(self), ""
            except OSError as exc:
                return None, (
                    f"A global shortcut is not available here ({exc}). In System Settings › "
                    f"Keyboard › Keyboard Shortcuts, bind a shortcut to: {COMMAND_HINT}"
                )
        platform = QGuiApplication.platformName() if QGuiApplication.instance() else ""
        if platform.startswith("wayland") or (
            os.environ.get("WAYLAND_DISPLAY") and not os.environ.get("DISPLAY")
        ):
            return None, wayland_hint()
        try:
            return _X11Backend(self, self._display_name), ""
        except OSError as exc:
            return None, f"A global shortcut needs an X11 display ({exc})."


class _Backend:
    def register(self, shortcut: Shortcut) -> str:
        raise NotImplementedError

    def unregister(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _taken(shortcut: Shortcut) -> str:
    return (
        f"{shortcut} is already used by another app. Pick another quick ask shortcut in "
        "Settings, or free it in that app."
    )


class _X11Backend(_Backend):
    def __init__(self, owner: GlobalHotkey, display: str | None) -> None:
        from assistant.ui.x11 import Display

        self._owner = owner
        self.display = Display(display)
        self._grab: Any = None
        self._notifier = QSocketNotifier(self.display.fileno, QSocketNotifier.Type.Read, owner)
        self._notifier.activated.connect(self._on_readable)

    def register(self, shortcut: Shortcut) -> str:
        from assistant.ui.x11 import MODIFIERS

        keycode = self.display.keycode(shortcut.key)
        if not keycode:
            return f"“{shortcut.key}” is not a key this keyboard has."
        modifiers = 0
        for name in shortcut.modifiers:
            modifiers |= MODIFIERS[name]
        grab = self.display.grab(keycode, modifiers)
        if grab is None:
            return _taken(shortcut)
        self._grab = grab
        self._on_readable()  # XSync may have queued events the notifier will not announce
        return ""

    def unregister(self) -> None:
        if self._grab is not None:
            self.display.ungrab(self._grab)
            self._grab = None

    def close(self) -> None:
        self._notifier.setEnabled(False)
        self.display.close()

    @Slot()
    def _on_readable(self) -> None:
        for keycode, state, time in self.display.key_presses():
            grab = self._grab
            if grab is not None and keycode == grab.keycode and state == grab.modifiers:
                self._owner.activated.emit(time)


_WM_HOTKEY = 0x0312
_MOD = {"alt": 0x1, "ctrl": 0x2, "shift": 0x4, "meta": 0x8}
_MOD_NOREPEAT = 0x4000
_VK = {"space": 0x20, "return": 0x0D, "enter": 0x0D, "tab": 0x09, "escape": 0x1B}
_ERROR_HOTKEY_ALREADY_REGISTERED = 1409


def _virtual_key(key: str) -> int:
    if len(key) == 1 and key.isalnum():
        return ord(key.upper())
    name = key.lower()
    if name.startswith("f") and name[1:].isdigit() and 1 <= int(name[1:]) <= 24:
        return 0x6F + int(name[1:])
    return _VK.get(name, 0)


class _WindowsFilter(QAbstractNativeEventFilter):
    def __init__(self, backend: _WindowsBackend) -> None:
        super().__init__()
        self._backend = backend

    def nativeEventFilter(self, event_type: Any, message: Any) -> tuple[bool, int]:
        if bytes(event_type) == b"windows_generic_MSG":
            import ctypes.wintypes

            msg = ctypes.wintypes.MSG.from_address(int(message))
            if msg.message == _WM_HOTKEY and msg.wParam == self._backend.hotkey_id:
                self._backend.owner.activated.emit(0)
                return True, 0
        return False, 0


class _WindowsBackend(_Backend):
    hotkey_id = 0xA551

    def __init__(self, owner: GlobalHotkey) -> None:
        import ctypes

        self.owner = owner
        # A library object of our own (not the shared ctypes.windll.user32), which keeps the
        # call's error code: Python may overwrite GetLastError before it could be read.
        self._user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined,unused-ignore]
        self._registered = False
        self._filter = _WindowsFilter(self)
        app = QCoreApplication.instance()
        if app is not None:
            app.installNativeEventFilter(self._filter)

    def register(self, shortcut: Shortcut) -> str:
        import ctypes

        vk = _virtual_key(shortcut.key)
        if not vk:
            return f"“{shortcut.key}” is not a key this shortcut can use."
        mods = _MOD_NOREPEAT
        for name in shortcut.modifiers:
            mods |= _MOD[name]
        if not self._user32.RegisterHotKey(None, self.hotkey_id, mods, vk):
            if ctypes.get_last_error() == _ERROR_HOTKEY_ALREADY_REGISTERED:  # type: ignore[attr-defined,unused-ignore]
                return _taken(shortcut)
            return f"Windows did not accept {shortcut} as a shortcut."
        self._registered = True
        return ""

    def unregister(self) -> None:
        if self._registered:
            self._user32.UnregisterHotKey(None, self.hotkey_id)
            self._registered = False

    def close(self) -> None:
        app = QCoreApplication.instance()
        if app is not None:
            app.removeNativeEventFilter(self._filter)
