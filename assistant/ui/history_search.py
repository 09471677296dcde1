"""The sidebar's search, off the UI thread: a newer query cancels an older one.

Each query runs as a task on a thread pool of its own with a read-only SQLite connection of its
own (``assistant.chat.search.HistorySearcher``), so the window's connection is never held and
the UI thread only shows results. Results arrive in stages, each a better list than the last;
a newer query interrupts the older one's SQLite statement at once.

The search thread yields to the UI thread: it runs at a lower priority (a nicer thread on Linux),
and asks for Python's lock (GIL) as seldom as it can, so a key press is never kept waiting
behind a search on a small, busy machine.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

from assistant.chat.search import HistorySearcher
from assistant.ui.errors import describe

log = logging.getLogger(__name__)


# How much nicer (Linux) than the UI thread a search thread runs: the UI thread gets the CPU
# first when both want it, and a search still gets a fair share against other programs.
SEARCH_NICENESS = 5


def _own_niceness() -> int | None:
    """This thread's nice value (Linux), or None where threads have none of their own."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    except OSError:
        return None


def _yield_to_ui(ui_niceness: int | None) -> None:
    """Run this (search) thread below the UI thread's priority. Idempotent: Python forgets
    thread-local data between two tasks on a pool thread, so no flag could say "done"."""
    thread = QThread.currentThread()
    if thread.priority() != QThread.Priority.LowPriority:
        thread.setPriority(QThread.Priority.LowPriority)  # Windows, macOS; nothing on Linux
    nice = _own_niceness()
    if ui_niceness is None or nice is None:
        return
    wanted = min(19, ui_niceness + SEARCH_NICENESS)
    if nice < wanted:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), wanted)
        except OSError as exc:  # not allowed here: searches run at the usual priority
            log.debug("Could not lower the search thread's priority: %s", exc)


class _Newest:
    """The number of the newest query, and the searcher running (so that a newer query can
    interrupt it). The ticket is written on the UI thread and read by the tasks (an int
    assignment is atomic in Python); the searcher is set, interrupted and closed under
    ``lock``."""

    def __init__(self) -> None:
        self.ticket = 0
        self.lock = threading.Lock()
        self.running: HistorySearcher | None = None

    def interrupt(self) -> None:
        with self.lock:
            if self.running is not None:
                self.running.interrupt()


class _Relay(QObject):
    """Carries a task's results to the UI thread (queued). Owned by Python, not by a widget,
    so a task never emits from a deleted object."""

    stage = Signal(int, str, object, bool)
    failed = Signal(int, str, str, str)


class _SearchTask(QRunnable):
    def __init__(
        self, db_path: Path, newest: _Newest, ticket: int, query: str, limit: int, relay: _Relay
    ) -> None:
        super().__init__()
        self.ui_niceness = _own_niceness()  # made on the UI thread
        self._db_path = db_path
        self._newest = newest
        self._ticket = ticket
        self._query = query
        self._limit = limit
        self._relay = relay

    def _wanted(self) -> bool:
        return self._newest.ticket == self._ticket

    def run(self) -> None:
        if not self._wanted():
            return  # a newer query came before this one started
        _yield_to_ui(self.ui_niceness)
        newest = self._newest
        try:
            searcher = HistorySearcher(self._db_path)
            with newest.lock:
                newest.running = searcher
            try:
                if not self._wanted():
                    return  # asked for while the connection opened: no one interrupted it
                for stage in searcher.stages(self._query, self._limit, wanted=self._wanted):
                    self._relay.stage.emit(self._ticket, self._query, stage.hits, stage.final)
            finally:
                with newest.lock:
                    newest.running = None
                    searcher.close()
        except Exception as exc:  # every failure goes back to the window, none vanishes here
            message, hint, details = describe(exc, f"Searching the history for {self._query!r}")
            self._relay.failed.emit(self._ticket, message, hint, details)


class HistorySearch(QObject):
    """Searches the history file in the background.

    Signals:
        resultsReady(str, list, bool): the query, its hits (``SearchHit``) best first, and
            whether this list is final (earlier lists for the same query are replaced).
        failed(str, str): message and hint of a search that failed.
    """

    resultsReady = Signal(str, list, bool)
    failed = Signal(str, str)

    def __init__(self, db_path: Path, parent: QObject | None = None, *, limit: int = 50) -> None:
        super().__init__(parent)
        self._db_path = Path(db_path)
        self._limit = limit
        self._newest = _Newest()
        self._relay = _Relay()
        self._relay.stage.connect(self._on_stage)
        self._relay.failed.connect(self._on_failed)
        # One thread: an older search, interrupted, ends before the next begins. Its own
        # pool, as its thread runs at a lower priority; a child, so it is waited for when
        # the window goes.
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self.started_at = 0.0  # when the newest query was asked for (benchmarks read it)

    def search(self, query: str) -> None:
        """Start searching for ``query``; any older search stops and its results are dropped."""
        self.cancel()
        self.started_at = time.perf_counter()
        task = _SearchTask(
            self._db_path, self._newest, self._newest.ticket, query, self._limit, self._relay
        )
        self._pool.start(task)

    def cancel(self) -> None:
        """Stop the search in progress; nothing more is reported for it."""
        self._newest.ticket += 1
        self._newest.interrupt()

    @Slot(int, str, object, bool)
    def _on_stage(self, ticket: int, query: str, hits: object, final: bool) -> None:
        if ticket == self._newest.ticket:
            self.resultsReady.emit(query, list(hits), final)  # type: ignore[call-overload]

    @Slot(int, str, str, str)
    def _on_failed(self, ticket: int, message: str, hint: str, _details: str) -> None:
        if ticket == self._newest.ticket:
            self.failed.emit(message, hint)
