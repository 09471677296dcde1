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
)
from assistant.models.downloads import (
    Downloader,
    DownloadJob,
    DownloadProgress,
    DownloadTarget,
)
from assistant.models.store import ModelStore
from tests.hub_server import FakeHub, small_filesystem
from tests.model_files import (
    write_small_runnable,
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
    assert (caught.value.message, caught.value.hint, caught.value.command) == (
        f"{FILENAME} was downloaded and verified and is installed in the Hugging Face cache "
        f"({cached}), but it could not be added to the list of installed models: "
        f"{store.file} is a folder, not a list of installed models.",
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
    assert notes[1].startswith("Hub did not answer in time, retrying in 0.0 s (")


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
