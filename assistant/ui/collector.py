"""Python's garbage collector runs on the GUI thread only.

Python collects reference cycles on whichever thread happens to allocate when a threshold is
crossed: the model thread, a download, a search worker. A cycle holding a Qt object (a window, a
file watcher) is then destroyed on that thread, which Qt forbids: a socket notifier torn down
from the wrong thread stays registered with the GUI thread's event loop after its file is
closed ("QSocketNotifier: Invalid socket N" on every loop turn, memory growing without end),
and a widget deleted there can crash the next event the GUI thread handles. Both happened here.

So a GUI process turns automatic collection off and collects from a timer on the GUI thread,
as Anki does for the same reason. Cycles wait at most :data:`YOUNG_INTERVAL_MS` for the young
generations; a full collection follows every :data:`FULL_EVERY` of those.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

YOUNG_INTERVAL_MS = 1_000
FULL_EVERY = 60
"""A full collection every minute: with the start-up heap frozen it walks only what the app made
since, a few milliseconds."""


class MainThreadCollector(QObject):
    """Owns the timer; :meth:`stop` gives automatic collection back (tests, a second start)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        self._rounds = 0
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(YOUNG_INTERVAL_MS)
        self._timer.timeout.connect(self.collect)
        self._timer.start()

    def collect(self) -> None:
        self._rounds += 1
        if self._rounds % FULL_EVERY == 0:
            gc.collect()
        else:
            gc.collect(1)

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
