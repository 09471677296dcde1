"""The model manager and the first-run dialog, with real widgets (offscreen), the real SmolLM2
GGUF and a real HTTP server on 127.0.0.1 standing in for the Hugging Face Hub."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QLabel,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QWidget,
)
from pytestqt.qtbot import QtBot

from assistant.models.catalog import Catalog, ModelSpec, load_catalog
from assistant.models.downloads import DownloadProgress
from assistant.models.hardware import GIB, Hardware, recommend
from assistant.models.store import ModelStore
from assistant.ui.download_tasks import DownloadTask
from assistant.ui.first_run import OFFLINE_SENTENCE, FirstRunDialog
from assistant.ui.model_manager import ModelManagerWindow
from tests.hub_server import FakeHub
from tests.keyring_backend import MemoryKeyring

SMOL_ID = "smollm2-135m-instruct"
TIMEOUT_MS = 60_000


@pytest.fixture(autouse=True)
def memory_keyring() -> Iterator[None]:
    previous = keyring.get_keyring()
    keyring.set_keyring(MemoryKeyring())
    yield
    keyring.set_keyring(previous)


@pytest.fixture
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def smol(catalog: Catalog) -> ModelSpec:
    return catalog.get(SMOL_ID)


@pytest.fixture
def hardware() -> Hardware:
    """A 4 GB laptop with 2 GB free: small models fit, mid-size are tight, Phi-3.5 won't fit."""
    return Hardware(
        total_ram=4 * GIB,
        available_ram=2 * GIB,
        physical_cores=4,
        logical_cores=8,
        gpu_offload=False,
    )


@pytest.fixture
def store(catalog: Catalog) -> ModelStore:
    return ModelStore(catalog=catalog)


@pytest.fixture
def hub(smol: ModelSpec, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(smol.repo, smol.filename, model_path)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def window(
    qtbot: QtBot, store: ModelStore, catalog: Catalog, hardware: Hardware
) -> Iterator[ModelManagerWindow]:
    manager = ModelManagerWindow(store, catalog, hardware)
    qtbot.addWidget(manager)
    manager.show()
    yield manager
    assert manager.downloads.shutdown(timeout_s=20)


def _progress_log(task: DownloadTask) -> list[DownloadProgress]:
    seen: list[DownloadProgress] = []
    task.progress.connect(seen.append)
    return seen


def _downloaded(seen: list[DownloadProgress]) -> int:
    return max((p.done for p in seen if p.phase == "downloading"), default=0)


def _text(table: QTableWidget, row: int, column: int) -> str:
    item = table.item(row, column)
    assert item is not None
    return item.text()


def _cell_button(table_cell: QWidget | None) -> QPushButton:
    assert table_cell is not None
    buttons = table_cell.findChildren(QPushButton)
    assert buttons
    return buttons[0]


# --- the catalog -----------------------------------------------------------------------------


def test_catalog_lists_every_model_with_fit_badges_and_recommendation(
    window: ModelManagerWindow, catalog: Catalog, hardware: Hardware
) -> None:
    table = window.catalog_table
    assert table.rowCount() == len(catalog)
    headers = [
        table.model().headerData(c, Qt.Orientation.Horizontal) for c in range(table.columnCount())
    ]
    for column in ("Model", "Parameters", "Size", "Quantization", "License", "Good at"):
        assert column in headers

    badges = {spec.id: window.fit_badge(spec.id) for spec in catalog}
    assert {b.fit for b in badges.values()} == {"fits", "tight", "wont_fit"}
    assert badges[SMOL_ID].text() == "✓ Fits"
    assert badges["qwen3-4b"].text() == "◐ Tight"
    assert badges["phi-3.5-mini-instruct"].text() == "✕ Won't fit"
    # The meaning is in words for screen readers, not only in colour.
    assert "Won't fit" in badges["phi-3.5-mini-instruct"].accessibleName()
    assert "needs about" in badges[SMOL_ID].toolTip()

    recommended = recommend(catalog, hardware)
    assert recommended is not None
    assert window.recommended_id == recommended.id
    first = table.item(0, 0)
    assert first is not None
    assert first.text() == f"★ {recommended.name}"
    assert first.font().bold()
    assert "recommended" in first.data(Qt.ItemDataRole.AccessibleTextRole)
    assert recommended.name in window.summary.text()
    others = [_text(table, row, 0) for row in range(1, table.rowCount())]
    assert not any(text.startswith("★") for text in others)


# --- downloads -------------------------------------------------------------------------------


def test_download_from_the_hub_shows_progress_then_installs(
    qtbot: QtBot, window: ModelManagerWindow, hub: FakeHub, smol: ModelSpec, store: ModelStore
) -> None:
    hub.faults.rate_bps = 60_000_000  # about 1.6 s for the 98 MB file: progress to watch
    # The core reports every network read, so the thinning seen below is the window's own.
    window.downloads.downloader.progress_interval = 0.0
    installed: list[str] = []
    defaults: list[str] = []
    window.modelInstalled.connect(installed.append)
    window.defaultChanged.connect(defaults.append)
    seen: list[DownloadProgress] = []
    # Connected as the queue announces the task (reports sent before that are not counted).
    window.downloads.taskAdded.connect(lambda task: task.progress.connect(seen.append))

    started = time.monotonic()
    with qtbot.waitSignal(window.modelInstalled, timeout=TIMEOUT_MS):
        qtbot.mouseClick(window.download_button(SMOL_ID), Qt.MouseButton.LeftButton)
        task = window.downloads.tasks()[-1]
        assert window.download_button(SMOL_ID).text() == "Downloading…"
        assert window.downloads_box.isVisible()
    elapsed = time.monotonic() - started

    assert installed == [SMOL_ID]
    assert defaults == [SMOL_ID]  # the first model becomes the default
    model = store.get(SMOL_ID)
    assert model.size_bytes == smol.size_bytes and model.sha256 == smol.sha256
    assert not model.missing

    downloading = [p for p in seen if p.phase == "downloading"]
    assert len(downloading) >= 3
    assert [p.done for p in downloading] == sorted(p.done for p in downloading)
    assert any(p.speed_bps > 0 and p.eta_s is not None for p in downloading)
    assert _downloaded(seen) == smol.size_bytes
    assert any(p.phase == "verifying" for p in seen)
    # Thinned out to about ten a second, however fast the bytes came: the count is bounded by
    # the time the whole download took (phase changes and the last report come on top).
    assert len(downloading) <= elapsed * 10 + 5

    row = window.download_row(task)
    assert row is not None
    assert "Installed" in row.status.text()
    assert window.download_button(SMOL_ID).text() == "Installed"
    assert not window.download_button(SMOL_ID).isEnabled()
    assert window.installed_table.rowCount() == 1
    assert _text(window.installed_table, 0, 3) == "★ Default"
    assert window.tabs.tabText(1) == "Installed (1)"


def test_pause_then_resume_continues_from_the_same_byte(
    qtbot: QtBot, window: ModelManagerWindow, hub: FakeHub, smol: ModelSpec, store: ModelStore
) -> None:
    hub.faults.rate_bps = 4_000_000
    task = window.download(smol)
    seen = _progress_log(task)
    row = window.download_row(task)
    assert row is not None
    qtbot.waitUntil(lambda: _downloaded(seen) > 1_000_000, timeout=TIMEOUT_MS)

    qtbot.mouseClick(row.pause_button, Qt.MouseButton.LeftButton)
    assert task.paused and row.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: any(p.phase == "paused" for p in seen), timeout=TIMEOUT_MS)
    assert "paused" in row.status.text()
    at_pause = _downloaded(seen)
    qtbot.wait(600)
    assert _downloaded(seen) == at_pause  # nothing moves while paused
    assert store.find(SMOL_ID) is None

    hub.faults.rate_bps = None
    with qtbot.waitSignal(task.finished, timeout=TIMEOUT_MS):
        qtbot.mouseClick(row.pause_button, Qt.MouseButton.LeftButton)
        assert row.pause_button.text() == "Pause"

    assert store.get(SMOL_ID).size_bytes == smol.size_bytes
    ranges = [r.range for r in hub.file_gets() if r.range]
    assert ranges, "the resumed transfer should ask only for the missing bytes"
    resumed_at = int(ranges[-1].split("=")[1].split("-")[0])
    assert resumed_at >= at_pause - 1024 * 1024
    assert hub.bytes_served() < smol.size_bytes * 1.05


def test_cancel_installs_nothing_and_keeps_no_partial_file(
    qtbot: QtBot,
    window: ModelManagerWindow,
    hub: FakeHub,
    smol: ModelSpec,
    store: ModelStore,
    tmp_path: Path,
) -> None:
    hub.faults.rate_bps = 3_000_000
    task = window.download(smol)
    seen = _progress_log(task)
    row = window.download_row(task)
    assert row is not None
    qtbot.waitUntil(lambda: _downloaded(seen) > 500_000, timeout=TIMEOUT_MS)

    with qtbot.waitSignal(task.cancelled, timeout=TIMEOUT_MS):
        qtbot.mouseClick(row.cancel_button, Qt.MouseButton.LeftButton)

    assert store.list_installed() == []
    assert "Cancelled" in row.status.text()
    assert row.dismiss_button.isVisibleTo(row) and not row.cancel_button.isVisibleTo(row)
    assert window.download_button(SMOL_ID).text() == "Download"
    assert window.download_button(SMOL_ID).isEnabled()
    leftovers = [p for p in (tmp_path / "hf").rglob("*") if p.is_file() and p.stat().st_size]
    assert leftovers == []
    qtbot.mouseClick(row.dismiss_button, Qt.MouseButton.LeftButton)
    assert window.download_row(task) is None
    assert not window.downloads_box.isVisible()


def test_download_failure_is_shown_in_plain_words(
    qtbot: QtBot, window: ModelManagerWindow, hub: FakeHub, smol: ModelSpec, store: ModelStore
) -> None:
    hub.faults.status = 500
    window.downloads.downloader.retries = 0
    task = window.download(smol)
    # The task's state, set on the worker before it signals: a wait for the ``failed`` signal
    # set up here could miss a failure that came before this line ran.
    qtbot.waitUntil(lambda: not task.active, timeout=TIMEOUT_MS)
    assert task.state == "failed" and task.error is not None
    assert "server error" in task.error
    row = window.download_row(task)
    assert row is not None
    qtbot.waitUntil(lambda: row.status.text() == task.error, timeout=TIMEOUT_MS)
    assert row.retry_button.isVisibleTo(row)
    assert store.list_installed() == []

    hub.faults.status = None
    qtbot.mouseClick(row.retry_button, Qt.MouseButton.LeftButton)
    again = window.downloads.tasks()[-1]
    assert again is not task
    qtbot.waitUntil(lambda: not again.active, timeout=TIMEOUT_MS)
    assert again.state == "done", again.error
    assert store.find(SMOL_ID) is not None


def test_download_keeps_going_after_the_window_is_closed(
    qtbot: QtBot, window: ModelManagerWindow, hub: FakeHub, smol: ModelSpec, store: ModelStore
) -> None:
    hub.faults.rate_bps = 80_000_000
    task = window.download(smol)
    window.close()
    # The state, not the signal: the download may be over before a wait could be set up.
    qtbot.waitUntil(lambda: not task.active, timeout=TIMEOUT_MS)
    assert task.state == "done", task.error
    assert store.find(SMOL_ID) is not None
    # Downloads run on their own pool, never on the one the model worker might share.
    from PySide6.QtCore import QThreadPool

    assert window.downloads.pool is not QThreadPool.globalInstance()


def test_a_finished_download_reaches_the_chat_window_once(
    qtbot: QtBot,
    store: ModelStore,
    catalog: Catalog,
    hardware: Hardware,
    smol: ModelSpec,
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from assistant.models.store import InstalledModel
    from assistant.paths import app_paths
    from assistant.ui.main_window import MainWindow
    from assistant.ui.services import AppServices

    services = AppServices(app_paths().ensure(), models=store, catalog=catalog, hardware=hardware)
    try:
        window = MainWindow(services)
        qtbot.addWidget(window)
        window.show()
        shown: list[list[str]] = []
        set_models = window.picker.set_models

        def counting_set_models(models: list[InstalledModel], current: str | None) -> None:
            shown.append([m.id for m in models])
            set_models(models, current)

        monkeypatch.setattr(window.picker, "set_models", counting_set_models)
        loads: list[str] = []
        window.runner.loadStarted.connect(loads.append)
        window.open_model_manager()
        manager = window.model_manager
        hub.faults.rate_bps = 80_000_000

        # Seen by the queue, the model manager (installed, then the new default) and the
        # window: the window reads the store and fills its picker once.
        with qtbot.waitSignal(manager.defaultChanged, timeout=TIMEOUT_MS):
            manager.download(smol)
        assert shown == [[SMOL_ID]]
        assert window.picker.combo.currentData() == SMOL_ID
        assert window.has_models and not window.chat.get_models_button.isVisibleTo(window)
        qtbot.waitUntil(lambda: window.runner.ready, timeout=TIMEOUT_MS)
        assert loads == [SMOL_ID]
        window.close()
    finally:
        services.shutdown()


# --- searching the Hub -----------------------------------------------------------------------


def test_search_lists_a_repos_gguf_files_and_downloads_one(
    qtbot: QtBot,
    window: ModelManagerWindow,
    hub: FakeHub,
    model_path: Path,
    store: ModelStore,
) -> None:
    hub.add_file("someone/Tiny-GGUF", "tiny-chat.Q4_1.gguf", model_path)
    hub.add_file("someone/Tiny-GGUF", "README.md", model_path.parent / "__init__.py")
    window.tabs.setCurrentIndex(2)
    window.search_edit.setText(f"{hub.url}/someone/Tiny-GGUF")  # a pasted page URL works too
    qtbot.mouseClick(window.search_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.search_table.rowCount() == 1, timeout=TIMEOUT_MS)
    table = window.search_table
    assert _text(table, 0, 0) == "tiny-chat.Q4_1.gguf"
    assert _text(table, 0, 1) == "Q4_1"
    assert _text(table, 0, 2) == "98.4 MB"
    assert "1 GGUF file" in window.search_status.text()

    button = _cell_button(table.cellWidget(0, 3))
    with qtbot.waitSignal(window.modelInstalled, timeout=TIMEOUT_MS) as installed:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert button.text() == "Downloading…" and not button.isEnabled()
    model = store.get(installed.args[0])
    assert model.source == "hub" and model.repo == "someone/Tiny-GGUF"
    assert button.text() == "Installed"


def test_search_of_a_missing_repo_says_so(
    qtbot: QtBot, window: ModelManagerWindow, hub: FakeHub
) -> None:
    with qtbot.waitSignal(window.runner.idle, timeout=TIMEOUT_MS):
        assert window.search("nobody/nothing-here")
    assert "no repository nobody/nothing-here" in window.search_status.text()
    assert window.search_table.rowCount() == 0
    assert window.search_button.isEnabled()
    assert not window.search("not a repo id")
    assert "owner/name" in window.search_status.text()


# --- import, default, delete -----------------------------------------------------------------


def test_import_a_gguf_through_the_file_dialog(
    qtbot: QtBot,
    window: ModelManagerWindow,
    model_path: Path,
    store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        QFileDialog,
        "getOpenFileName",
        lambda *args, **kwargs: (str(model_path), "GGUF models (*.gguf)"),
    )
    with qtbot.waitSignal(window.modelInstalled, timeout=TIMEOUT_MS) as installed:
        qtbot.mouseClick(window.import_button, Qt.MouseButton.LeftButton)
    model = store.get(installed.args[0])
    assert model.path == model_path.resolve() and not model.owned
    assert store.default_id() == model.id
    assert window.installed_table.rowCount() == 1
    assert "Imported" in window.message.text()
    assert window.tabs.currentIndex() == 1
    assert window.download_button(SMOL_ID).text() == "Installed"


def test_importing_a_file_that_is_not_a_model_explains_why(
    qtbot: QtBot, window: ModelManagerWindow, store: ModelStore, tmp_path: Path
) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_bytes(b"these are my holiday notes, not a model" * 100)
    with qtbot.waitSignal(window.runner.idle, timeout=TIMEOUT_MS):
        window.import_file(bogus)
    assert window.problem.isVisible()
    assert window.problem.message().startswith("The file was not imported:")
    assert "GGUF" in window.problem.message() + window.problem.hint()
    assert store.list_installed() == []
    assert window.import_button.isEnabled()


def test_set_default_and_delete_with_confirmation(
    qtbot: QtBot,
    window: ModelManagerWindow,
    model_path: Path,
    store: ModelStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = store.import_file(model_path)  # in place: the user's file
    second = store.import_file(model_path, copy=True)  # a copy the app owns
    window.refresh()
    table = window.installed_table
    assert table.rowCount() == 2
    assert store.default_id() == first.id

    with qtbot.waitSignal(window.defaultChanged) as changed:
        qtbot.mouseClick(
            table.cellWidget(1, 4).findChildren(QPushButton)[0], Qt.MouseButton.LeftButton
        )
    assert changed.args == [second.id]
    assert store.default_id() == second.id
    assert _text(table, 1, 3) == "★ Default" and _text(table, 0, 3) == ""

    answers = iter([QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes])
    asked: list[str] = []

    def answer(_parent: QWidget, _title: str, text: str, *_args: object) -> object:
        asked.append(text)
        return next(answers)

    monkeypatch.setattr(QMessageBox, "question", answer)
    delete = table.cellWidget(1, 4).findChildren(QPushButton)[1]
    qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    assert store.find(second.id) is not None and second.path.exists()  # cancelled

    with qtbot.waitSignal(window.defaultChanged) as changed:
        qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    assert "frees 98.4 MB" in asked[-1]
    assert store.find(second.id) is None and not second.path.exists()
    assert changed.args == [first.id]
    assert "freed 98.4 MB" in window.message.text()

    # Removing an imported-in-place model forgets it but never deletes the user's file.
    monkeypatch.setattr(QMessageBox, "question", lambda *a: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(table.cellWidget(0, 4).findChildren(QPushButton)[1], Qt.MouseButton.LeftButton)
    assert store.list_installed() == [] and model_path.exists()
    assert table.rowCount() == 0


# --- first run -------------------------------------------------------------------------------


def test_the_welcome_screen_scrolls_rather_than_squeezing_on_a_short_screen(
    qtbot: QtBot, store: ModelStore, catalog: Catalog, hardware: Hardware
) -> None:
    dialog = FirstRunDialog(store, catalog, hardware)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    # Shown whole where the screen allows: no scrolling.
    bar = dialog.scroller.verticalScrollBar()
    assert bar.maximum() == 0
    assert dialog.height() >= dialog.sizeHint().height()
    # A screen too short for it (a small laptop at 200 %): every part keeps the height it
    # needs and the body scrolls; the buttons stay in view.
    dialog.resize(dialog.width(), 240)
    qtbot.waitUntil(lambda: bar.maximum() > 0)
    body = dialog.body
    assert body.height() >= body.layout().totalHeightForWidth(body.width())
    assert dialog.download_button.height() >= dialog.download_button.sizeHint().height()
    assert dialog.reason.height() >= dialog.reason.heightForWidth(dialog.reason.width())
    for button in (dialog.import_button, dialog.later_button):
        assert dialog.rect().contains(button.geometry())
    dialog.scroller.ensureWidgetVisible(dialog.download_button)
    assert bar.value() > 0
    dialog.downloads.shutdown()


def test_first_run_imports_a_local_gguf_and_makes_it_the_default(
    qtbot: QtBot,
    store: ModelStore,
    catalog: Catalog,
    hardware: Hardware,
    model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dialog = FirstRunDialog(store, catalog, hardware)
    qtbot.addWidget(dialog)
    dialog.show()
    texts = " ".join(label.text() for label in dialog.findChildren(QLabel))
    assert OFFLINE_SENTENCE in texts
    recommended = recommend(catalog, hardware)
    assert recommended is not None and dialog.spec == recommended
    assert recommended.name in dialog.download_button.text()
    assert dialog.badge.fit == "fits"

    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(model_path), "")
    )
    with qtbot.waitSignal(dialog.modelReady, timeout=TIMEOUT_MS) as ready:
        qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    assert store.default_id() == ready.args[0]
    assert store.resolve(ready.args[0]) == model_path.resolve()
    assert dialog.result() == QDialog.DialogCode.Accepted
    dialog.downloads.shutdown()


def test_an_import_in_the_welcome_screen_reaches_the_chat_window(
    qtbot: QtBot,
    store: ModelStore,
    catalog: Catalog,
    hardware: Hardware,
    model_path: Path,
) -> None:
    from assistant.paths import app_paths
    from assistant.ui.main_window import MainWindow
    from assistant.ui.services import AppServices

    services = AppServices(app_paths().ensure(), models=store, catalog=catalog, hardware=hardware)
    try:
        window = MainWindow(services)
        qtbot.addWidget(window)
        window.show()
        assert not window.has_models and window.chat.get_models_button.isVisibleTo(window)
        assert window.open_first_run()
        with qtbot.waitSignal(window.first_run.modelReady, timeout=TIMEOUT_MS) as ready:
            window.first_run.import_file(model_path)
        assert window.has_models
        assert window.picker.combo.currentData() == ready.args[0]
        assert not window.chat.get_models_button.isVisibleTo(window)
        qtbot.waitUntil(lambda: window.runner.ready, timeout=TIMEOUT_MS)
        assert window.runner.model_id == ready.args[0]
        window.close()
    finally:
        services.shutdown()


def test_first_run_with_a_bad_file_shows_the_problem_and_stays_open(
    qtbot: QtBot, store: ModelStore, catalog: Catalog, hardware: Hardware, tmp_path: Path
) -> None:
    dialog = FirstRunDialog(store, catalog, hardware)
    qtbot.addWidget(dialog)
    dialog.show()
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    ready: list[str] = []
    dialog.modelReady.connect(ready.append)
    with qtbot.waitSignal(dialog.runner.idle, timeout=TIMEOUT_MS):
        dialog.import_file(empty)
    assert dialog.problem.isVisible() and "cannot be used" in dialog.problem.message()
    assert ready == [] and store.list_installed() == []
    assert dialog.isVisible() and dialog.import_button.isEnabled()
    dialog.downloads.shutdown()


def test_first_run_downloads_the_recommended_model(
    qtbot: QtBot, store: ModelStore, catalog: Catalog, hub: FakeHub
) -> None:
    # So little memory that only SmolLM2 135M fits comfortably.
    tiny = Hardware(
        total_ram=1 * GIB,
        available_ram=int(0.7 * GIB),
        physical_cores=2,
        logical_cores=2,
        gpu_offload=False,
    )
    dialog = FirstRunDialog(store, catalog, tiny)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.spec is not None and dialog.spec.id == SMOL_ID
    hub.faults.rate_bps = 80_000_000
    with qtbot.waitSignal(dialog.modelReady, timeout=TIMEOUT_MS) as ready:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
        assert not dialog.download_button.isEnabled()
        assert dialog.task is not None
    assert ready.args == [SMOL_ID]
    assert store.default_id() == SMOL_ID
    assert dialog.result() == QDialog.DialogCode.Accepted
    dialog.downloads.shutdown()


def test_progress_signals_are_throttled(
    qtbot: QtBot, store: ModelStore, catalog: Catalog, smol: ModelSpec
) -> None:
    """The bridge passes at most ~10 progress updates a second, phase changes excepted."""
    from assistant.models.downloads import Downloader, DownloadTarget

    task = DownloadTask(Downloader(store, catalog=catalog), DownloadTarget.for_spec(smol))
    seen = _progress_log(task)
    start = time.monotonic()
    for done in range(0, 1000):
        task._report(DownloadProgress(done, 10_000, 1.0, 1.0))
    task._report(DownloadProgress(10_000, 10_000, 1.0, 0.0))
    qtbot.waitUntil(lambda: bool(seen) and seen[-1].done == 10_000)
    assert len(seen) <= (time.monotonic() - start) * 10 + 3
