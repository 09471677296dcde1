"""The chat window's models: the picker, loading, the model manager and the welcome screen,
and problems with a model shown with buttons for the fix.

``ModelsSection`` is a part of ``MainWindow`` (a mixin, so the window keeps one set of public
methods); it uses the window's ``services``, ``models``, ``runner``, ``picker``, ``banner``,
``status_label`` and ``chat``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QWidget

from assistant.engine.base import load_percent
from assistant.errors import AssistantError
from assistant.models.store import InstalledModel, ModelStore
from assistant.settings import Settings
from assistant.ui.chat_view import ChatView
from assistant.ui.composer import Composer
from assistant.ui.errors import ErrorBanner, FixAction
from assistant.ui.model_picker import ModelPicker
from assistant.ui.services import AppServices
from assistant.ui.worker import ModelRunner

if TYPE_CHECKING:
    from assistant.engine.diagnose import EngineReport
    from assistant.models.catalog import Catalog
    from assistant.models.hardware import Hardware

log = logging.getLogger(__name__)


class ModelsSection(QMainWindow):
    """Models in the chat window (see the module docstring)."""

    services: AppServices
    settings: Settings
    models: ModelStore
    runner: ModelRunner
    picker: ModelPicker
    banner: ErrorBanner
    status_label: QLabel
    chat: ChatView
    composer: Composer
    model_manager: Any
    first_run: Any
    _downloads_connected: bool
    _speeds_connected: bool = False
    _installed: list[InstalledModel]
    _default_id: str | None
    _missing_id: str = ""
    engine_details: QWidget | None = None

    if TYPE_CHECKING:

        def show_problem(
            self,
            message: str,
            hint: str = "",
            details: str = "",
            actions: list[FixAction] | None = None,
        ) -> None: ...

        def _update_empty_state(self) -> None: ...

    def display_name(self, model_id: str) -> str:
        """How a model is called everywhere in the window (the picker's name for it)."""
        model = next((m for m in self._installed if m.id == model_id), None)
        return (model.name or model.id) if model is not None else model_id

    @property
    def has_models(self) -> bool:
        """Whether any model is installed (as of the last look at the registry)."""
        return bool(self._installed)

    def _reload_models(self) -> None:
        """Read the installed models once and show them: the picker (with "Get models…" and
        the model in use) and the empty page."""
        self._installed = self.models.list_installed()
        self.chat.set_model_names({m.id: m.name or m.id for m in self._installed})
        self._default_id = self.models.default_id()
        current = self.picker.current_id() or self.runner.model_id or self._default_id
        self.picker.set_models(self._installed, current)
        self._update_empty_state()

    def _load_default_model(self) -> None:
        if self._default_id is not None:
            self.load_model(self._default_id)

    def load_model(self, model_id: str) -> None:
        """Load an installed model on the worker; typing and reading go on meanwhile."""
        self.banner.hide()
        self.picker.set_current(model_id)
        self.runner.load(model_id, self.settings)
        # Said at once: at start the load itself begins only after the first paint.
        self._show_loading(model_id, None)

    @Slot(str)
    def _on_model_chosen(self, model_id: str) -> None:
        if model_id != self.runner.model_id or not self.runner.ready:
            self.load_model(model_id)

    @Slot(str)
    def _on_load_started(self, model_id: str) -> None:
        self._show_loading(model_id, None)

    @Slot(str, float)
    def _on_load_progress(self, model_id: str, fraction: float) -> None:
        self._show_loading(model_id, fraction)

    def _show_loading(self, model_id: str | None, fraction: float | None) -> None:
        self.picker.show_loading(fraction)
        text = f"Loading {self.display_name(model_id or '')}…"
        if fraction is not None:
            text += f" {load_percent(fraction)} %"
        self.status_label.setText(text)

    @Slot()
    def cancel_load(self) -> None:
        """Stop loading the model (the Cancel button next to the picker)."""
        if not self.runner.loading:
            return
        self.picker.show_cancelling()
        self.status_label.setText("Cancelling the load…")
        self.runner.cancel_load()

    @Slot(str)
    def _on_load_cancelled(self, model_id: str) -> None:
        if self.runner.loading:
            return  # another model was asked for meanwhile
        text = f"Loading {self.display_name(model_id)} was cancelled."
        still = self.runner.model_id if self.runner.ready else None
        self.picker.set_current(still)
        if still is not None:
            self.picker.show_ready()
            text += f" {self.display_name(still)} still answers."
        else:
            self.picker.show_failed()
            text += " Pick a model to load one."
        self.status_label.setText(text)
        self._update_empty_state()
        self.composer.focus_input()

    @Slot(str, list)
    def _on_loaded(self, model_id: str, warnings: list[str]) -> None:
        if self.runner.loading:
            return  # another model was asked for meanwhile
        self.picker.show_ready()
        self.status_label.setText(f"Ready: {self.display_name(model_id)} runs on this computer.")
        if self._default_id != model_id:
            try:  # the model that worked is the one to load next time
                self.models.set_default(model_id)
            except AssistantError as exc:
                log.warning("Could not remember %s as the default: %s", model_id, exc)
            else:
                self._default_id = model_id
        if warnings:
            self.show_problem(" ".join(warnings), "Answers may be less good than usual.")
        self._update_empty_state()

    @Slot(str, str, str, str)
    def _on_load_failed(self, model_id: str, message: str, hint: str, details: str) -> None:
        if not self.runner.loading:
            self.picker.show_failed()
        if self.services.engine_check.problem:
            self._show_engine_problem()
            return
        name = self.display_name(model_id)
        self.status_label.setText(f"Could not load {name}.")
        model = self.models.find(model_id)
        if model is not None and model.missing:
            # The store's words are for the terminal; the window has buttons for the fix.
            self.show_problem(
                f"The file of \u201c{name}\u201d is gone: {model.path} was deleted or moved.",
                "Locate the file if you moved it, remove the model from the list, or get "
                "another model.",
                actions=self._missing_file_fixes(model_id),
            )
            return
        actions: list[FixAction] = [("Open model manager", self.open_model_manager)]
        self.show_problem(message, hint, details, actions=actions)

    @Slot(object)
    def _on_engine_checked(self, report: EngineReport) -> None:
        if report.problem:
            self._show_engine_problem()

    def _show_engine_problem(self) -> None:
        """llama.cpp cannot run here: say what is missing and what to do, with the details."""
        report = self.services.engine_check.report
        assert report is not None
        self.status_label.setText("Local models cannot run on this computer.")
        self.show_problem(
            report.problem,
            report.hint,
            actions=[("Show details…", self._on_engine_details_clicked)],
        )

    @Slot()
    def _on_engine_details_clicked(self) -> None:
        from assistant.ui.engine_check import EngineDetailsDialog

        dialog = EngineDetailsDialog(self.services.engine_check.details(), self)
        dialog.setModal(True)
        # The banner closed for the button; the problem is still there once the details are.
        dialog.finished.connect(lambda _result: self._show_engine_problem())
        dialog.show()
        self.engine_details = dialog

    def _missing_file_fixes(self, model_id: str) -> list[FixAction]:
        self._missing_id = model_id
        return [
            ("Locate file…", self._on_locate_clicked),
            ("Remove from list", self._on_forget_clicked),
            ("Open model manager", self.open_model_manager),
        ]

    @Slot()
    def _on_locate_clicked(self) -> None:
        self.locate_model_file(self._missing_id)

    @Slot()
    def _on_forget_clicked(self) -> None:
        self.forget_model(self._missing_id)

    def locate_model_file(self, model_id: str, path: Path | None = None) -> None:
        """The file of ``model_id`` moved: register it where it is now (asked for when
        ``path`` is ``None``) under a new entry, drop the old one and load it."""
        if path is None:
            chosen, _ = QFileDialog.getOpenFileName(
                self, "Locate the model file", str(Path.home()), "GGUF models (*.gguf)"
            )
            if not chosen:
                return
            path = Path(chosen)
        try:
            installed = self.models.import_file(path)
            if installed.id != model_id:
                self.models.remove(model_id, delete_file=False)
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            return
        self._reload_models()
        self.load_model(installed.id)

    def forget_model(self, model_id: str) -> None:
        """Remove a model whose file is gone from the list (nothing is deleted)."""
        try:
            self.models.remove(model_id, delete_file=False)
        except AssistantError as exc:
            self.show_problem(exc.message, exc.hint)
            return
        self.picker.set_current(None)
        self._reload_models()
        self.status_label.setText(f"Removed {self.display_name(model_id)} from the list.")
        if self._default_id is not None and self.runner.model_id in (None, model_id):
            self.load_model(self._default_id)

    def catalog(self) -> Catalog:
        return self.services.catalog()

    def hardware(self) -> Hardware:
        return self.services.hardware()

    def _download_queue(self) -> Any:
        downloads = self.services.downloads()
        if not self._downloads_connected:
            self._downloads_connected = True
            # The one way installs reach this window: downloads (even one finishing while its
            # window is closed) and imports in the model manager or the welcome screen.
            downloads.modelInstalled.connect(self._on_model_installed)
        return downloads

    @Slot()
    def open_model_manager(self) -> None:
        """Show the model manager (one window, kept so downloads go on while chatting)."""
        if self.model_manager is None:
            try:
                from assistant.ui.model_manager import ModelManagerWindow

                self.model_manager = ModelManagerWindow(
                    self.models,
                    self.catalog(),
                    self.hardware(),
                    self,
                    downloads=self._download_queue(),
                    speeds=self.services.speeds(),
                    usable_tokens_per_s=self.services.usable_tokens_per_s,
                )
                self._follow_speeds()
            except ImportError as exc:
                log.warning("Model manager unavailable: %s", exc)
                self.show_problem(
                    "The model manager is not part of this installation.",
                    "Reinstall Offline Assistant to get it back.",
                )
                return
            except AssistantError as exc:
                self.show_problem(exc.message, exc.hint)
                return
            self.model_manager.defaultChanged.connect(self._on_default_changed)
        self.model_manager.show()
        self.model_manager.raise_()
        self.model_manager.activateWindow()

    def open_first_run(self) -> bool:
        """Show the welcome screen (no model yet); return whether it could be shown."""
        try:
            from assistant.ui.first_run import FirstRunDialog

            self.first_run = FirstRunDialog(
                self.models,
                self.catalog(),
                self.hardware(),
                self,
                downloads=self._download_queue(),
                speeds=self.services.speeds(),
                usable_tokens_per_s=self.services.usable_tokens_per_s,
            )
            self._follow_speeds()
        except (ImportError, AssistantError) as exc:
            log.warning("Welcome screen unavailable: %s", exc)
            return False
        self.first_run.open()
        return True

    def _follow_speeds(self) -> None:
        if not self._speeds_connected:
            self._speeds_connected = True
            self.services.speedsChanged.connect(self._on_speeds_changed)

    @Slot()
    def _on_speeds_changed(self) -> None:
        speeds, usable = self.services.speeds(), self.services.usable_tokens_per_s
        if self.model_manager is not None:
            self.model_manager.set_speeds(speeds, usable)
        if self.first_run is not None and self.first_run.isVisible():
            self.first_run.set_speeds(speeds, usable)

    @Slot(str)
    def _on_model_installed(self, model_id: str) -> None:
        self._reload_models()
        if self.runner.model_id is None or not (self.runner.ready or self.runner.loading):
            self.load_model(model_id)

    @Slot(str)
    def _on_default_changed(self, model_id: str) -> None:
        if model_id == (self._default_id or ""):
            return  # already shown (the first install, which made itself the default)
        self._reload_models()
        if model_id and model_id != self.runner.model_id:
            self.load_model(model_id)
