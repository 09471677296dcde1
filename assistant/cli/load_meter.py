"""A model load in the terminal: how far it is, and Ctrl+C to stop it.

While llama.cpp loads, Python runs only inside its callbacks (the log and the load progress);
a ``KeyboardInterrupt`` raised there would be printed as "Exception ignored" and lost. So during
a load Ctrl+C only raises a flag, which the progress callback turns into llama.cpp's "stop".

llama-cpp-python points file descriptors 1 and 2 (and ``sys.stderr``) at /dev/null while it
loads, so the meter writes to its own copy of the terminal's descriptor, taken before.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TextIO

from assistant.engine.base import load_percent

_ERASE_LINE = "\r\x1b[K"


class LoadMeter:
    """The ``LoadProgress`` of a load in the terminal: "Loading NAME… 42 %" on one line of
    ``stream`` (only when ``show``), and ``False`` (stop) once ``interrupted`` is set."""

    def __init__(self, name: str, stream: TextIO, *, show: bool) -> None:
        self.name = name
        self.stream = stream
        self.show = show
        self.interrupted = False
        self._shown = False

    def __call__(self, fraction: float) -> bool:
        if self.interrupted:
            return False
        self._write(f"Loading {self.name}… {load_percent(fraction)} %")
        return True

    def start(self) -> None:
        """Say that the load began (llama.cpp's first report can take a second)."""
        self._write(f"Loading {self.name}…")

    def interrupt(self) -> None:
        # Only the flag: this runs as a signal handler, maybe in the middle of a write to the
        # same stream, which a second write would break.
        self.interrupted = True

    def clear(self) -> None:
        """Erase the line, so what is printed next starts on a clean one."""
        if self._shown:
            self.stream.write(_ERASE_LINE)
            self.stream.flush()
            self._shown = False

    def _write(self, text: str) -> None:
        if self.show:
            self.stream.write(_ERASE_LINE + text)
            self.stream.flush()
            self._shown = True


@contextmanager
def load_meter(name: str, *, show: bool | None = None) -> Iterator[LoadMeter]:
    """A ``LoadMeter`` on stderr for the block, which catches Ctrl+C (on the main thread).
    ``show`` defaults to whether stderr is a terminal: a log file or a pipe gets no meter."""
    if show is None:
        show = sys.stderr.isatty()
    stream = _own_copy(sys.stderr) if show else None
    meter = LoadMeter(name, stream or sys.stderr, show=show)
    previous = None
    if threading.current_thread() is threading.main_thread():

        def on_interrupt(_signum: int, _frame: FrameType | None) -> None:
            meter.interrupt()

        previous = signal.signal(signal.SIGINT, on_interrupt)
    meter.start()
    try:
        yield meter
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        with contextlib.suppress(OSError):
            meter.clear()
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


def _own_copy(stream: TextIO) -> TextIO | None:
    """A text stream on a duplicate of ``stream``'s descriptor (``None`` if it has none)."""
    try:
        descriptor = os.dup(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return open(descriptor, "w", encoding=encoding, errors="replace", closefd=True)
