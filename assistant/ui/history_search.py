"""The sidebar's search, off the UI thread: a newer query cancels an older one.

Each query runs as a task on Qt's global thread pool with a read-only SQLite connection of its
own (``assistant.chat.search.HistorySearcher``), so the window's connection is never held and
the UI thread only shows results. Results arrive in stages, each a better list than the last;
a task whose query is no longer the newest stops at its next check, even inside a query.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from assistant.chat.search import HistorySearcher
from assistant.ui.errors import describe

log = logging.getLogger(__name__)


class _Newest:
    """The number of the newest query: written on the UI thread, read by the tasks (an int
    assignment is atomic in Python, so no lock is needed)."""

    def __init__(self) -> None:
        self.ticket = 0


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
        try:
            searcher = HistorySearcher(self._db_path)
            try:
                for stage in searcher.stages(self._query, self._limit, wanted=self._wanted):
                    self._relay.stage.emit(self._ticket, self._query, stage.hits, stage.final)
            finally:
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
        self.started_at = 0.0  # when the newest query was asked for (benchmarks read it)

    def search(self, query: str) -> None:
        """Start searching for ``query``; any older search stops and its results are dropped."""
        self._newest.ticket += 1
        self.started_at = time.perf_counter()
        task = _SearchTask(
            self._db_path, self._newest, self._newest.ticket, query, self._limit, self._relay
        )
        QThreadPool.globalInstance().start(task)

    def cancel(self) -> None:
        """Stop the search in progress; nothing more is reported for it."""
        self._newest.ticket += 1

    @Slot(int, str, object, bool)
    def _on_stage(self, ticket: int, query: str, hits: object, final: bool) -> None:
        if ticket == self._newest.ticket:
            self.resultsReady.emit(query, list(hits), final)  # type: ignore[call-overload]

    @Slot(int, str, str, str)
    def _on_failed(self, ticket: int, message: str, hint: str, _details: str) -> None:
        if ticket == self._newest.ticket:
            self.failed.emit(message, hint)
