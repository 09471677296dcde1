"""One running app per home, with real processes: a second start hands over and exits.

Each app runs offscreen in the test's own home (so its socket is its own), without a model:
the hand-over does not need one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from assistant import ipc
from assistant.logs import LOG_FILE_NAME
from assistant.paths import app_paths

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parent.parent
START_S = 120.0


def app_env() -> dict[str, str]:
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def start_app(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "assistant", *args],
        env=app_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(condition: Callable[[], bool], timeout_s: float = START_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def log_text() -> str:
    path = app_paths().logs / LOG_FILE_NAME
    return path.read_text(encoding="utf-8") if path.exists() else ""


def listening() -> bool:
    """A server answers (a ``start`` hand-over changes nothing in the running app)."""
    return ipc.hand_over(ipc.START, app_paths())


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.terminate()  # SIGTERM: the app quits in order
    for process in started:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_a_second_start_with_quick_ask_opens_the_popup_in_the_first_and_exits(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    first = start_app()
    processes.append(first)
    wait_for(lambda: listening() or first.poll() is not None)
    assert first.poll() is None, first.stderr.read() if first.stderr else ""

    # The second start, as the CLI runs it; it must not import Qt, the engine or even the
    # terminal front end's own helpers (argparse, logging, json…) to hand over.
    heavy = ("PySide6", "llama_cpp", "argparse", "logging", "json", "dataclasses", "platformdirs")
    probe = (
        "import sys; from assistant.cli import main; rc = main(['--quick-ask']); "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r})); sys.exit(rc)"
    )
    second = subprocess.run(
        [sys.executable, "-c", probe], env=app_env(), cwd=ROOT, capture_output=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.decode().strip() == "[]"

    wait_for(lambda: "Quick ask popup shown" in log_text())
    assert "Another start asked for quick-ask" in log_text()
    assert first.poll() is None  # the first one goes on running

    first.terminate()
    assert first.wait(timeout=60) == 0
    assert not listening()  # it removed its socket on the way out


def test_two_started_at_the_same_moment_leave_exactly_one_running(
    processes: list[subprocess.Popen[bytes]],
) -> None:
    pair = [start_app(), start_app()]
    processes.extend(pair)
    wait_for(lambda: any(p.poll() is not None for p in pair))
    ended = [p for p in pair if p.poll() is not None]
    assert len(ended) == 1
    assert ended[0].returncode == 0  # it handed over: no error
    (running,) = [p for p in pair if p.poll() is None]
    wait_for(listening)
    wait_for(lambda: "Another start asked for show" in log_text())
    assert log_text().count("Another start asked for show") == 1
    time.sleep(1)
    assert running.poll() is None


def test_a_socket_left_by_a_crash_is_cleaned_up() -> None:
    name = ipc.server_name(app_paths().ensure())
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(name)  # bound, never listening: what a killed app leaves behind
    stale.close()
    assert os.path.exists(name) and not listening()

    app = start_app()
    try:
        wait_for(lambda: listening() or app.poll() is not None)
        assert app.poll() is None
    finally:
        app.terminate()
        app.wait(timeout=60)


def test_requests_are_understood_only_in_the_known_form() -> None:
    assert ipc.decode(ipc.encode(ipc.QUICK_ASK).strip()) == ipc.QUICK_ASK
    assert ipc.decode(b'{"command": "rm -rf"}') is None
    assert ipc.decode(b"\xff not json") is None
    assert len(ipc.server_name(app_paths()).encode()) < 108  # fits a Unix socket address
