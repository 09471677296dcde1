# ruff: noqa: F811  (the fixtures are imported from test_ui_chat and used by name)
"""The app's start: the first frame comes before work that can wait (the Markdown warm-up, the
default model's load, the sub-commands of the terminal front end).

Real parts: real Qt widgets and threads offscreen, the real SmolLM2 model, the real entry
point in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QEvent, QObject, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from assistant.settings import Settings
from assistant.ui import app as app_module
from assistant.ui.first_paint import ThreadHold, after_first_paint
from assistant.ui.main_window import MainWindow
from tests.test_ui_chat import model_id, test_settings  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent


class _Worker(QObject):
    """Records, on its thread, the jobs it is sent."""

    def __init__(self) -> None:
        super().__init__()
        self.done: list[str] = []

    @Slot(str)
    def job(self, name: str) -> None:
        self.done.append(name)


class _Sender(QObject):
    send = Signal(str)


@pytest.fixture
def worker_thread() -> tuple[QThread, _Worker, _Sender]:
    thread = QThread()
    worker = _Worker()
    worker.moveToThread(thread)
    sender = _Sender()
    sender.send.connect(worker.job)
    thread.start()
    yield thread, worker, sender
    thread.quit()
    thread.wait(10_000)


def test_a_hold_keeps_a_threads_work_waiting_until_released(
    qtbot: QtBot, worker_thread: tuple[QThread, _Worker, _Sender]
) -> None:
    thread, worker, sender = worker_thread
    hold = ThreadHold(thread, timeout_s=60)
    sender.send.emit("first")
    sender.send.emit("second")
    qtbot.wait(300)
    assert worker.done == [] and not hold.released
    hold.release()
    qtbot.waitUntil(lambda: worker.done == ["first", "second"], timeout=10_000)  # in order


def test_a_forgotten_hold_lets_go_by_itself(
    qtbot: QtBot, worker_thread: tuple[QThread, _Worker, _Sender]
) -> None:
    thread, worker, sender = worker_thread
    hold = ThreadHold(thread, timeout_s=0.2)
    sender.send.emit("job")
    qtbot.waitUntil(lambda: worker.done == ["job"], timeout=10_000)
    assert not hold.released


def test_work_after_the_first_paint_waits_for_it(qtbot: QtBot) -> None:
    shown, hidden = QWidget(), QWidget()
    qtbot.addWidget(shown)
    qtbot.addWidget(hidden)
    calls: list[str] = []
    after_first_paint(shown, lambda: calls.append("shown"))
    after_first_paint(hidden, lambda: calls.append("hidden"))
    qtbot.wait(100)
    assert calls == []  # nothing is painted yet
    shown.show()
    qtbot.waitUntil(lambda: calls == ["shown"], timeout=10_000)
    shown.update()  # later paints call nothing more
    qtbot.wait(200)
    assert calls == ["shown"]


@pytest.mark.slow
def test_the_default_model_loads_once_the_window_has_painted(
    qtbot: QtBot,
    model_id: str,
    test_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only the first paint can let the load begin: the fallbacks are out of reach.
    monkeypatch.setattr(app_module, "AFTER_FIRST_PAINT_MS", 600_000)
    monkeypatch.setattr(app_module, "HOLD_LIMIT_S", 600.0)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # run_app installs its own
    seen: dict[str, object] = {}

    class FirstPaint(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if (
                "painted" not in seen
                and event.type() == QEvent.Type.Paint
                and isinstance(watched, MainWindow)
            ):
                hold = watched.services.findChild(ThreadHold)
                seen["painted"] = True
                seen["released_at_paint"] = hold is not None and hold.released
                seen["ready_at_paint"] = watched.runner.ready
            return False

    def close_when_ready() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)]
        if windows and windows[0].runner.ready:
            seen["ready"] = windows[0].runner.model_id
            timer.stop()
            windows[0].services.quit()

    watcher = FirstPaint()
    QApplication.instance().installEventFilter(watcher)
    timer = QTimer()
    timer.timeout.connect(close_when_ready)
    timer.start(100)
    QTimer.singleShot(180_000, QApplication.quit)  # a load that never starts fails the test
    try:
        assert app_module.run_app([]) == 0
    finally:
        QApplication.instance().removeEventFilter(watcher)
        timer.stop()
    assert seen == {
        "painted": True,
        "released_at_paint": False,
        "ready_at_paint": False,
        "ready": model_id,
    }


GUI_START_PROBE = r"""
import json, sys
import assistant.ui.app
assistant.ui.app.run_app = lambda **kwargs: print(json.dumps({
    "kwargs": kwargs,
    "imported": sorted(m for m in sys.modules if m.startswith("assistant.cli.")),
})) or 0
from assistant.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    ("argv", "command", "hidden"),
    [
        ([], "show", False),
        (["--hidden"], "start", True),
        (["--quick-ask", "-v"], "quick-ask", False),
    ],
)
def test_the_desktop_start_skips_the_terminal_commands(
    argv: list[str], command: str, hidden: bool
) -> None:
    done = subprocess.run(
        [sys.executable, "-c", GUI_START_PROBE, *argv],
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    started = json.loads(done.stdout.strip().splitlines()[-1])
    assert started["kwargs"] == {"command": command, "hidden": hidden}
    assert started["imported"] == []  # no sub-command's module (API server, Hub, cloud…)
