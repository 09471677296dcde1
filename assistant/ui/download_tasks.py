"""The Qt bridge for getting models: core downloads on their own threads, reported as signals.

:class:`DownloadQueue` owns a ``QThreadPool`` that is only for network and disk work, so a
download never waits behind a long answer on the model worker and keeps going while the user
chats. Each :class:`DownloadTask` runs one core :class:`~assistant.models.downloads.DownloadJob`
there and turns its plain ``on_progress`` callable into a Qt signal. Signals emitted from a pool
thread reach slots on the GUI thread through queued connections, so no widget is ever touched
from a worker.

:class:`TaskRunner` does the same for one-off calls (a Hub search, an import).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, QTimer, Signal

from assistant.errors import AssistantError, Cancelled
from assistant.models.downloads import Downloader, DownloadProgress, DownloadTarget
from assistant.ui.background import Mailbox

log = logging.getLogger(__name__)

# At most this many progress signals a second per download: enough for a smooth bar, few enough
# that a fast local transfer cannot flood the GUI thread's event queue.
PROGRESS_INTERVAL_S = 0.1
MAX_PARALLEL_DOWNLOADS = 3


def bug_message(what: str, exc: BaseException) -> str:
    """The calm sentence for an exception nobody expected (its traceback goes to the log)."""
    return (
        f"Something went wrong while {what} ({type(exc).__name__}: {exc}). "
        "This is a bug in Offline Assistant; the details are in the log."
    )


def error_text(what: str, exc: BaseException) -> str:
    """What to show for a failure: a known problem's sentence and hint, else the bug sentence."""
    if isinstance(exc, AssistantError):
        return exc.full_text()
    log.error("Unexpected error while %s", what, exc_info=exc)
    return bug_message(what, exc)


class _Runnable(QRunnable):
    """A QRunnable that calls a Python function (the pool deletes it when done)."""

    def __init__(self, work: Callable[[], None]) -> None:
        super().__init__()
        self._work = work

    def run(self) -> None:
        self._work()


class DownloadTask(QObject):
    """One model download, running on the downloads pool.

    Signals:
        progress(DownloadProgress): bytes done and total, speed, time left and phase
            (``checking``, ``downloading``, ``verifying``, ``paused``); at most ~10 a second,
            plus every change of phase and the last one.
        pausedChanged(bool): the user paused (True) or resumed (False) the download.
        warning(str): advice that does not stop the download (say, the model will be tight).
        finished(str): the model is installed and verified; the argument is its id.
        failed(str): nothing was installed; the argument says why and what to do.
        cancelled(): the user cancelled; nothing was installed. Not an error.
    """

    progress = Signal(object)
    pausedChanged = Signal(bool)
    warning = Signal(str)
    finished = Signal(str)
    failed = Signal(str)
    cancelled = Signal()

    def __init__(
        self,
        downloader: Downloader,
        target: DownloadTarget,
        parent: QObject | None = None,
        *,
        allow_large: bool = False,
    ) -> None:
        super().__init__(parent)
        self.target = target
        self.title = target.name or target.filename
        self.key = download_key(target)
        self.state = "queued"  # queued, running, done, failed, cancelled
        self.model_id: str | None = None
        self.error: str | None = None
        self.last_progress: DownloadProgress | None = None
        self._paused = False
        self._cancel_requested = threading.Event()
        self._last_emit = 0.0
        self._last_phase = ""
        self._job = downloader.job(
            target,
            on_progress=self._report,
            on_warning=self.warning.emit,
            allow_large=allow_large,
        )

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    # --- control, from the GUI thread -------------------------------------------------------

    def pause(self) -> None:
        if self.active and not self._paused:
            self._paused = True
            self._job.pause()
            self.pausedChanged.emit(True)

    def resume(self) -> None:
        if self.active and self._paused:
            self._paused = False
            self._job.resume()
            self.pausedChanged.emit(False)

    def cancel(self, *, keep_partial: bool = False) -> None:
        """Stop. The user's Cancel throws the partial bytes away (Pause is the way to keep
        them); closing the app keeps them, so the next start continues where this one ended."""
        if self.active:
            self._cancel_requested.set()
            self._job.cancel(discard_partial=not keep_partial)

    # --- the work, on a pool thread ----------------------------------------------------------

    def run(self) -> None:
        """Run the job to its end; every outcome, bugs included, leaves as a signal."""
        if self._cancel_requested.is_set():
            self._finish("cancelled")
            return
        self.state = "running"
        try:
            result = self._job.run()
        except Cancelled:
            self._finish("cancelled")
        except BaseException as exc:  # a worker must never lose an exception
            self.error = error_text(f"downloading {self.title}", exc)
            self._finish("failed")
        else:
            self.model_id = result.model.id
            self._finish("done")

    def _report(self, progress: DownloadProgress) -> None:
        """The core's callback (pool thread): thin the stream out to ~10 signals a second."""
        now = time.monotonic()
        phase_changed = progress.phase != self._last_phase
        complete = progress.total is not None and progress.done >= progress.total
        if not (phase_changed or complete) and now - self._last_emit < PROGRESS_INTERVAL_S:
            return
        self._last_emit = now
        self._last_phase = progress.phase
        self.last_progress = progress
        self.progress.emit(progress)

    def _finish(self, state: str) -> None:
        self.state = state
        if state == "done":
            self.finished.emit(self.model_id or "")
        elif state == "failed":
            self.failed.emit(self.error or "The download failed.")
        else:
            self.cancelled.emit()


def download_key(target: DownloadTarget) -> str:
    """The same file asked for twice is one download."""
    return f"{target.repo.lower()}/{target.filename}@{target.revision}"


class DownloadQueue(QObject):
    """Every download of the app, on a thread pool of its own (not the model worker's).

    Share one queue between the main window, the model manager and the first-run dialog, so a
    download keeps running, and stays visible, whichever window started it.

    Signals:
        taskAdded(DownloadTask): a download was started.
        modelInstalled(str): a model was installed, by a download or by an import (see
            :meth:`report_installed`); the argument is its id. The one signal the main window
            follows for new models.
    """

    taskAdded = Signal(object)
    modelInstalled = Signal(str)

    def __init__(
        self,
        downloader: Downloader,
        parent: QObject | None = None,
        *,
        max_parallel: int = MAX_PARALLEL_DOWNLOADS,
    ) -> None:
        super().__init__(parent)
        self.downloader = downloader
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(max_parallel)
        self._tasks: list[DownloadTask] = []
        # If the queue is destroyed with downloads running, stop them first: QThreadPool's
        # destructor waits for its threads, and a download would keep it waiting forever.
        tasks = self._tasks
        self.destroyed.connect(lambda *_: _stop_all(tasks))
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

    def tasks(self) -> list[DownloadTask]:
        return list(self._tasks)

    def find(self, target: DownloadTarget) -> DownloadTask | None:
        """The running or queued download of this file, if there is one."""
        key = download_key(target)
        return next((t for t in self._tasks if t.key == key and t.active), None)

    def start(self, target: DownloadTarget, *, allow_large: bool = False) -> DownloadTask:
        """Download ``target``, or return the download of it already under way. With
        ``allow_large`` a model too large for this computer's memory is downloaded anyway."""
        running = self.find(target)
        if running is not None:
            return running
        task = DownloadTask(self.downloader, target, self, allow_large=allow_large)
        task.finished.connect(self.modelInstalled)
        self._tasks[:] = [t for t in self._tasks if t.active] + [task]
        self.taskAdded.emit(task)
        # Started from the event loop, not now: whoever called start() connects to the task's
        # signals before the worker can emit one, so even an instant failure is heard.
        QTimer.singleShot(0, self, lambda: self.pool.start(_Runnable(task.run)))
        return task

    def report_installed(self, model_id: str) -> None:
        """A window that shares this queue installed a model another way (an import)."""
        self.modelInstalled.emit(model_id)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Cancel every download and wait for the threads; True if they all stopped in time.

        Cancelled here means paused for good: the bytes so far are kept for the next start.
        """
        _stop_all(self._tasks)
        return bool(self.pool.waitForDone(int(timeout_s * 1000)))


def _stop_all(tasks: list[DownloadTask]) -> None:
    """Cancel every running download, keeping its bytes for the next start."""
    for task in tasks:
        task.cancel(keep_partial=True)


class TaskRunner(QObject):
    """Runs one-off functions (a Hub search, an import) on a pool thread and hands each outcome
    to a callback on the GUI thread.

    One long-lived runner serves a whole window. The pool thread never touches a Qt object: it
    posts the outcome to the runner's mailbox, which the GUI thread empties (emitting a signal
    of an object the GUI thread may be deleting races with that deletion and has crashed).

    Signals:
        idle(): no call is running any more (tests and busy indicators wait for it).
    """

    idle = Signal()

    def __init__(self, pool: QThreadPool, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pool = pool
        self._mailbox = Mailbox(self)
        self._mailbox.on_idle = self.idle.emit

    @property
    def pending(self) -> int:
        """Calls started and not yet handed back."""
        return self._mailbox.pending

    def run(
        self,
        work: Callable[[], Any],
        *,
        on_success: Callable[[Any], None],
        on_failure: Callable[[BaseException], None],
        what: str,
    ) -> None:
        """Call ``work()`` on the pool; then ``on_success(value)`` or ``on_failure(exc)`` here.

        Bugs (anything but an ``AssistantError``) are also logged with their traceback.
        """
        mailbox = self._mailbox
        mailbox.expect()

        def call() -> None:
            try:
                value = work()
            except BaseException as exc:  # never lose an exception in a thread
                if not isinstance(exc, AssistantError):
                    log.error("Unexpected error while %s", what, exc_info=exc)
                mailbox.post(on_failure, exc)
            else:
                mailbox.post(on_success, value)

        self.pool.start(_Runnable(call))
