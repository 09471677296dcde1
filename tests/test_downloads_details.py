# ruff: noqa: F811  (the fixtures are imported from test_downloads_quick and used by name)
"""Pulls from the fake Hub, in detail: the words a user reads when something goes wrong, what
goes to the server (endpoint, revision, token, timeouts, retries), what is reported while it
runs and what ends up on disk and in the registry. The quick lane's companion of
``test_downloads_quick.py``: the same small runnable GGUF and fixtures."""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from assistant.errors import (
    Cancelled,
    ChecksumMismatchError,
    DiskFullError,
    DownloadError,
    HubServerError,
    ModelLoadError,
    RegistrationError,
    UnsupportedArchitectureError,
)
from assistant.models.catalog import Catalog
from assistant.models.downloads import (
    Downloader,
    DownloadJob,
    DownloadProgress,
    DownloadTarget,
)
from assistant.models.store import InstalledModel, ModelStore
from assistant.models.transfer import git_blob_sha1
from tests.hub_server import FakeHub, small_filesystem
from tests.model_files import (
    write_small_runnable,
    write_unknown_architecture,
    write_without_vocabulary,
)
from tests.support import smollm2_path
from tests.test_downloads_quick import (  # noqa: F401  (fixtures)
    FILENAME,
    MB,
    REPO,
    ROOMY,
    downloader,
    hub,
    make_downloader,
    sha,
    spec_for,
    store,
    tiny,
)

HEADER_NAME = "Smollm2 135M 8k Lc100K Mix1 Ep2"  # the tiny file's general.name


def retry_notes(into: list[str]) -> object:
    """An ``on_progress`` that keeps the note of every ``retrying`` report."""

    def keep(progress: DownloadProgress) -> None:
        if progress.phase == "retrying":
            into.append(progress.note)

    return keep


def pinned_and_newer(hub: FakeHub, folder: Path) -> str:
    """Put other bytes under the same name in a new commit; return the commit before it."""
    pinned = hub.repos[REPO].commit
    newer = write_small_runnable(folder / FILENAME, smollm2_path(), padding=MB)
    hub.new_commit(REPO, FILENAME, newer)
    return pinned


# --- what the user reads -----------------------------------------------------------------------


def test_a_file_llama_cpp_refuses_for_a_reason_of_its_own_says_it_and_is_deleted(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    from assistant.models.gguf_file import check_supported

    novocab = write_without_vocabulary(tmp_path / "NoVocab.Q4_0.gguf")
    with pytest.raises(ModelLoadError) as direct:
        check_supported(novocab)
    hub.add_file("test-org/novocab", novocab.name, novocab)
    with pytest.raises(ModelLoadError) as caught:
        downloader.pull("test-org/novocab", novocab.name)
    assert type(caught.value) is ModelLoadError
    assert (caught.value.message, caught.value.hint) == (
        f"{novocab.name} from test-org/novocab cannot be used: {direct.value.message} "
        "It was deleted; nothing was installed.",
        direct.value.hint,
    )
    assert "tokenizer.ggml.model" in caught.value.message  # llama.cpp's own reason
    assert not downloader.cache.blob_path("test-org/novocab", sha(novocab)).exists()
    assert not downloader.cache.partial_path("test-org/novocab", sha(novocab)).exists()
    assert store.list_installed() == []


def test_a_file_whose_header_has_no_name_is_named_after_the_file(
    hub: FakeHub, downloader: Downloader, tmp_path: Path
) -> None:
    """Not after the file's sha256, which is what the bytes are called while they arrive."""
    nameless = write_small_runnable(
        tmp_path / "Nameless-7B.Q4_0.gguf", smollm2_path(), without=("general.name",)
    )
    hub.add_file(REPO, nameless.name, nameless)
    assert downloader.pull(REPO, nameless.name).model.name == "Nameless-7B.Q4_0"


def test_a_changed_byte_from_a_mirror_names_the_listings_checksum(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    """A mirror's ETag is no checksum: the one the user is shown is the file listing's sha256."""
    hub.faults.opaque_etags = True
    hub.faults.flip_byte_at = 1000
    with pytest.raises(ChecksumMismatchError) as caught:
        downloader.pull(REPO, FILENAME)
    assert caught.value.message.startswith(
        f"The downloaded {FILENAME} does not match its published checksum "
        f"(expected {sha(tiny)[:12]}…, got "
    )


def test_a_registry_that_cannot_be_written_says_why_and_how_to_finish(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    # A folder stands where the registry's lock file goes: the registry cannot be written.
    Path(str(store.file) + ".lock").mkdir(parents=True)
    with pytest.raises(RegistrationError) as caught:
        downloader.job(DownloadTarget.for_spec(spec_for(tiny))).run()
    cached = downloader.cache.cached_file(REPO, FILENAME)
    assert cached is not None
    message = caught.value.message
    assert message.startswith(
        f"{FILENAME} was downloaded and verified and is installed in the Hugging Face cache "
        f"({cached}), but it could not be added to the list of installed models: "
    )
    # The cause names the path that failed, the lock file, and what it is for.
    assert message.endswith(
        f": {store.file}.lock is a folder, not a lock file of the list of installed models."
    )
    assert (caught.value.hint, caught.value.command) == (
        "Fix that, then get the model again: the file is found in the cache and added without "
        "downloading it again.",
        "offline-assistant models pull tiny-chat",
    )


def test_a_disk_that_fills_up_during_a_download_is_told_and_given_back(
    hub: FakeHub, store: ModelStore, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another program fills the disk while the bytes arrive: the partial file is deleted and
    the user reads where and what. The same when the cache was emptied meanwhile too."""
    with small_filesystem(tmp_path / "small", 32) as disk:
        monkeypatch.setenv("HF_HOME", str(disk / "hf"))
        downloader = make_downloader(store, free_margin=0)
        partial = downloader.cache.partial_path(REPO, sha(tiny))
        filler = disk / "someone-elses-file"
        for empty_the_cache in (False, True):

            def another_program_writes(
                progress: DownloadProgress, empty: bool = empty_the_cache
            ) -> None:
                if progress.phase == "downloading" and progress.done >= MB and not filler.exists():
                    if empty:
                        shutil.rmtree(downloader.cache.root)
                    stat = os.statvfs(disk)
                    filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 256 * 1024))

            job = downloader.job(DownloadTarget(REPO, FILENAME), on_progress=another_program_writes)
            with pytest.raises(DiskFullError) as caught:
                job.run()
            assert (caught.value.message, caught.value.hint) == (
                f"The disk holding {partial.parent} filled up while writing {FILENAME}. "
                "The partial download was deleted to give the space back.",
                "Free some space and try again.",
            )
            assert not partial.exists()
            assert store.list_installed() == []
            filler.unlink()


def test_a_cancel_after_the_cache_was_emptied_is_still_a_cancel(
    hub: FakeHub, store: ModelStore, downloader: Downloader
) -> None:
    """The Hugging Face cache is emptied (by hand, or another tool) during a pull, which is then
    cancelled: that ends as a cancel, not as an error about files that are gone."""
    for discard in (False, True):
        job = downloader.job(downloader.target_for(REPO, FILENAME))
        emptied = threading.Event()

        def empty_then_cancel(
            progress: DownloadProgress,
            job: DownloadJob = job,
            emptied: threading.Event = emptied,
            discard: bool = discard,
        ) -> None:
            if progress.done >= MB and not emptied.is_set():
                emptied.set()
                shutil.rmtree(downloader.cache.root)
                job.cancel(discard_partial=discard)

        job.on_progress = empty_then_cancel
        with pytest.raises(Cancelled):
            job.run()
        assert job.state == "cancelled" and emptied.is_set()
        assert store.list_installed() == []


def test_without_a_checksum_anywhere_the_user_is_told_how_to_get_the_file_anyway(
    hub: FakeHub, downloader: Downloader
) -> None:
    hub.faults.opaque_etags = True
    hub.faults.hide_lfs = True
    with pytest.raises(DownloadError) as caught:
        downloader.pull(REPO, FILENAME)
    assert (caught.value.message, caught.value.hint, caught.value.command) == (
        f"The Hub publishes no checksum for {FILENAME}, so it cannot be verified.",
        "Download it yourself (for example in a web browser), then import the file.",
        "offline-assistant models import PATH",
    )


# --- what goes to the server -------------------------------------------------------------------


def test_the_downloaders_own_endpoint_serves_every_request(
    store: ModelStore, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The metadata, the file listing (a mirror's ETags are no checksums), the bytes and the
    renewal of an expired CDN link all go to the endpoint the downloader was given, never to
    ``HF_ENDPOINT``."""
    with FakeHub() as ours, FakeHub() as elsewhere:
        for server in (ours, elsewhere):
            server.add_file(REPO, FILENAME, tiny)
        monkeypatch.setenv("HF_ENDPOINT", elsewhere.url)
        ours.faults.opaque_etags = True
        ours.faults.status = 403
        ours.faults.status_on = ("get",)
        ours.faults.status_times = 1
        result = make_downloader(store, endpoint=ours.url).pull(REPO, FILENAME)
        assert result.model.path.read_bytes() == tiny.read_bytes()
        assert elsewhere.records() == []
        records = ours.records()
        hub_seen = [(r.method, r.path.split("/")[1]) for r in records if r.server == "hub"]
        assert hub_seen == [("HEAD", "test-org"), ("GET", "api"), ("HEAD", "test-org")]
        assert [(r.method, r.status) for r in records if r.server == "cdn"] == [
            ("GET", 403),
            ("GET", 200),
        ]


def test_a_gated_files_listing_is_asked_for_with_the_token(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    """A mirror's gated file: the checksum comes from the listing, which wants the token too."""
    from assistant.secrets import set_hf_token

    set_hf_token("hf_secret")
    hub.gate(REPO, "hf_secret")
    hub.faults.opaque_etags = True
    result = downloader.pull(REPO, FILENAME)
    assert result.model.sha256 == sha(tiny)
    api = [(r.status, r.authorization) for r in hub.records() if r.path.startswith("/api/")]
    assert api == [(200, "Bearer hf_secret")]


def test_a_mirrors_file_pinned_to_a_commit_is_checked_against_that_commits_listing(
    hub: FakeHub, downloader: Downloader, tiny: Path, tmp_path: Path
) -> None:
    pinned = pinned_and_newer(hub, tmp_path)
    hub.faults.opaque_etags = True
    result = downloader.job(DownloadTarget(REPO, FILENAME, revision=pinned)).run()
    assert result.model.sha256 == sha(tiny) and result.model.revision == pinned
    api = [r.path for r in hub.records() if r.path.startswith("/api/")]
    assert len(api) == 1 and f"/revision/{pinned}" in api[0]


def test_a_file_pinned_to_a_commit_is_not_taken_from_the_caches_copy_of_another(
    hub: FakeHub, downloader: Downloader, tiny: Path, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download

    pinned = pinned_and_newer(hub, tmp_path)
    hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)  # main's
    result = downloader.job(DownloadTarget(REPO, FILENAME, revision=pinned)).run()
    assert not result.from_cache
    assert result.model.revision == pinned
    assert result.model.path.read_bytes() == tiny.read_bytes()


def test_a_silent_hub_is_given_up_on_after_the_timeout_and_asked_again(
    hub: FakeHub, store: ModelStore, tiny: Path
) -> None:
    """The first HEAD, and later the bytes, stop coming for longer than the timeout: each is
    abandoned after the timeout and asked for again, and the user is told."""
    hub.faults.stall_head_s = 8.0
    hub.faults.stall_after = MB
    hub.faults.stall_s = 8.0
    notes: list[str] = []
    downloader = make_downloader(store, timeout=2.0, retries=2)
    job = downloader.job(DownloadTarget(REPO, FILENAME), on_progress=retry_notes(notes))
    result = job.run()
    assert result.model.path.read_bytes() == tiny.read_bytes()
    assert len(notes) == 2 and notes[0] == "Hub did not answer in time, retrying in 0.0 s (1/2)"
    # The bytes stalled after a megabyte had come in: nothing counted, the download goes on.
    assert notes[1] == "Hub did not answer in time, resuming in 0.0 s"


def test_each_request_is_retried_as_often_as_set_and_each_retry_is_told(
    hub: FakeHub, store: ModelStore
) -> None:
    downloader = make_downloader(store, retries=2, retry_wait=0.01)
    notes: list[str] = []
    hub.faults.status = 500
    hub.faults.status_on = ("head",)
    with pytest.raises(HubServerError):
        downloader.job(DownloadTarget(REPO, FILENAME), on_progress=retry_notes(notes)).run()
    assert notes == [f"Hub answered 500, retrying in 0.0 s ({n}/2)" for n in (1, 2)]
    assert [r.method for r in hub.records()] == ["HEAD"] * 3

    # The bytes: every answer cut before its first byte.
    hub.faults.status = None
    hub.faults.drop_after = 0
    hub.faults.drop_times = None
    hub.clear_log()
    notes.clear()
    with pytest.raises(DownloadError):
        downloader.job(DownloadTarget(REPO, FILENAME), on_progress=retry_notes(notes)).run()
    assert notes == [f"Connection to the Hub failed, retrying in 0.0 s ({n}/2)" for n in (1, 2)]
    assert len([r for r in hub.records() if r.server == "cdn"]) == 3


def test_by_default_a_request_is_retried_five_times_the_first_after_a_second(
    hub: FakeHub, store: ModelStore
) -> None:
    hub.faults.status = 500
    hub.faults.status_on = ("head",)
    notes: list[str] = []
    quick = Downloader(store, hardware=ROOMY, retry_wait=0.0)
    with pytest.raises(HubServerError):
        quick.job(DownloadTarget(REPO, FILENAME), on_progress=retry_notes(notes)).run()
    assert notes == [f"Hub answered 500, retrying in 0.0 s ({n}/5)" for n in range(1, 6)]
    notes.clear()
    once = Downloader(store, hardware=ROOMY, retries=1)
    with pytest.raises(HubServerError):
        once.job(DownloadTarget(REPO, FILENAME), on_progress=retry_notes(notes)).run()
    assert notes == ["Hub answered 500, retrying in 1 s (1/1)"]


# --- what is reported while it runs ------------------------------------------------------------


def test_with_a_long_progress_interval_only_the_steps_are_reported(
    hub: FakeHub, store: ModelStore, tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However rarely the front end wants progress, it hears each step begin and end. And no
    helper thread of the pull (the hashing writer, the background fsync) dies with an error."""
    failures: list[object] = []
    monkeypatch.setattr(threading, "excepthook", failures.append)
    size = tiny.stat().st_size
    seen: list[DownloadProgress] = []
    make_downloader(store, progress_interval=math.inf).pull(REPO, FILENAME, on_progress=seen.append)
    assert [(p.phase, p.done, p.total) for p in seen] == [
        ("checking", 0, None),
        ("downloading", 0, size),
        ("downloading", size, size),
        ("verifying", size, size),
    ]
    assert failures == []


def test_the_job_says_what_it_does_at_each_step_of_a_resumed_pull(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    partial = downloader.cache.partial_path(REPO, sha(tiny))
    partial.parent.mkdir(parents=True)
    partial.write_bytes(tiny.read_bytes()[: 2 * MB])
    job = downloader.job(downloader.target_for(REPO, FILENAME))
    seen: list[tuple[str, str]] = []
    job.on_progress = lambda progress: seen.append((progress.phase, job.state))
    assert job.run().resumed_from == 2 * MB
    assert all(phase == state for phase, state in seen), seen
    steps = [phase for phase, _ in itertools.groupby(phase for phase, _ in seen)]
    assert steps == ["checking", "verifying", "downloading", "verifying"]


def test_checking_a_cached_copy_reports_progress_against_its_size(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, FILENAME, cache_dir=downloader.cache.root, endpoint=hub.url)
    seen: list[DownloadProgress] = []
    result = downloader.job(downloader.target_for(REPO, FILENAME), on_progress=seen.append).run()
    assert result.from_cache
    size = tiny.stat().st_size
    checked = [(p.done, p.total) for p in seen if p.phase == "verifying"]
    assert checked and checked[-1] == (size, size)
    assert {total for _, total in checked} == {size}


def test_a_failing_memory_estimate_does_not_stop_a_download_asked_for_anyway(
    hub: FakeHub, downloader: Downloader, tiny: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The memory warning is advice: an entry the estimate cannot work with (no context
    length) is logged, and the download goes on."""
    spec = dataclasses.replace(spec_for(tiny), context_length=0)
    with caplog.at_level("ERROR", logger="assistant.models.downloads"):
        result = downloader.job(DownloadTarget.for_spec(spec), allow_large=True).run()
    assert result.model.id == "tiny-chat" and result.warnings == ()
    logged = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert logged == [("Memory-fit estimate failed", True)]


# --- what ends up on disk and in the registry --------------------------------------------------


def test_the_same_bytes_already_in_the_cache_are_checked_and_linked_not_fetched(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    """Another file of the repository with the same bytes (its blob is here already): linked
    after its checks, and registered with everything a download would have."""
    name = "tiny-00001-of-00003.gguf"
    hub.add_file(REPO, name, tiny)
    blob = downloader.cache.blob_path(REPO, sha(tiny))
    blob.parent.mkdir(parents=True)
    shutil.copyfile(tiny, blob)
    result = downloader.pull(REPO, name)
    assert result.from_cache and hub.file_gets() == []
    model = result.model
    assert (model.name, model.size_bytes, model.sha256, model.revision) == (
        HEADER_NAME,
        tiny.stat().st_size,
        sha(tiny),
        hub.repos[REPO].commit,
    )
    assert model.path.name == name and model.path.resolve() == blob
    assert result.warnings == (
        f"{name} is part 1 of 3 of a split model; only this part is downloaded.",
    )


def test_an_unusable_blob_already_in_the_cache_is_deleted(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tmp_path: Path
) -> None:
    """Bytes of this app's own earlier download (a blob, not another tool's snapshot) that
    this engine cannot run do not stay in the cache taking space."""
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")
    hub.add_file("test-org/florp", florp.name, florp)
    blob = downloader.cache.blob_path("test-org/florp", sha(florp))
    blob.parent.mkdir(parents=True)
    shutil.copyfile(florp, blob)
    with pytest.raises(UnsupportedArchitectureError) as caught:
        downloader.pull("test-org/florp", florp.name)
    assert caught.value.message.endswith("does not support. It was deleted; nothing was installed.")
    assert not blob.exists() and store.list_installed() == []
    assert hub.file_gets() == []


def test_a_damaged_copy_of_a_git_stored_file_in_the_cache_is_fetched_again(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    git_id = git_blob_sha1(tiny)
    hub.add_file("test-org/git", FILENAME, tiny, sha256=git_id)
    blob = downloader.cache.blob_path("test-org/git", git_id)
    blob.parent.mkdir(parents=True)
    damaged = bytearray(tiny.read_bytes())
    damaged[MB] ^= 0xFF
    blob.write_bytes(bytes(damaged))
    result = downloader.pull("test-org/git", FILENAME)
    assert not result.from_cache and result.fetched_bytes == tiny.stat().st_size
    assert result.model.path.read_bytes() == tiny.read_bytes()


def test_without_a_size_from_the_hub_a_repo_file_is_taken_to_the_end_of_its_body(
    hub: FakeHub, downloader: Downloader, tiny: Path
) -> None:
    hub.faults.hide_size = True
    result = downloader.pull(REPO, FILENAME)
    assert result.model.path.read_bytes() == tiny.read_bytes()
    assert result.model.size_bytes == tiny.stat().st_size


def test_a_file_registered_twice_is_found_under_its_catalog_id(
    hub: FakeHub, store: ModelStore, downloader: Downloader, tiny: Path
) -> None:
    """An older download under a slug, and an import under the catalog id: the catalog id's
    entry is the one the pull reports."""
    for model_id, source, added in (
        ("tiny-model-q4_1", "hub", "2025-01-01T00:00:00+00:00"),
        ("tiny-chat", "import", "2025-06-01T00:00:00+00:00"),
    ):
        store.register(
            InstalledModel(
                id=model_id,
                name="Tiny",
                path=tiny,
                size_bytes=tiny.stat().st_size,
                source=source,  # type: ignore[arg-type]
                repo=REPO,
                filename=FILENAME,
                owned=False,
                added_at=added,
            )
        )
    result = downloader.job(DownloadTarget.for_spec(spec_for(tiny))).run()
    assert result.already_installed and result.model.id == "tiny-chat"
    assert hub.records() == []


def test_a_downloader_uses_the_catalog_and_the_cache_folder_it_is_given(
    hub: FakeHub, store: ModelStore, tiny: Path, tmp_path: Path
) -> None:
    spec = spec_for(tiny)
    downloader = make_downloader(store, catalog=Catalog([spec]), cache_dir=tmp_path / "cache")
    assert downloader.target_for(REPO, FILENAME) == DownloadTarget.for_spec(spec)
    result = downloader.pull("tiny-chat")
    assert result.model.id == "tiny-chat" and result.model.source == "catalog"
    assert result.model.path.is_relative_to(tmp_path / "cache")


def test_a_pull_deletes_resumable_downloads_left_for_two_weeks_and_keeps_younger_ones(
    hub: FakeHub, downloader: Downloader
) -> None:
    blobs = downloader.cache.repo_dir("test-org/other") / "blobs"
    blobs.mkdir(parents=True)
    young, old = blobs / ("a" * 64 + ".incomplete"), blobs / ("b" * 64 + ".incomplete")
    for path, days in ((young, 13), (old, 15)):
        path.write_bytes(b"some bytes")
        stamp = time.time() - days * 24 * 3600
        os.utime(path, (stamp, stamp))
    downloader.pull(REPO, FILENAME)
    assert young.exists() and not old.exists()


def test_the_space_a_download_needs_is_the_rest_of_the_file_to_the_byte(
    hub: FakeHub, store: ModelStore, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a small file system of the test's own, whose free space nothing else moves."""
    with small_filesystem(tmp_path / "small", 32) as disk:
        monkeypatch.setenv("HF_HOME", str(disk / "hf"))
        size = tiny.stat().st_size
        folder = make_downloader(store).cache.repo_dir(REPO)
        folder.mkdir(parents=True)
        free = shutil.disk_usage(folder).free
        target = DownloadTarget(REPO, FILENAME)
        # Nothing here yet: the whole file and the margin must fit, and they do exactly.
        make_downloader(store, free_margin=free - size).preflight(target, size=size)
        with pytest.raises(DiskFullError):
            make_downloader(store, free_margin=free - size + 1).preflight(target, size=size)

        # A Hub file's partial bytes (known only once the Hub has answered) count too.
        partial = make_downloader(store).cache.partial_path(REPO, sha(tiny))
        partial.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(tiny.read_bytes()[: size - 1000])
        free = shutil.disk_usage(folder).free
        result = make_downloader(store, free_margin=free - 100_000).pull(REPO, FILENAME)
        assert result.resumed_from == size - 1000
