"""The global shortcut on macOS: Carbon's ``RegisterEventHotKey``, through ctypes.

Carbon hot keys are the one global-shortcut API that needs no accessibility permission: the
system tells the app about its own combination only, never about other keys (an event tap
would see every keystroke, and asks the user for that). Carbon is loaded when the backend is
made, so this module imports anywhere (the key tables are tested on every OS).

Modifier names follow ``assistant.ui.hotkey.parse_shortcut``: Ctrl is the Control key, Alt is
Option (⌥), Meta (also "Cmd") is Command (⌘).
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

from assistant.ui.hotkey import GlobalHotkey, Shortcut, _Backend, _taken

log = logging.getLogger(__name__)

# Carbon's modifier bits (Events.h).
CARBON_MODIFIERS = {"meta": 1 << 8, "shift": 1 << 9, "alt": 1 << 11, "ctrl": 1 << 12}

# Virtual key codes of the keys' positions on an ANSI keyboard (Events.h, kVK_*): Carbon names
# positions, so a hot key keeps its place whatever the keyboard layout.
_LETTERS = {
    "a": 0x00, "s": 0x01, "d": 0x02, "f": 0x03, "h": 0x04, "g": 0x05, "z": 0x06, "x": 0x07,
    "c": 0x08, "v": 0x09, "b": 0x0B, "q": 0x0C, "w": 0x0D, "e": 0x0E, "r": 0x0F, "y": 0x10,
    "t": 0x11, "o": 0x1F, "u": 0x20, "i": 0x22, "p": 0x23, "l": 0x25, "j": 0x26, "k": 0x28,
    "n": 0x2D, "m": 0x2E,
}  # fmt: skip
_DIGITS = {
    "1": 0x12, "2": 0x13, "3": 0x14, "4": 0x15, "6": 0x16, "5": 0x17, "9": 0x19, "7": 0x1A,
    "8": 0x1C, "0": 0x1D,
}  # fmt: skip
_NAMED = {
    "space": 0x31, "return": 0x24, "enter": 0x24, "tab": 0x30, "escape": 0x35, "esc": 0x35,
    "backspace": 0x33, "delete": 0x33, "=": 0x18, "-": 0x1B, "]": 0x1E, "[": 0x21,
    "'": 0x27, ";": 0x29, "\\": 0x2A, ",": 0x2B, "/": 0x2C, ".": 0x2F, "`": 0x32,
}  # fmt: skip
_FUNCTION = {
    1: 0x7A, 2: 0x78, 3: 0x63, 4: 0x76, 5: 0x60, 6: 0x61, 7: 0x62, 8: 0x64, 9: 0x65, 10: 0x6D,
    11: 0x67, 12: 0x6F, 13: 0x69, 14: 0x6B, 15: 0x71, 16: 0x6A, 17: 0x40, 18: 0x4F, 19: 0x50,
    20: 0x5A,
}  # fmt: skip


def key_code(key: str) -> int | None:
    """Carbon's virtual key code for ``key`` ("Space", "K", "F5", ","), or ``None``."""
    name = key.lower()
    for table in (_LETTERS, _DIGITS, _NAMED):
        if name in table:
            return table[name]
    if name.startswith("f") and name[1:].isdigit():
        return _FUNCTION.get(int(name[1:]))
    return None


def modifier_bits(modifiers: frozenset[str]) -> int:
    bits = 0
    for name in modifiers:
        bits |= CARBON_MODIFIERS[name]
    return bits


def _four_cc(text: str) -> int:
    """A Carbon ``OSType``: four ASCII letters as one big-endian number."""
    return int.from_bytes(text.encode("ascii"), "big")


_SIGNATURE = _four_cc("OAsk")
_HOTKEY_ID = 1
_EVENT_CLASS_KEYBOARD = _four_cc("keyb")
_EVENT_HOTKEY_PRESSED = 5
_PARAM_DIRECT_OBJECT = _four_cc("----")
_TYPE_EVENT_HOTKEY_ID = _four_cc("hkid")
_HOTKEY_EXISTS = -9878  # eventHotKeyExistsErr: another app registered the combination
_NO_ERR = 0
_NOT_HANDLED = -9874  # eventNotHandledErr: let other handlers see the event


class _EventHotKeyID(ctypes.Structure):
    _fields_ = [("signature", ctypes.c_uint32), ("id", ctypes.c_uint32)]


class _EventTypeSpec(ctypes.Structure):
    _fields_ = [("eventClass", ctypes.c_uint32), ("eventKind", ctypes.c_uint32)]


# OSStatus handler(EventHandlerCallRef, EventRef, void *userData)
_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


class MacBackend(_Backend):
    """One Carbon hot key, reported on the main thread's run loop (which Qt's runs)."""

    def __init__(self, owner: GlobalHotkey) -> None:
        carbon: Any = ctypes.CDLL("/System/Library/Frameworks/Carbon.framework/Carbon")
        carbon.GetApplicationEventTarget.restype = ctypes.c_void_p
        carbon.GetApplicationEventTarget.argtypes = []
        carbon.InstallEventHandler.restype = ctypes.c_int32
        carbon.InstallEventHandler.argtypes = [
            ctypes.c_void_p,
            _HANDLER,
            ctypes.c_ulong,
            ctypes.POINTER(_EventTypeSpec),
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        carbon.RemoveEventHandler.restype = ctypes.c_int32
        carbon.RemoveEventHandler.argtypes = [ctypes.c_void_p]
        carbon.RegisterEventHotKey.restype = ctypes.c_int32
        carbon.RegisterEventHotKey.argtypes = [
            ctypes.c_uint32,
            ctypes.c_uint32,
            _EventHotKeyID,
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.POINTER(ctypes.c_void_p),
        ]
        carbon.UnregisterEventHotKey.restype = ctypes.c_int32
        carbon.UnregisterEventHotKey.argtypes = [ctypes.c_void_p]
        carbon.GetEventParameter.restype = ctypes.c_int32
        carbon.GetEventParameter.argtypes = [
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._carbon = carbon
        self._owner = owner
        self._hotkey = ctypes.c_void_p()
        self._handler = ctypes.c_void_p()
        self._callback = _HANDLER(self._on_event)  # kept: Carbon holds only the pointer
        spec = _EventTypeSpec(_EVENT_CLASS_KEYBOARD, _EVENT_HOTKEY_PRESSED)
        status = carbon.InstallEventHandler(
            carbon.GetApplicationEventTarget(),
            self._callback,
            1,
            ctypes.byref(spec),
            None,
            ctypes.byref(self._handler),
        )
        if status != _NO_ERR:
            raise OSError(f"Carbon did not install the hot key handler (error {status})")

    def register(self, shortcut: Shortcut) -> str:
        code = key_code(shortcut.key)
        if code is None:
            return f"“{shortcut.key}” is not a key this shortcut can use."
        status = self._carbon.RegisterEventHotKey(
            code,
            modifier_bits(shortcut.modifiers),
            _EventHotKeyID(_SIGNATURE, _HOTKEY_ID),
            self._carbon.GetApplicationEventTarget(),
            0,
            ctypes.byref(self._hotkey),
        )
        if status == _HOTKEY_EXISTS:
            return _taken(shortcut)
        if status != _NO_ERR:
            return f"macOS did not accept {shortcut} as a shortcut (error {status})."
        return ""

    def unregister(self) -> None:
        if self._hotkey:
            self._carbon.UnregisterEventHotKey(self._hotkey)
            self._hotkey = ctypes.c_void_p()

    def close(self) -> None:
        self.unregister()
        if self._handler:
            self._carbon.RemoveEventHandler(self._handler)
            self._handler = ctypes.c_void_p()

    def _on_event(self, _call: int | None, event: int | None, _data: int | None) -> int:
        try:
            found = _EventHotKeyID()
            status = self._carbon.GetEventParameter(
                event,
                _PARAM_DIRECT_OBJECT,
                _TYPE_EVENT_HOTKEY_ID,
                None,
                ctypes.sizeof(found),
                None,
                ctypes.byref(found),
            )
            if status == _NO_ERR and (found.signature, found.id) == (_SIGNATURE, _HOTKEY_ID):
                self._owner.activated.emit(0)
                return _NO_ERR
        except Exception:  # an exception must not unwind into Carbon's C frames
            log.exception("The macOS hot key handler failed")
        return _NOT_HANDLED
