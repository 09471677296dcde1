"""The few Xlib calls the tray app needs, through ctypes (libX11 is on every X11 desktop).

A connection of its own, separate from Qt's: the global hotkey is one passive key grab on the
root window (``XGrabKey``: the X server tells us about that one combination only; we never see
any other keystroke), and the quick-ask popup can take the keyboard focus with ``CurrentTime``
(a focus request from Qt with a stale timestamp is ignored by the server when no window manager
runs).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

SHIFT, LOCK, CONTROL, MOD1, MOD2, MOD4 = 1, 2, 4, 8, 16, 64
MODIFIERS = {"shift": SHIFT, "ctrl": CONTROL, "alt": MOD1, "meta": MOD4, "super": MOD4}
# Caps Lock and Num Lock change the state of every key press: grab with each of them too, and
# ignore them when matching.
IGNORED = (0, LOCK, MOD2, LOCK | MOD2)

KEY_PRESS = 2
BAD_ACCESS = 10
GRAB_MODE_ASYNC = 1
REVERT_TO_PARENT = 2
CURRENT_TIME = 0


class XKeyEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("root", ctypes.c_ulong),
        ("subwindow", ctypes.c_ulong),
        ("time", ctypes.c_ulong),
        ("x", ctypes.c_int),
        ("y", ctypes.c_int),
        ("x_root", ctypes.c_int),
        ("y_root", ctypes.c_int),
        ("state", ctypes.c_uint),
        ("keycode", ctypes.c_uint),
        ("same_screen", ctypes.c_int),
    ]


class XEvent(ctypes.Union):
    _fields_ = [("type", ctypes.c_int), ("xkey", XKeyEvent), ("pad", ctypes.c_long * 24)]


class XErrorEvent(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("resourceid", ctypes.c_ulong),
        ("serial", ctypes.c_ulong),
        ("error_code", ctypes.c_ubyte),
        ("request_code", ctypes.c_ubyte),
        ("minor_code", ctypes.c_ubyte),
    ]


ErrorHandler = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(XErrorEvent))


def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XConnectionNumber.argtypes = [ctypes.c_void_p]
    lib.XStringToKeysym.restype = ctypes.c_ulong
    lib.XStringToKeysym.argtypes = [ctypes.c_char_p]
    lib.XKeysymToKeycode.restype = ctypes.c_ubyte
    lib.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    lib.XGrabKey.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_ulong,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
    ]
    lib.XUngrabKey.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint, ctypes.c_ulong]
    lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XFlush.argtypes = [ctypes.c_void_p]
    lib.XPending.argtypes = [ctypes.c_void_p]
    lib.XNextEvent.argtypes = [ctypes.c_void_p, ctypes.POINTER(XEvent)]
    lib.XSetErrorHandler.restype = ctypes.c_void_p
    lib.XSetErrorHandler.argtypes = [ctypes.c_void_p]
    lib.XSetInputFocus.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_ulong]
    lib.XRaiseWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
    return lib


@dataclass(frozen=True)
class Grab:
    keycode: int
    modifiers: int


class Display:
    """One connection to the X server named by ``DISPLAY``; ``OSError`` if there is none."""

    def __init__(self, name: str | None = None) -> None:
        lib = _library()
        if lib is None:
            raise OSError("libX11 is not installed")
        self._lib = lib
        self._display = lib.XOpenDisplay(name.encode() if name else None)
        if not self._display:
            raise OSError(f"cannot open the X display {name or '(DISPLAY)'}")
        self.root = lib.XDefaultRootWindow(self._display)
        self._errors: list[int] = []
        # Kept referenced: a ctypes callback that is garbage-collected crashes when called.
        self._handler = ErrorHandler(self._on_error)

    @property
    def fileno(self) -> int:
        return int(self._lib.XConnectionNumber(self._display))

    def close(self) -> None:
        if self._display:
            self._lib.XCloseDisplay(self._display)
            self._display = None

    def _on_error(self, _display: int, event: ctypes._Pointer[XErrorEvent]) -> int:
        self._errors.append(int(event.contents.error_code))
        return 0

    def keycode(self, key: str) -> int:
        """The keycode of a key named as X names keysyms ("space", "a", "F1"); 0 if unknown."""
        candidates = [key.lower()] if len(key) == 1 else [key, key.lower(), key.capitalize()]
        for name in candidates:
            keysym = self._lib.XStringToKeysym(name.encode("ascii", "ignore"))
            if keysym:
                return int(self._lib.XKeysymToKeycode(self._display, keysym))
        return 0

    def grab(self, keycode: int, modifiers: int) -> Grab | None:
        """Grab one combination on the root window; ``None`` when another client holds it."""
        self._errors.clear()
        previous = self._lib.XSetErrorHandler(ctypes.cast(self._handler, ctypes.c_void_p))
        try:
            for extra in IGNORED:
                self._lib.XGrabKey(
                    self._display,
                    keycode,
                    modifiers | extra,
                    self.root,
                    0,
                    GRAB_MODE_ASYNC,
                    GRAB_MODE_ASYNC,
                )
            self._lib.XSync(self._display, 0)  # errors come back now, not later
        finally:
            self._lib.XSetErrorHandler(previous)
        grab = Grab(keycode, modifiers)
        if BAD_ACCESS in self._errors:
            self.ungrab(grab)
            return None
        return grab

    def ungrab(self, grab: Grab) -> None:
        for extra in IGNORED:
            self._lib.XUngrabKey(self._display, grab.keycode, grab.modifiers | extra, self.root)
        self._lib.XSync(self._display, 0)

    def key_presses(self) -> list[tuple[int, int, int]]:
        """The key presses waiting: (keycode, modifiers without the locks, X time)."""
        found = []
        event = XEvent()
        while self._display and self._lib.XPending(self._display):
            self._lib.XNextEvent(self._display, ctypes.byref(event))
            if event.type == KEY_PRESS:
                key = event.xkey
                found.append((int(key.keycode), int(key.state) & ~(LOCK | MOD2), int(key.time)))
        return found

    def focus(self, window: int) -> bool:
        """Raise ``window`` and give it the keyboard focus now (``CurrentTime`` is never
        stale). False when the server refused (the window is not mapped yet)."""
        self._errors.clear()
        # Xlib's default handler would exit the process on the BadMatch of an unmapped window.
        previous = self._lib.XSetErrorHandler(ctypes.cast(self._handler, ctypes.c_void_p))
        try:
            self._lib.XRaiseWindow(self._display, window)
            self._lib.XSetInputFocus(self._display, window, REVERT_TO_PARENT, CURRENT_TIME)
            self._lib.XSync(self._display, 0)
        finally:
            self._lib.XSetErrorHandler(previous)
        return not self._errors
