"""The model manager's "Check for updates" and its refusal of a model too large, with real
widgets offscreen and the stand-in Hub on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest
from pytestqt.qtbot import QtBot

from assistant.models.catalog import Catalog, load_catalog
from assistant.models.downloads import Downloader
from assistant.models.hardware import GIB, MIB, Hardware
from assistant.models.store import ModelStore
from assistant.ui.model_manager import ModelManagerWindow
from tests.hub_server import FakeHub
from tests.keyring_backend import MemoryKeyring

pytestmark = pytest.mark.gui
SMOL_ID = "smollm2-135m-instruct"
LAPTOP = Hardware(4 * GIB, 2 * GIB, 4, 8, False)
TINY_MACHINE = Hardware(256 * MIB, 128 * MIB, 2, 2, False)


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
def hub(catalog: Catalog, model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    smol = catalog.get(SMOL_ID)
    with FakeHub() as server:
        server.add_file(smol.repo, smol.filename, model_path)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def open_manager(qtbot: QtBot, catalog: Catalog, hardware: Hardware) -> ModelManagerWindow:
    manager = ModelManagerWindow(ModelStore(catalog=catalog), catalog, hardware)
    qtbot.addWidget(manager)
    manager.show()
    return manager


def test_check_for_updates_reports_a_changed_file(
    qtbot: QtBot, hub: FakeHub, catalog: Catalog, tmp_path: Path
) -> None:
    store = ModelStore(catalog=catalog)
    Downloader(store, catalog=catalog, hardware=LAPTOP, token=lambda: None).pull(SMOL_ID)
    manager = open_manager(qtbot, catalog, LAPTOP)
    with qtbot.waitSignal(manager.runner.idle, timeout=30_000):
        manager.check_button.click()
    assert "up to date" in manager.message.text()

    upload = tmp_path / "new.gguf"
    upload.write_bytes(b"GGUF" + bytes(100))
    smol = catalog.get(SMOL_ID)
    hub.new_commit(smol.repo, smol.filename, upload)
    hub.clear_log()
    with qtbot.waitSignal(manager.runner.idle, timeout=30_000):
        manager.check_button.click()
    assert [r.status for r in manager.last_check] == ["changed"]
    assert "now has a different" in manager.message.text()
    assert manager.check_button.isEnabled() and hub.file_gets() == []
    assert manager.downloads.shutdown(timeout_s=20)


def test_a_model_too_large_is_refused_with_the_numbers(
    qtbot: QtBot, hub: FakeHub, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = open_manager(qtbot, catalog, TINY_MACHINE)
    asked: list[str] = []

    def decline(exc: Exception) -> bool:  # the user presses Cancel in the warning
        asked.append(str(exc))
        return False

    monkeypatch.setattr(manager, "_confirm_too_large", decline)
    assert manager.download(catalog.get(SMOL_ID)) is None
    assert asked and "needs about" in asked[0]
    assert manager.problem.isVisible() and "268.4 MB in all" in manager.problem.message()
    assert manager.downloads.tasks() == [] and hub.records() == []

    monkeypatch.setattr(manager, "_confirm_too_large", lambda exc: True)  # "Download anyway"
    task = manager.download(catalog.get(SMOL_ID))
    assert task is not None
    with qtbot.waitSignal(task.finished, timeout=60_000):
        pass
    assert manager.downloads.shutdown(timeout_s=20)
