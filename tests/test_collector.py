"""Reference cycles holding Qt objects are freed on the GUI thread, never on a worker that
happens to allocate (assistant/ui/collector.py)."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest
from PySide6.QtCore import QObject
from pytestqt.qtbot import QtBot

from assistant.ui.collector import MainThreadCollector

pytestmark = pytest.mark.gui


class _Node(QObject):
    """A Qt object in a reference cycle with itself."""

    def __init__(self) -> None:
        super().__init__()
        self.me = self


def test_a_cycle_is_freed_by_the_gui_thread_not_by_a_busy_worker(qtbot: QtBot) -> None:
    gc.enable()  # as in a fresh app process, before the collector takes over
    collector = MainThreadCollector()
    try:
        assert not gc.isenabled()
        node = _Node()
        alive = weakref.ref(node)
        del node

        def allocate() -> None:  # far past every automatic collection threshold
            for _ in range(200_000):
                [[], []]  # noqa: B018 - containers are what the collector counts

        worker = threading.Thread(target=allocate)
        worker.start()
        worker.join()
        assert alive() is not None  # the worker did not collect it

        qtbot.waitUntil(lambda: alive() is None, timeout=5_000)  # the timer on this thread did
    finally:
        collector.stop()
    assert gc.isenabled()
    gc.disable()  # the test session's own setting (conftest)
