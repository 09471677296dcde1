"""Work on a plain thread whose outcome comes back to the GUI thread, without the thread ever
touching a Qt object.

A thread that emits a signal of a QObject the GUI thread may delete meanwhile (a window closed,
the services shut down) races with that deletion: PySide's "already deleted" check and the
deletion can interleave, and the emission then runs on freed memory. It crashed whole test runs
here, in the *next* test's event loop. So the thread only puts its outcome in a queue, and a
timer owned by the receiver collects it on the GUI thread: when the receiver is deleted, its
timer goes with it and the outcome is dropped, with no Qt call from the thread at all.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer

log = logging.getLogger(__name__)

POLL_MS = 25
"""How often the GUI thread looks for finished work while some is running (a small delay next
to anything worth a thread)."""

Outcome = tuple[Callable[[Any], None], object]


class Mailbox(QObject):
    """Outcomes posted from any thread, delivered on the GUI thread by :meth:`post`'s callback.

    Lives as long as its parent. Its timer runs only while something is pending.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._outcomes: deque[Outcome] = deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._deliver)
        self.on_idle: Callable[[], None] | None = None
        """Called on the GUI thread when the last pending outcome was delivered."""

    @property
    def pending(self) -> int:
        """Work started and not yet delivered."""
        return self._pending

    def expect(self) -> None:
        """Announce work whose outcome will be posted (GUI thread)."""
        self._pending += 1
        if not self._timer.isActive():
            self._timer.start()

    def post(self, callback: Callable[[Any], None], argument: object) -> None:
        """From any thread: have ``callback(argument)`` run on the GUI thread."""
        with self._lock:
            self._outcomes.append((callback, argument))

    def _deliver(self) -> None:
        while True:
            with self._lock:
                if not self._outcomes:
                    break
                callback, argument = self._outcomes.popleft()
            self._pending -= 1
            try:
                callback(argument)
            except Exception:  # one failing receiver must not stop the others' delivery
                log.exception("Delivering a background outcome failed")
        if self._pending <= 0:
            self._pending = 0
            self._timer.stop()
            if self.on_idle is not None:
                self.on_idle()


def run_in_thread(
    mailbox: Mailbox,
    work: Callable[[], Any],
    on_done: Callable[[Any], None],
    *,
    name: str,
) -> None:
    """Run ``work()`` on a daemon thread; ``on_done`` gets its value, or the exception it
    raised, on the GUI thread (never, if the mailbox's owner is deleted first)."""
    mailbox.expect()

    def target() -> None:
        try:
            value: object = work()
        except BaseException as exc:  # never lose an exception in a thread
            value = exc
        mailbox.post(on_done, value)

    threading.Thread(target=target, name=name, daemon=True).start()
