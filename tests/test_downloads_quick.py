"""Whole pulls of a small runnable GGUF (the real model's header and vocabulary, a few megabytes
of stand-in weights) from the fake Hub: the quick lane's, and the mutation run's, view of
``assistant/models/downloads.py``. The same paths with the real 98 MB model are in
``test_downloads.py`` (slow lane)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.errors import (
    Cancelled,
    ChecksumMismatchError,
    CorruptModelError,
    DiskFullError,
    DownloadError,
    DownloadInProgressError,
    ModelTooLargeError,
    NotGGUFError,
    RegistrationError,
    RemoteFileNotFoundError,
    UnsupportedArchitectureError,
)
from assistant.models.catalog import ModelSpec
from assistant.models.downloads import Downloader, DownloadProgress, DownloadTarget
from assistant.models.hardware import Hardware
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import app_paths
from tests.hub_server import FakeHub, small_filesystem
from tests.model_files import write_small_runnable, write_unknown_architecture
from tests.support import smollm2_path

REPO = "test-org/tiny"
FILENAME = "Tiny-Model.Q4_1.gguf"
MB = 1024 * 1024
GIB = 1024**3
ROOMY = Hardware(
    total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=2, logical_cores=2, gpu_offload=False
)
SMALL = Hardware(
    total_ram=128 * MB, available_ram=64 * MB, physical_cores=1, logical_cores=1, gpu_offload=False
)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runnable GGUF of about 6 MB (the same file for every test: nothing writes to it)."""
    folder = tmp_path_factory.mktemp("tiny")
    return write_small_runnable(folder / FILENAME, smollm2_path(), padding=4 * MB)


@pytest.fixture
def hub(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(REPO, FILENAME, tiny)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(app_paths().ensure())


def make_downloader(store: ModelStore, **options: object) -> Downloader:
    settings: dict[str, object] = {
        "hardware": ROOMY,
        "timeout": 5.0,
        "retries": 2,
        "retry_wait": 0.01,
        "progress_interval": 0.0,
    }
    settings.update(options)
    return Downloader(store, **settings)  # type: ignore[arg-type]


@pytest.fixture
def downloader(store: ModelStore) -> Downloader:
    return make_downloader(store)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_for(path: Path, *, sha256: str | None = None, size: int | None = None) -> ModelSpec:
    """A catalog entry for the tiny file, as the catalog would have it."""
    return ModelSpec(
        id="tiny-chat",
        name="Tiny Chat",
        family="smollm2",
        repo=REPO,
        filename=FILENAME,
        quantization="Q4_1",
        size_bytes=size if size is not None else path.stat().st_size,
        parameters=1_000_000,
        context_length=2048,
        license="apache-2.0",
        good_at="tests",
        sha256=sha256 if sha256 is not None else sha(path),
    )


def nothing_left(downloader: Downloader, store: ModelStore, etag: str) -> None:
    assert store.list_installed() == []
    assert not downloader.cache.partial_path(REPO, etag).exists()
    assert not downloader.cache.blob_path(REPO, etag).exists()
    assert not downloader.cache.lock_path(REPO, etag).exists()
    assert downloader.cache.cached_file(REPO, FILENAME) is None


# --- the happy paths -------------------------------------------------------------------------


def test_a_repo_file_is_fetched_verified_installed_and_registered(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    seen: list[DownloadProgress] = []
    job = downloader.job(downloader.target_for(REPO, FILENAME), on_progress=seen.append)
    assert job.state == "pending"
    result = job.run()

    assert job.state == "done"
    model = result.model
    assert model.id == "tiny-model-q4_1" and model.source == "hub" and model.owned
    assert model.repo == REPO and model.filename == FILENAME
    assert model.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # from the GGUF header
    assert model.sha256 == sha(tiny) and model.size_bytes == tiny.stat().st_size
    assert model.revision == hub.repos[REPO].commit
    assert model.path.is_symlink() and model.path.resolve().name == sha(tiny)
    assert model.path.read_bytes() == tiny.read_bytes()
    assert (result.fetched_bytes, result.resumed_from) == (tiny.stat().st_size, 0)
    assert not result.from_cache and not result.already_installed and result.warnings == ()
    assert store.get(model.id).path == model.path
    assert not downloader.cache.partial_path(REPO, sha(tiny)).exists()
    phases = [p.phase for p in seen]
    assert phases[0] == "checking" and phases[-1] == "verifying"
    assert "downloading" in phases
    assert seen[-1].done == seen[-1].total == tiny.stat().st_size
    assert job.progress == seen[-1]
    records = hub.records()
    assert [(r.server, r.method, r.range) for r in records] == [
        ("hub", "HEAD", None),
        ("cdn", "GET", None),
    ]


def test_a_catalog_model_is_installed_under_its_id_and_found_again(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    spec = spec_for(tiny)
    seen: list[DownloadProgress] = []
    job = downloader.job(DownloadTarget.for_spec(spec), on_progress=seen.append)
    result = job.run()
    assert result.model.id == "tiny-chat" and result.model.name == "Tiny Chat"
    assert result.model.source == "catalog"
    assert seen[0] == DownloadProgress(0, tiny.stat().st_size, 0.0, None, "checking")

    hub.clear_log()
    again = downloader.job(DownloadTarget.for_spec(spec)).run()
    assert again.already_installed and again.model == result.model
    assert hub.records() == []

    result.model.path.unlink()  # its link deleted behind the app's back: linked again
    third = downloader.job(DownloadTarget.for_spec(spec)).run()
    assert not third.already_installed and third.from_cache and third.model.path.is_file()
    assert [m.id for m in store.list_installed()] == ["tiny-chat"]


def test_a_file_another_tool_fetched_is_verified_and_registered_without_a_request(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    from huggingface_hub import hf_hub_download

    other = Path(hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url))
    hub.clear_log()
    seen: list[DownloadProgress] = []
    result = downloader.job(downloader.target_for(REPO, FILENAME), on_progress=seen.append).run()
    assert result.from_cache and result.fetched_bytes == 0 and result.warnings == ()
    assert result.model.path == other and result.model.sha256 == sha(tiny)
    assert result.model.revision == hub.repos[REPO].commit
    assert "verifying" in [p.phase for p in seen]
    assert hub.records() == []
    assert other.is_file()


def test_the_same_bytes_at_a_new_commit_are_linked_not_fetched(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    first = hub.repos[REPO].commit
    downloader.job(DownloadTarget(REPO, FILENAME, revision=first)).run()
    store.remove("tiny-model-q4_1", delete_file=False)
    second = hub.new_commit(REPO, FILENAME, tiny)
    hub.clear_log()
    result = downloader.pull(REPO, FILENAME)
    assert result.from_cache and result.model.revision == second
    assert result.model.path.parent.name == second
    assert result.model.path.resolve() == downloader.cache.blob_path(REPO, sha(tiny))
    assert hub.file_gets() == []


def test_a_damaged_cached_copy_is_fetched_again(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    from huggingface_hub import hf_hub_download

    blob = Path(
        hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    ).resolve()
    blob.chmod(0o644)
    with blob.open("r+b") as damaged:
        damaged.seek(MB)
        damaged.write(b"\xff\x00\xff")
    hub.clear_log()
    result = downloader.pull(REPO, FILENAME)
    assert not result.from_cache and result.fetched_bytes == tiny.stat().st_size
    assert result.model.path.read_bytes() == tiny.read_bytes()
    assert [g.range for g in hub.file_gets()] == [None]


# --- interruptions -----------------------------------------------------------------------------


def test_a_cancelled_pull_keeps_its_bytes_and_the_next_resumes(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    job = downloader.job(downloader.target_for(REPO, FILENAME))
    job.on_progress = lambda p: job.cancel() if p.done >= 2 * MB else None
    with pytest.raises(Cancelled):
        job.run()
    assert job.state == "cancelled"
    partial = downloader.cache.partial_path(REPO, sha(tiny))
    kept = partial.stat().st_size
    assert kept >= 2 * MB and partial.read_bytes() == tiny.read_bytes()[:kept]
    assert downloader.cache.lock_path(REPO, sha(tiny)).exists()  # there is something to resume
    assert store.list_installed() == []

    hub.clear_log()
    seen: list[DownloadProgress] = []
    result = downloader.job(downloader.target_for(REPO, FILENAME), on_progress=seen.append).run()
    assert (result.resumed_from, result.fetched_bytes) == (kept, tiny.stat().st_size - kept)
    assert [g.range for g in hub.file_gets()] == [f"bytes={kept}-"]
    assert result.model.path.read_bytes() == tiny.read_bytes()
    # The bytes already there were hashed (verifying) before the download went on.
    first_download = [p.phase for p in seen].index("downloading")
    assert "verifying" in [p.phase for p in seen[:first_download]]


def test_a_pull_that_got_no_bytes_leaves_no_empty_partial_behind(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    """Every answer is cut before its first byte: nothing to resume, so no 0-byte file stays."""
    hub.faults.drop_after = 0
    hub.faults.drop_times = None
    with pytest.raises(DownloadError):
        downloader.pull(REPO, FILENAME)
    assert not downloader.cache.partial_path(REPO, sha(tiny)).exists()
    assert store.list_installed() == []


def test_a_cancel_that_discards_leaves_nothing(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    job = downloader.job(downloader.target_for(REPO, FILENAME))
    job.on_progress = lambda p: job.cancel(discard_partial=True) if p.done >= MB else None
    with pytest.raises(Cancelled):
        job.run()
    nothing_left(downloader, store, sha(tiny))


def test_pause_and_resume_from_another_thread(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    paused = threading.Event()
    job = downloader.job(downloader.target_for(REPO, FILENAME))

    def watch(progress: DownloadProgress) -> None:
        if progress.phase == "downloading" and progress.done >= 2 * MB:
            job.pause()
        if progress.phase == "paused":
            paused.set()

    job.on_progress = watch
    job.start()
    assert paused.wait(30)
    assert job.state == "paused"
    job.on_progress = None
    partial = downloader.cache.partial_path(REPO, sha(tiny))
    at_pause = partial.stat().st_size
    job.resume()
    result = job.wait(30)
    assert result is not None and job.state == "done"
    assert [r.range for r in hub.records() if r.server == "cdn"] == [None, f"bytes={at_pause}-"]


def test_wait_hands_back_the_error_of_the_thread(hub: FakeHub, downloader: Downloader) -> None:
    job = downloader.job(DownloadTarget(REPO, "missing.gguf"))
    with pytest.raises(RuntimeError, match="not started"):
        job.wait()
    job.start()
    with pytest.raises(RemoteFileNotFoundError, match=r"no file named missing\.gguf"):
        job.wait(30)
    assert job.state == "failed"


def test_a_second_process_downloading_the_same_file_is_told_to_wait(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    from filelock import FileLock

    lock_path = downloader.cache.lock_path(REPO, sha(tiny))
    lock_path.parent.mkdir(parents=True)
    with FileLock(str(lock_path)), pytest.raises(DownloadInProgressError) as caught:
        downloader.pull(REPO, FILENAME)
    assert (caught.value.message, caught.value.hint) == (
        f"{FILENAME} is being downloaded by another process right now.",
        "Wait for that download to finish; it will then be ready here too.",
    )
    assert hub.file_gets() == []


# --- refusals and checks -----------------------------------------------------------------------


def test_a_flipped_byte_is_refused_and_nothing_is_kept(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    hub.faults.flip_byte_at = 3 * MB
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.pull(REPO, FILENAME)
    assert f"expected {sha(tiny)[:12]}…" in caught.value.message
    assert "deleted; nothing was installed" in caught.value.message
    nothing_left(downloader, store, sha(tiny))


def test_a_catalog_pin_that_differs_from_the_hub_is_refused_before_any_byte(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    spec = spec_for(tiny, sha256="0" * 64)
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.job(DownloadTarget.for_spec(spec)).run()
    assert (caught.value.message, caught.value.hint, caught.value.command) == (
        f"The Hub now serves a different {FILENAME} than the one this app's catalog vouches "
        "for (the checksums differ). Nothing was downloaded.",
        "Update the app for a refreshed catalog, or download the file from the "
        f"{REPO} repository's file list instead of the catalog.",
        f"offline-assistant models pull {REPO} --file {FILENAME}",
    )
    assert hub.file_gets() == []
    assert store.list_installed() == []


def test_a_file_that_is_not_gguf_is_deleted(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(300 * 1024))
    hub.add_file("test-org/junk", "junk.gguf", junk)
    with pytest.raises(NotGGUFError) as caught:
        downloader.pull("test-org/junk", "junk.gguf")
    assert caught.value.message == (
        "junk.gguf from test-org/junk is not a GGUF model file, so it cannot be used. "
        "It was deleted; nothing was installed."
    )
    assert caught.value.hint == "Pick one of the repository's .gguf files."
    assert caught.value.command == "offline-assistant models search test-org/junk"
    assert not downloader.cache.blob_path("test-org/junk", sha(junk)).exists()
    assert not downloader.cache.partial_path("test-org/junk", sha(junk)).exists()


def test_an_unsupported_architecture_is_deleted_when_fetched_and_kept_when_found(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")
    hub.add_file("test-org/florp", florp.name, florp)
    with pytest.raises(UnsupportedArchitectureError) as caught:
        downloader.pull("test-org/florp", florp.name)
    assert caught.value.architecture == "florp"
    assert (caught.value.message, caught.value.hint) == (
        f"{florp.name} from test-org/florp holds a model of the 'florp' architecture, which "
        "this version of the app's engine (llama.cpp) does not support. It was deleted; "
        "nothing was installed.",
        "Update Offline Assistant, or pick another model.",
    )
    assert not downloader.cache.blob_path("test-org/florp", sha(florp)).exists()

    from huggingface_hub import hf_hub_download

    cached = Path(
        hf_hub_download(
            "test-org/florp", florp.name, cache_dir=downloader.cache.root, endpoint=hub.url
        )
    )
    with pytest.raises(UnsupportedArchitectureError) as again:
        downloader.pull("test-org/florp", florp.name)
    assert again.value.message.endswith("does not support. Nothing was installed.")
    assert cached.is_file() and store.list_installed() == []


def test_a_disk_without_room_is_refused_before_any_byte(
    hub: FakeHub, store: ModelStore, tiny: Path
) -> None:
    downloader = make_downloader(store, free_margin=2**62)
    with pytest.raises(DiskFullError, match="Not enough free disk space for " + FILENAME):
        downloader.pull(REPO, FILENAME)
    assert hub.file_gets() == []  # the Hub's size was known after the HEAD
    with pytest.raises(DiskFullError):
        downloader.job(DownloadTarget.for_spec(spec_for(tiny))).run()
    assert [r.method for r in hub.records()] == ["HEAD"]  # the catalog's size: not even a HEAD


def test_a_partial_download_counts_against_the_space_needed(
    hub: FakeHub, store: ModelStore, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a small file system of the test's own: a shared disk's free space moves while the
    test runs (another process freeing a few megabytes once made the refusal pass)."""
    import shutil

    with small_filesystem(tmp_path / "small", 32) as disk:
        monkeypatch.setenv("HF_HOME", str(disk / "hf"))
        size = tiny.stat().st_size
        downloader = make_downloader(store)
        partial = downloader.cache.partial_path(REPO, sha(tiny))
        partial.parent.mkdir(parents=True)
        partial.write_bytes(tiny.read_bytes()[: size - 1000])
        free = shutil.disk_usage(partial.parent).free
        # Room for the last 1000 bytes and the margin, not for the whole file again.
        tight = make_downloader(store, free_margin=free - 100_000)
        tight.preflight(DownloadTarget.for_spec(spec_for(tiny)))
        with pytest.raises(DiskFullError):
            tight.preflight(DownloadTarget.for_spec(spec_for(tiny)), have=0)


def test_a_model_too_large_for_memory_is_refused_or_warned_about(
    hub: FakeHub, store: ModelStore, tiny: Path
) -> None:
    big = 4 * GIB
    downloader = make_downloader(store, hardware=SMALL)
    with pytest.raises(ModelTooLargeError) as caught:
        downloader.preflight(DownloadTarget(REPO, FILENAME), size=big)
    assert caught.value.command == (
        f"offline-assistant models pull {REPO} --file {FILENAME} --anyway"
    )
    assert caught.value.message.startswith(f"{FILENAME} needs about ")
    with pytest.raises(ModelTooLargeError) as by_id:
        downloader.preflight(DownloadTarget.for_spec(spec_for(tiny, size=big)))
    assert by_id.value.command == "offline-assistant models pull tiny-chat --anyway"
    assert by_id.value.message.startswith("Tiny Chat needs about ")
    downloader.preflight(DownloadTarget(REPO, FILENAME), size=big, allow_large=True)
    downloader.preflight(DownloadTarget(REPO, FILENAME))  # no size known: nothing to check

    warnings: list[str] = []
    job = downloader.job(
        DownloadTarget.for_spec(spec_for(tiny, size=big)),
        on_warning=warnings.append,
        allow_large=True,
    )
    assert hub.repos[REPO].files[FILENAME].size == tiny.stat().st_size
    result = job.run()
    assert len(warnings) == 1 and "will probably not run here" in warnings[0]
    assert result.warnings == tuple(warnings)


def test_a_part_of_a_split_model_comes_with_a_warning(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    name = "tiny-00001-of-00003.gguf"
    hub.add_file(REPO, name, tiny)
    result = downloader.pull(REPO, name)
    assert result.warnings == (
        f"{name} is part 1 of 3 of a split model; only this part is downloaded.",
    )


def test_a_registry_that_cannot_be_written_after_a_verified_download(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    # The registry's lock cannot be taken (a folder stands where the lock file goes), so the
    # list of installed models cannot be written, while the Hub cache can.
    Path(str(store.file) + ".lock").mkdir(parents=True)
    with pytest.raises(RegistrationError) as caught:
        downloader.pull(REPO, FILENAME)
    assert "downloaded and verified and is installed in the Hugging Face cache" in (
        caught.value.message
    )
    assert caught.value.command == f"offline-assistant models pull {REPO} --file {FILENAME}"
    cached = downloader.cache.cached_file(REPO, FILENAME)
    assert cached is not None and cached.read_bytes() == tiny.read_bytes()


# --- which registry entry is this file; the job's own thread -------------------------------


def test_a_repo_file_pulled_twice_is_found_and_another_file_of_the_repo_is_not(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    first = downloader.pull(REPO, FILENAME)
    hub.clear_log()
    again = downloader.pull(REPO, FILENAME)
    assert again.already_installed and again.model == first.model
    assert hub.records() == []
    hub.add_file(REPO, "Other.Q8_0.gguf", tiny)
    other = downloader.pull(REPO, "Other.Q8_0.gguf")
    assert not other.already_installed and other.model.filename == "Other.Q8_0.gguf"
    hub.add_file("test-org/another", FILENAME, tiny)
    elsewhere = downloader.pull("test-org/another", FILENAME)
    assert not elsewhere.already_installed and elsewhere.model.repo == "test-org/another"


def test_an_import_of_the_catalog_file_under_its_id_counts_as_installed(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    store.register(
        InstalledModel(
            id="tiny-chat",
            name="Tiny Chat",
            path=tiny,
            size_bytes=tiny.stat().st_size,
            source="import",
            repo=REPO,
            filename=FILENAME,
            owned=False,
        )
    )
    result = downloader.job(DownloadTarget.for_spec(spec_for(tiny))).run()
    assert result.already_installed and result.model.path == tiny
    assert hub.records() == []


def test_a_catalog_file_under_a_slug_id_is_found_again(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path, tmp_path: Path
) -> None:
    theirs = tmp_path / "theirs.gguf"
    theirs.write_bytes(b"another file")
    store.register(
        InstalledModel(
            id="tiny-chat",
            name="Theirs",
            path=theirs,
            size_bytes=theirs.stat().st_size,
            source="import",
            filename=theirs.name,
            owned=False,
        )
    )
    spec = spec_for(tiny)
    first = downloader.job(DownloadTarget.for_spec(spec)).run()
    assert first.model.id == "tiny-model-q4_1" and first.model.source == "catalog"
    hub.clear_log()
    again = downloader.job(DownloadTarget.for_spec(spec)).run()
    assert again.already_installed and again.model == first.model
    assert hub.records() == []


def test_a_cached_copy_is_checked_while_the_job_says_verifying(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    states: list[str] = []
    job = downloader.job(downloader.target_for(REPO, FILENAME))
    job.on_progress = lambda p: states.append(job.state) if p.phase == "verifying" else None
    result = job.run()
    assert states and set(states) == {"verifying"}
    assert result.from_cache and result.model.size_bytes == tiny.stat().st_size
    assert result.model.name == "Smollm2 135M 8k Lc100K Mix1 Ep2"  # from the header


def test_a_damaged_cached_copy_is_hashed_once_and_logged(
    hub: FakeHub,
    store: ModelStore,
    downloader: Downloader,
    tiny: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from huggingface_hub import hf_hub_download

    pointer = Path(
        hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    )
    blob = pointer.resolve()
    blob.chmod(0o644)
    with blob.open("r+b") as damaged:
        damaged.seek(MB)
        damaged.write(b"\xff\x00\xff")
    seen: list[DownloadProgress] = []
    downloader.job(downloader.target_for(REPO, FILENAME), on_progress=seen.append).run()
    size = tiny.stat().st_size
    before = seen[: [p.phase for p in seen].index("downloading")]
    # One pass over the damaged copy (a single read: the file is smaller than a hash chunk).
    assert [p.done for p in before if p.phase == "verifying"] == [size]
    assert f"Cached {pointer} does not match its checksum; downloading it again." in [
        r.getMessage() for r in caplog.records
    ]


def test_a_file_the_hub_keeps_in_git_is_verified_by_its_git_id(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    """Files not stored in LFS have a git blob id for an etag, and no sha256 on the Hub."""
    from huggingface_hub import hf_hub_download

    from assistant.models.transfer import git_blob_sha1

    git_id = git_blob_sha1(tiny)
    hub.add_file("test-org/git", FILENAME, tiny, sha256=git_id)
    fetched = downloader.pull("test-org/git", FILENAME)
    assert fetched.fetched_bytes == tiny.stat().st_size
    assert fetched.model.sha256 == sha(tiny)
    assert fetched.model.path.resolve().name == git_id

    # The same file put in the cache by another tool: checked with the Hub's git id, not fetched.
    store.remove(fetched.model.id, delete_file=True)
    hf_hub_download("test-org/git", FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    hub.clear_log()
    again = downloader.pull("test-org/git", FILENAME)
    assert again.from_cache and hub.file_gets() == []


def test_with_a_mirrors_own_etags_the_file_is_checked_against_the_listings_sha256(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    """A mirror whose ETags are not checksums: the repository's file listing still has the
    sha256, and a byte changed on the way is caught with it."""
    hub.faults.opaque_etags = True
    fetched = downloader.pull(REPO, FILENAME)
    assert fetched.model.sha256 == sha(tiny)
    assert any("/api/models/" in r.path for r in hub.log)

    hub.add_file("test-org/copy", FILENAME, tiny)
    hub.faults.flip_byte_at = 1000
    with pytest.raises(ChecksumMismatchError):
        downloader.pull("test-org/copy", FILENAME)


def test_without_a_checksum_anywhere_nothing_unverified_is_installed(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    hub.faults.opaque_etags = True
    hub.faults.hide_lfs = True
    with pytest.raises(DownloadError, match=r"publishes no checksum for " + FILENAME) as caught:
        downloader.pull(REPO, FILENAME)
    assert caught.value.command == "offline-assistant models import PATH"
    assert "web browser" in (caught.value.hint or "")
    assert hub.file_gets() == []
    assert store.list_installed() == []


def test_wait_gives_nothing_while_the_job_runs(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    job = downloader.job(downloader.target_for(REPO, FILENAME))
    with pytest.raises(RuntimeError, match=r"^the job was not started$"):
        job.wait()
    paused = threading.Event()

    def pause_early(progress: DownloadProgress) -> None:
        if progress.phase == "downloading" and progress.done >= MB:
            job.pause()
        if progress.phase == "paused":
            paused.set()

    job.on_progress = pause_early
    job.start()
    assert paused.wait(30)
    assert job.wait(0.05) is None  # still paused: no result yet
    job.on_progress = None
    job.resume()
    result = job.wait(30)
    assert result is not None and result.model.filename == FILENAME


QUIT_MID_DOWNLOAD = """
import sys
import time
from assistant.models.downloads import Downloader
from assistant.models.hardware import Hardware
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import app_paths
from tests.hub_server import FakeHub

hub = FakeHub().start()
hub.add_file("test-org/tiny", "Tiny-Model.Q4_1.gguf", __import__("pathlib").Path(sys.argv[1]))
hub.faults.stall_after = 0
hub.faults.stall_s = 600
hub.faults.stall_times = None
hardware = Hardware(16 << 30, 12 << 30, 2, 2, False)
downloader = Downloader(ModelStore(app_paths().ensure()), endpoint=hub.url, hardware=hardware)
job = downloader.job(downloader.target_for("test-org/tiny", "Tiny-Model.Q4_1.gguf"))
job.start()
while job.state != "downloading":
    time.sleep(0.01)
print("quitting", flush=True)
"""


def test_a_download_in_its_thread_does_not_keep_the_program_alive(tiny: Path) -> None:
    import subprocess
    import sys

    from tests.support import child_env

    child = subprocess.run(
        [sys.executable, "-c", QUIT_MID_DOWNLOAD, str(tiny)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.stdout.strip() == "quitting", child.stderr
    assert child.returncode == 0


# --- what the user reads when a check fails ------------------------------------------------------


def test_a_file_of_the_wrong_size_is_refused_with_both_sizes(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    """Without a size from the Hub, the catalog's size is the one to meet."""
    hub.faults.hide_size = True
    size = tiny.stat().st_size
    target = DownloadTarget.for_spec(spec_for(tiny, size=size - 10))
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.job(target).run()
    assert (caught.value.message, caught.value.hint) == (
        f"{FILENAME} arrived with {size} bytes instead of {size - 10}. "
        "It was deleted; nothing was installed.",
        "Try again; if it keeps happening the file on the Hub may be changing.",
    )
    nothing_left(downloader, store, sha(tiny))


def test_a_changed_byte_names_both_checksums(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    hub.faults.flip_byte_at = 1
    data = bytearray(tiny.read_bytes())
    data[1] ^= 0xFF
    got = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.pull(REPO, FILENAME)
    assert (caught.value.message, caught.value.hint) == (
        f"The downloaded {FILENAME} does not match its published checksum "
        f"(expected {sha(tiny)[:12]}…, got {got[:12]}…). It was deleted; nothing was installed.",
        "Try again. If it happens again, the connection or a proxy is altering the file.",
    )


def test_a_partial_file_already_complete_or_too_long(
    hub: FakeHub, downloader: Downloader, store: ModelStore, tiny: Path
) -> None:
    """A complete partial file (a crash after the last byte) is only verified; one longer than
    the file cannot be a prefix of it and is started over."""
    partial = downloader.cache.partial_path(REPO, sha(tiny))
    partial.parent.mkdir(parents=True, exist_ok=True)
    size = tiny.stat().st_size
    partial.write_bytes(tiny.read_bytes())
    result = downloader.pull(REPO, FILENAME)
    assert (result.resumed_from, result.fetched_bytes) == (size, 0)
    store.remove(result.model.id)  # the app's own download: its file goes too
    assert downloader.cache.cached_file(REPO, FILENAME) is None

    partial.write_bytes(tiny.read_bytes() + b"extra")
    result = downloader.pull(REPO, FILENAME)
    assert (result.resumed_from, result.fetched_bytes) == (0, size)
    assert result.model.path.read_bytes() == tiny.read_bytes()


def test_memory_warnings_name_the_model_and_the_memory(
    hub: FakeHub, store: ModelStore, tiny: Path
) -> None:
    from assistant.disk import format_bytes
    from assistant.models import hardware

    spec = spec_for(tiny)
    needed = hardware.estimate_for_spec(spec).total
    tight = Hardware(
        total_ram=4 * needed,
        available_ram=needed // 2,
        physical_cores=1,
        logical_cores=1,
        gpu_offload=False,
    )
    result = make_downloader(store, hardware=tight).job(DownloadTarget.for_spec(spec)).run()
    assert result.warnings == (
        f"{FILENAME} needs about {format_bytes(needed)} of memory; "
        "close other programs before using it.",
    )

    # A repo file has no catalog entry: its size stands for the model.
    by_size = hardware.estimate_for_size(tiny.stat().st_size).total
    small = Hardware(
        total_ram=by_size // 2,
        available_ram=by_size // 4,
        physical_cores=1,
        logical_cores=1,
        gpu_offload=False,
    )
    store.remove(result.model.id)
    job = make_downloader(store, hardware=small).job(
        DownloadTarget(REPO, FILENAME), allow_large=True
    )
    assert job.run().warnings == (
        f"{FILENAME} needs about {format_bytes(by_size)} of memory and this computer has "
        f"{format_bytes(by_size // 2)}: it will probably not run here. Consider a smaller model.",
    )


def test_a_damaged_header_is_named_and_deleted(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path, tmp_path: Path
) -> None:
    """The GGUF magic, then a header cut short: damaged, not "not a model"."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(tiny.read_bytes()[:4096])
    hub.add_file("test-org/broken", broken.name, broken)
    with pytest.raises(CorruptModelError) as caught:
        downloader.pull("test-org/broken", broken.name)
    message = caught.value.message
    assert message.startswith("broken.gguf from test-org/broken is damaged (")
    assert message.endswith(") It was deleted; nothing was installed.")
    assert caught.value.hint == "Try the download again, or pick another file."
    assert not downloader.cache.blob_path("test-org/broken", sha(broken)).exists()
    assert store.list_installed() == []


def test_a_model_too_large_says_how_much_memory_there_is(store: ModelStore, tiny: Path) -> None:
    from assistant.disk import format_bytes
    from assistant.models import hardware

    big = 4 * GIB
    needed = hardware.estimate_for_spec(spec_for(tiny, size=big)).total
    with pytest.raises(ModelTooLargeError) as caught:
        make_downloader(store, hardware=SMALL).preflight(
            DownloadTarget.for_spec(spec_for(tiny, size=big))
        )
    assert (caught.value.message, caught.value.hint) == (
        f"Tiny Chat needs about {format_bytes(needed)} of memory to run, and this computer "
        f"has {format_bytes(SMALL.total_ram)} in all ({format_bytes(SMALL.available_ram)} free "
        "now): it would not run here. Nothing was downloaded.",
        "Pick a smaller model, or download it anyway if you will run it elsewhere.",
    )


def test_a_gated_file_comes_with_the_token_and_an_expired_link_is_renewed_with_it(
    store: ModelStore, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a CDN the file itself comes from the Hub, which wants the token. With one, a
    signed link that expired mid-download (403) is renewed by asking the Hub again, with the
    token, and the token never goes to the CDN."""
    from assistant.secrets import set_hf_token

    set_hf_token("hf_secret")
    for cdn in (False, True):
        with FakeHub(cdn=cdn) as server:
            server.add_file(REPO, FILENAME, tiny)
            server.gate(REPO, "hf_secret")
            monkeypatch.setenv("HF_ENDPOINT", server.url)
            if cdn:
                server.faults.status = 403
                server.faults.status_on = ("get",)
                server.faults.status_times = 1
            downloader = make_downloader(store)
            result = downloader.pull(REPO, FILENAME)
            assert result.model.path.read_bytes() == tiny.read_bytes()
            # Each server's own order (the two log from their own threads).
            records = server.records()
            hub_seen = [(r.method, r.authorization) for r in records if r.server == "hub"]
            cdn_seen = [(r.method, r.status, r.authorization) for r in records if r.server == "cdn"]
            token = "Bearer hf_secret"
            if cdn:
                assert hub_seen == [("HEAD", token), ("HEAD", token)]
                assert cdn_seen == [("GET", 403, None), ("GET", 200, None)]
            else:
                assert hub_seen == [("HEAD", token), ("GET", token)]
                assert cdn_seen == []
            store.remove(result.model.id)


def test_a_catalog_entry_pinned_to_a_revision_gets_that_revisions_file(
    hub: FakeHub, downloader: Downloader, tiny: Path, tmp_path: Path
) -> None:
    pinned = hub.repos[REPO].commit
    newer = tmp_path / FILENAME
    write_small_runnable(newer, smollm2_path(), padding=MB)  # other bytes, same name
    hub.new_commit(REPO, FILENAME, newer)
    spec = dataclasses.replace(spec_for(tiny), revision=pinned)
    result = downloader.job(DownloadTarget.for_spec(spec)).run()
    assert result.model.path.read_bytes() == tiny.read_bytes()
    assert result.model.revision == pinned
    assert all(f"/resolve/{pinned}/" in r.path for r in hub.records() if r.server == "hub")


def test_only_an_empty_partial_file_is_cleaned_up(tmp_path: Path) -> None:
    """A failed pull removes its partial file only when it holds nothing: a single byte is
    worth resuming from."""
    from assistant.models.downloads import _remove_if_empty

    empty, one = tmp_path / "empty.part", tmp_path / "one.part"
    empty.write_bytes(b"")
    one.write_bytes(b"G")
    for path in (empty, one, tmp_path / "missing.part"):
        _remove_if_empty(path)
    assert not empty.exists() and one.read_bytes() == b"G"


def test_a_job_started_in_the_background_runs_in_a_thread_named_download(
    hub: FakeHub, downloader: Downloader
) -> None:
    job = downloader.job(downloader.target_for(REPO, FILENAME))
    thread = job.start()
    assert thread.name == "download" and thread.daemon
    result = job.wait(timeout=60)
    assert result is not None and result.model.filename == FILENAME


def test_a_job_refuses_a_model_too_large_unless_asked_otherwise(
    hub: FakeHub, store: ModelStore, tiny: Path
) -> None:
    """The catalog says 4 GiB, the Hub serves a small file: the catalog's model is what would
    have to run, and a job checks it once the Hub has answered, before any byte."""
    target = DownloadTarget.for_spec(spec_for(tiny, size=4 * GIB))
    with pytest.raises(ModelTooLargeError):
        make_downloader(store, hardware=SMALL).job(target).run()
    assert hub.file_gets() == []


def test_old_partial_files_that_cannot_be_cleaned_up_do_not_stop_a_download(
    hub: FakeHub, downloader: Downloader, tiny: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse() -> list[Path]:
        raise PermissionError("read-only folder")

    downloader.clean_orphans = refuse  # type: ignore[method-assign]
    with caplog.at_level("WARNING", logger="assistant.models.downloads"):
        result = downloader.pull(REPO, FILENAME)
    assert result.model.path.read_bytes() == tiny.read_bytes()
    assert "Could not clean up old partial downloads: read-only folder" in caplog.messages
