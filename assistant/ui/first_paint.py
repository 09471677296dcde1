"""Work that can wait until a window is on screen.

On a small machine every thread started before the first paint competes with it for the cores
and for Python's lock: the Markdown warm-up, the default model's load (llama.cpp's import and
the file read). Such work starts once the window has painted its first frame.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QThread, QTimer, Signal, Slot


class _FirstPaintWatcher(QObject):
    def __init__(self, widget: QObject, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            watched.removeEventFilter(self)
            # A zero timer runs once this paint and the flush to the screen that follows it
            # are done.
            QTimer.singleShot(0, watched, self._callback)
            self.deleteLater()
        return False


def after_first_paint(widget: QObject, callback: Callable[[], None]) -> None:
    """Call ``callback`` (on the UI thread) once ``widget`` has painted for the first time.
    Never, when it is never painted: give a hidden window's work another trigger."""
    _FirstPaintWatcher(widget, callback)


class _Waiter(QObject):
    def __init__(self, released: threading.Event, timeout_s: float) -> None:
        super().__init__()
        self._released = released
        self._timeout_s = timeout_s

    @Slot()
    def wait(self) -> None:
        self._released.wait(self._timeout_s)


class ThreadHold(QObject):
    """Holds a worker thread's queue: what is sent to the thread after the hold waits, in
    order, until ``release()`` (or ``timeout_s``, so a hold forgotten never blocks it for
    good). Requests are taken meanwhile; only their work waits."""

    _holding = Signal()

    def __init__(self, thread: QThread, timeout_s: float, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._released = threading.Event()
        # Kept as long as the hold: it lives on the thread, and dies with the hold after the
        # thread has ended (at the end of the app) or long after its one call returned.
        self._waiter = _Waiter(self._released, timeout_s)
        self._waiter.moveToThread(thread)
        self._holding.connect(self._waiter.wait)  # queued: runs on the thread, in turn
        self._holding.emit()

    @Slot()
    def release(self) -> None:
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()
