"""Route llama.cpp's own log into Python logging, and let a caller read what it said.

llama.cpp explains a failed load only in its log ("unknown model architecture: 'xyz'");
llama-cpp-python raises a bare ``ValueError``. Capturing the log during a load lets the engine
name the real cause.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import llama_cpp

log = logging.getLogger("assistant.llama_cpp")

# ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT (continues the previous line). Even its
# warnings and errors go to the log file only: the engine turns failures into its own errors,
# and the terminal should not show llama.cpp's internals next to them.
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.INFO}
_CONT = 5
_captures: list[list[str]] = []
_lock = threading.Lock()
_installed = False
_last_level = logging.DEBUG


@llama_cpp.llama_log_callback
def _on_log(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    global _last_level
    message = text.decode("utf-8", errors="replace")
    with _lock:
        for buffer in _captures:
            buffer.append(message)
    py_level = _last_level if level == _CONT else _LEVELS.get(level, logging.DEBUG)
    _last_level = py_level
    if message.strip() and log.isEnabledFor(py_level):
        log.log(py_level, message.rstrip())


def install() -> None:
    """Replace llama-cpp-python's stderr printer with our logger (once per process)."""
    global _installed
    if not _installed:
        llama_cpp.llama_log_set(_on_log, ctypes.c_void_p(0))
        _installed = True


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect everything llama.cpp logs while the block runs."""
    install()
    buffer: list[str] = []
    with _lock:
        _captures.append(buffer)
    try:
        yield buffer
    finally:
        with _lock:
            _captures.remove(buffer)
