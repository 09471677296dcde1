"""Start the desktop app: ``offline-assistant`` with no sub-command lands here."""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, Qt, QTimer
from PySide6.QtWidgets import QApplication

from assistant import APP_ID, APP_NAME, __version__, ipc
from assistant.paths import AppPaths, app_paths
from assistant.state import WindowState
from assistant.ui.collector import MainThreadCollector
from assistant.ui.desktop import DesktopShell
from assistant.ui.errors import show_bug_report
from assistant.ui.first_paint import ThreadHold, after_first_paint
from assistant.ui.instance import become_server
from assistant.ui.main_window import MainWindow
from assistant.ui.recovery import start_services
from assistant.ui.services import AppServices
from assistant.ui.theme import app_icon

log = logging.getLogger(__name__)


ExceptHook = Callable[[type[BaseException], BaseException, types.TracebackType | None], Any]


def build_main_window(paths: AppPaths | None = None) -> MainWindow:
    """The chat window as the app opens it (not shown yet), on services built for ``paths``
    (the user's folders by default), styled in the chosen theme. Needs a QApplication."""
    return MainWindow(AppServices.create(paths))


AFTER_FIRST_PAINT_MS = 1_500
"""The engine check starts this long after the window shows, not while it paints."""
HOLD_LIMIT_S = 5.0
"""The longest the model's thread waits for the first paint, whatever happens."""


def freeze_startup_heap() -> None:
    """Leave the objects made while starting (modules, classes, the windows' wrappers) out of
    later garbage collections. They live as long as the app, yet a full collection walked
    them all: about 90 ms on the UI thread, or on a search worker holding the GIL the UI
    thread waits for, a visible freeze in the middle of typing. ``gc.unfreeze()`` undoes it."""
    gc.freeze()


def _install_excepthook(window: MainWindow) -> ExceptHook:
    """A bug in a slot becomes a calm report window instead of a silent stderr line.
    Returns the hook it replaced."""
    previous = sys.excepthook

    def hook(
        kind: type[BaseException], value: BaseException, tb: types.TracebackType | None
    ) -> None:
        import traceback

        details = "".join(traceback.format_exception(kind, value, tb))
        log.error("Unexpected error:\n%s", details)
        try:
            show_bug_report(details, window)
        except Exception:  # the report itself failed: fall back to the default output
            previous(kind, value, tb)

    sys.excepthook = hook
    return previous


def _no_display() -> bool:
    """On Linux without X11 or Wayland, Qt would abort the process with a cryptic message."""
    if not sys.platform.startswith("linux"):
        return False
    return not any(
        os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    )


def _quit_on_signals(services: AppServices) -> dict[int, Any]:
    """Ctrl+C in the terminal (or a TERM) quits properly, keeping any answer in progress.
    Python runs signal handlers only between bytecodes, so a timer wakes it.
    Returns the handlers replaced."""

    def handler(_number: int, _frame: types.FrameType | None) -> None:
        services.quit()

    previous: dict[int, Any] = {
        number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)
    }
    waker = QTimer(services)
    waker.timeout.connect(lambda: None)
    waker.start(300)
    return previous


def run_app(
    argv: Sequence[str] | None = None, *, command: str = ipc.SHOW, hidden: bool = False
) -> int:
    """Open the chat window and run until the app quits; return the exit code.

    ``command`` is what a later start asks of a running app (``assistant.ipc``): when one
    runs already it gets the command and this start ends at once. ``quick-ask`` opens the
    popup; ``hidden`` starts in the tray (start at login) where there is a tray."""
    if _no_display():
        print(
            "offline-assistant: error: there is no graphical display (DISPLAY is not set). "
            "Start it from a desktop session, or use the terminal commands: "
            "`offline-assistant --help`.",
            file=sys.stderr,
        )
        return 1
    QApplication.setApplicationName(APP_NAME)
    QApplication.setApplicationVersion(__version__)
    QApplication.setOrganizationName(APP_ID)
    QApplication.setDesktopFileName(APP_ID)
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        app = existing
    else:
        # Fractional scaling (150 %) stays sharp instead of being rounded to 200 %.
        QApplication.setHighDpiScaleFactorRoundingPolicy(
            Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
        )
        app = QApplication(list(argv if argv is not None else sys.argv))
    app.setWindowIcon(app_icon())

    paths = app_paths()
    try:
        server = become_server(paths, command, app)
    except OSError as exc:  # no single instance on a read-only or full disk; the app still runs
        log.warning("Could not check for a running copy of the app: %s", exc)
        server = None
    else:
        if server is None:
            return 0  # a running app took the command
    startup = start_services(paths)  # a damaged history shows the recovery screen first
    if startup is None:
        return 1
    services = startup.services
    # The default model's load (MainWindow asks for it) waits for the first paint.
    hold = ThreadHold(services.runner.model_thread, HOLD_LIMIT_S, services)
    services.shuttingDown.connect(hold.release)
    window = MainWindow(services)
    shell = DesktopShell(services, window, server, services)
    in_tray = shell.tray.keeps_running and (hidden or command == ipc.QUICK_ASK)
    if in_tray or command == ipc.QUICK_ASK:
        hold.release()  # no window to paint first; the popup wants the model soon
    else:
        after_first_paint(window, hold.release)
        QTimer.singleShot(AFTER_FIRST_PAINT_MS, hold, hold.release)  # a window never exposed
    if not in_tray:
        window.show()
    # After the window is up and painted (the check's child process would compete with the
    # first paint for a small machine's cores): a broken engine shows as a notice in it
    # (engine_check.py). A model load before then runs the check itself.
    QTimer.singleShot(AFTER_FIRST_PAINT_MS, services.engine_check, services.engine_check.start)
    if command == ipc.QUICK_ASK:
        QTimer.singleShot(0, shell, shell.quick_ask)
    if shell.hotkey_problem and not in_tray:
        window.show_problem(shell.hotkey_problem)
    previous_hook = _install_excepthook(window)
    handlers: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        handlers = _quit_on_signals(services)
    # The desktop session is ending: save everything before the session manager moves on.
    app.commitDataRequest.connect(lambda _manager: services.shutdown())
    if not window.has_models and not in_tray:
        QTimer.singleShot(0, window, lambda: _welcome(window, services.state))
    for warning in services.settings.warnings:
        window.show_problem(warning)
    for message, hint in startup.notes:
        window.show_problem(message, hint)
    freeze_startup_heap()
    # Cycles holding Qt objects are freed on this thread only (see collector.py).
    collector = MainThreadCollector()
    try:
        return int(app.exec())
    finally:
        collector.stop()
        gc.unfreeze()  # a later start in the same process (tests) begins as this one did
        sys.excepthook = previous_hook
        for number, previous in handlers.items():
            signal.signal(number, previous)
        services.shutdown()  # does nothing when the Quit action already did it
        # A quit asked for after the loop had begun to end stays posted; the next event loop
        # of this process (a later start, in tests) would take it and end at once.
        QCoreApplication.removePostedEvents(app, QEvent.Type.Quit)


def _welcome(window: MainWindow, state: WindowState) -> None:
    """No model yet: the welcome screen, else the model manager, else the empty page says so."""
    if not window.open_first_run():
        window.open_model_manager()
    if not state["first_run_done"]:
        state.set("first_run_done", True)
        try:
            state.save()
        except OSError as exc:
            log.warning("Could not save the window state: %s", exc)
