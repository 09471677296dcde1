"""The app's shared parts, built once at start and handed to every window.

``AppServices`` holds the settings, the window state, the history, the model store, catalog and
hardware facts, the provider registry, the model runner, the download queue and the local API.
Windows come and go; the services outlive them, so a window closed mid-answer does not free the
model, and a second front end (the quick-ask popup, the local API) uses the same loaded model
and the same request queue.

Quitting is one orderly path (:meth:`AppServices.shutdown`), whatever started it: the Quit
action, the last window closed, a signal, the desktop session ending.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QCoreApplication, QFileSystemWatcher, QObject, Signal, Slot

from assistant.chat.history import HistoryStore
from assistant.chat.ledger import CloudLedger
from assistant.cloud import CloudConfig, register_cloud
from assistant.models.store import ModelStore
from assistant.paths import AppPaths, app_paths
from assistant.providers import FileLoader, ProviderRegistry, load_gguf, local_provider
from assistant.settings import Settings
from assistant.state import WindowState
from assistant.ui.background import Mailbox, run_in_thread
from assistant.ui.engine_check import EngineCheck
from assistant.ui.local_api import LocalApi
from assistant.ui.worker import ModelRunner

if TYPE_CHECKING:
    from assistant.engine.base import SamplingPreset
    from assistant.models.catalog import Catalog
    from assistant.models.hardware import Hardware
    from assistant.models.speed import SpeedEstimator
    from assistant.ui.download_tasks import DownloadQueue

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_MS = 10_000


class AppServices(QObject):
    """Everything the windows share. Pass it in; nothing reaches for a global.

    Signals:
        settingsChanged(list): the keys of settings whose values changed, whether this process
            changed them or another one did (the CLI, a second window) and the file was
            re-read.
        shuttingDown(): the app is quitting: save what you show (drafts, geometry) now. Sent
            after unsent questions went back to their front ends (``runner.questionReturned``).
        speedsChanged(): :meth:`speeds` predicts differently: the machine was measured, an
            answer taught it, or the threads or usable-speed settings changed.
    """

    settingsChanged = Signal(list)
    shuttingDown = Signal()
    speedsChanged = Signal()

    def __init__(
        self,
        paths: AppPaths,
        *,
        settings: Settings | None = None,
        state: WindowState | None = None,
        history: HistoryStore | None = None,
        models: ModelStore | None = None,
        catalog: Catalog | None = None,
        hardware: Hardware | None = None,
        load_file: FileLoader = load_gguf,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.paths = paths
        self.settings = settings or Settings.load(paths.settings_file)
        self.state = state or WindowState.load(
            paths.state_file, legacy_settings=paths.settings_file
        )
        self.history = history or HistoryStore(paths.history_db)
        self.models = models or ModelStore(paths)
        self._catalog = catalog
        self._hardware = hardware
        self._downloads: DownloadQueue | None = None
        self._speeds: SpeedEstimator | None = None
        self._measuring = False
        # Outcomes of work on plain threads (the speed check), collected on this thread.
        self._mailbox = Mailbox(self)
        # Whether llama.cpp can run here: checked in a child process before it is loaded.
        self.engine_check = EngineCheck(paths, self)
        self.providers = ProviderRegistry(
            [local_provider(self.models, self.engine_check.guard(load_file))]
        )
        # Cloud providers (remote lane), reachable only while the global switch is on.
        self.cloud = CloudConfig.for_paths(paths)
        self.ledger = CloudLedger(self.history.db_path)
        register_cloud(self.providers, self.cloud, self.cloud_allowed)
        self.runner = ModelRunner(self.history, self.providers, parent=self)
        self.runner.answerFinished.connect(self._on_answer_finished)
        self._shut_down = False
        self.settings.add_listener(self._on_settings_changed)
        # The CLI (or another copy of the app) may change a setting while the app runs.
        self._watcher = QFileSystemWatcher(self)
        self._watch_settings()
        self._watcher.fileChanged.connect(self._on_settings_file_changed)
        self._watcher.directoryChanged.connect(self._on_settings_file_changed)
        app = QCoreApplication.instance()
        if app is not None:
            # A thread still running when Qt tears down aborts the process.
            app.aboutToQuit.connect(self.shutdown)
        # The OpenAI-compatible API for other programs: on when Settings → Local API says.
        self.local_api = LocalApi(self)
        self.local_api.apply()

    @classmethod
    def create(cls, paths: AppPaths | None = None) -> AppServices:
        """The services as the app starts them: the user's folders (made if missing)."""
        return cls((paths or app_paths()).ensure())

    # --- shared parts, made when first needed ----------------------------------------------

    def catalog(self) -> Catalog:
        if self._catalog is None:
            from assistant.models.catalog import load_catalog

            self._catalog = load_catalog()
        return self._catalog

    def hardware(self) -> Hardware:
        if self._hardware is None:
            from assistant.models.hardware import detect_hardware

            self._hardware = detect_hardware()
        return self._hardware

    def speeds(self) -> SpeedEstimator:
        """Expected tokens/s of models here, with the user's threads and GPU settings. The
        first call on an unmeasured machine starts measuring it in the background
        (:attr:`speedsChanged` follows); until then the estimator guesses."""
        if self._speeds is None:
            from assistant.models.speed import SpeedEstimator

            self._speeds = SpeedEstimator.from_cache(
                self.paths.cache,
                self.hardware(),
                threads=self.settings["threads"],
                gpu_layers=self.settings["gpu_layers"],
            )
            if not self._speeds.measured and not self._measuring:
                self._measuring = True
                run_in_thread(
                    self._mailbox,
                    self._measure_speeds,
                    self._on_speeds_measured,
                    name="speed-check",
                )
        return self._speeds

    @property
    def usable_tokens_per_s(self) -> float:
        return float(self.settings["usable_tokens_per_s"])

    def _measure_speeds(self) -> None:
        from assistant.models.speed import ensure_profile

        try:
            ensure_profile(self.paths.cache, self.hardware())
        except Exception:  # never lose an exception in a thread; the guess stays
            log.exception("Measuring this computer's speed failed")

    def _forget_speeds(self) -> None:
        if self._speeds is not None:
            self._speeds = None
            self.speedsChanged.emit()

    def _on_speeds_measured(self, _outcome: object) -> None:
        self._measuring = False
        self._forget_speeds()

    @Slot(int, int, int)
    def _on_answer_finished(self, _rid: int, _conversation: int, _message: int) -> None:
        # A local answer may have taught the machine's speed factor: read it again.
        if self.runner.model_id is not None:
            self._forget_speeds()

    def downloads(self) -> DownloadQueue:
        """The one download queue: downloads go on while windows close and open."""
        if self._downloads is None:
            from assistant.models.hub import hub_address
            from assistant.ui.model_manager import make_downloads

            self._downloads = make_downloads(
                self.models,
                self.catalog(),
                self.hardware(),
                self,
                endpoint=hub_address(self.settings["hub_address"]),
            )
        return self._downloads

    def cloud_allowed(self) -> bool:
        """The global cloud switch (read by cloud providers at every request)."""
        return bool(self.settings["cloud_enabled"]) and not self._shut_down

    def model_sampling(self, model_id: str | None) -> SamplingPreset | None:
        """The recommended sampling of installed model ``model_id`` (the default model's when
        None): what the sampling settings the user did not set follow."""
        from assistant.models.sampling import sampling_for_model

        model = self.models.find(model_id) if model_id else None
        if model is None:
            default = self.models.default_id()
            model = self.models.find(default) if default else None
        if model is None:
            return None
        return sampling_for_model(
            self.catalog(),
            model_id=model.id,
            path=model.path,
            repo=model.repo,
            filename=model.filename,
        )

    @property
    def shutting_down(self) -> bool:
        return self._shut_down

    # --- settings --------------------------------------------------------------------------

    def _watch_settings(self) -> None:
        """Watch the settings file, and its folder too: an atomic save replaces the file,
        and a watcher on a replaced file goes quiet."""
        wanted = [self.paths.settings_file, self.paths.settings_file.parent]
        present = [str(p) for p in wanted if p.exists()]
        missing = [
            p for p in present if p not in self._watcher.files() + self._watcher.directories()
        ]
        if missing:
            self._watcher.addPaths(missing)

    def _on_settings_changed(self, keys: list[str]) -> None:
        if "hub_address" in keys and self._downloads is not None:
            from assistant.models.hub import hub_address

            # Downloads started from now on go to the new address.
            self._downloads.downloader.endpoint = hub_address(self.settings["hub_address"])
        if keys:
            self.settingsChanged.emit(list(keys))
        if {"threads", "gpu_layers", "usable_tokens_per_s"} & set(keys):
            self._forget_speeds()

    @Slot(str)
    def _on_settings_file_changed(self, _path: str) -> None:
        self._watch_settings()
        try:
            self.settings.reload()  # listeners hear the keys that changed
        except Exception:  # a half-written file from another program must not break the app
            log.exception("Reading the changed settings file failed")

    # --- quitting --------------------------------------------------------------------------

    @Slot()
    def quit(self) -> None:
        """Quit the app: the orderly shutdown, then the event loop ends."""
        self.shutdown()
        QCoreApplication.quit()

    @Slot()
    def shutdown(self, wait_ms: int = SHUTDOWN_WAIT_MS) -> bool:
        """Save everything and free the model; safe to call again (it then does nothing).

        In order: questions not yet started go back to their front ends, windows save their
        drafts and geometry (``shuttingDown``), downloads pause resumably, the answer in
        progress is saved as interrupted and the model freed, deleted chats are purged and the
        history closed. Returns whether the model threads ended in time.
        """
        if self._shut_down:
            return True
        self._shut_down = True
        self.settings.remove_listener(self._on_settings_changed)
        self.runner.begin_shutdown()
        self.shuttingDown.emit()
        _try("save the window state", self.state.save)
        if self._downloads is not None:
            _try("pause the downloads", self._downloads.shutdown)
        ended = self.runner.shutdown(wait_ms)
        if ended:
            try:
                _try("purge deleted chats", self.history.purge_deleted)
            finally:
                _try("close the cloud ledger", self.ledger.close)
                _try("close the history", self.history.close)
        else:  # it may still write the answer in progress: leave the history to it
            log.warning("The model worker is still running; the history is left open.")
        return ended


def _try(what: str, action: Any) -> None:
    """One step of the shutdown: a failure is logged and the next step still runs."""
    try:
        action()
    except Exception:
        log.exception("Could not %s while quitting", what)
