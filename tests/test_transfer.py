"""The byte-moving layer on its own: the hashing writer, file hashing, and ranged transfers against
the fake Hub. The bytes moved are random (the layer never reads them), so these tests need no model
file and run in the quick lane. Whole pulls of the real model (pause, cancel, kill -9, disk full)
are in ``test_downloads.py``."""

from __future__ import annotations

import errno
import hashlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from assistant.disk import is_disk_full
from assistant.errors import (
    Cancelled,
    ConnectionDroppedError,
    DownloadError,
    DownloadTimeoutError,
    HubAccessError,
    HubOfflineError,
    HubServerError,
)
from assistant.models import hub, transfer
from assistant.models.transfer import (
    DownloadProgress,
    HashingWriter,
    ProgressMeter,
    RangedTransfer,
    TransferControl,
    TransferResult,
    _length,
    _range_starts_at,
    fsync_in_background,
    git_blob_sha1,
    hash_file,
)
from tests.hub_server import FakeHub

REPO = "test-org/smol"
FILENAME = "smol.gguf"
MB = 1024 * 1024


@pytest.fixture
def payload(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of random bytes the size of a small model's first shard (16 MB and a bit)."""
    path = tmp_path_factory.mktemp("payload") / FILENAME
    path.write_bytes(os.urandom(16 * MB + 12345))
    return path


@pytest.fixture
def server(payload: Path) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add_file(REPO, FILENAME, payload)
        yield fake


def chunks(data: bytes, sizes: tuple[int, ...]) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, in turn."""
    at, turn = 0, 0
    while at < len(data):
        size = sizes[turn % len(sizes)]
        yield data[at : at + size]
        at, turn = at + size, turn + 1


def test_hashing_writer_writes_and_hashes_every_byte_in_order(tmp_path: Path) -> None:
    data = os.urandom(5 * MB + 12345)
    target = tmp_path / "out"
    with HashingWriter(target, batch=256 * 1024) as writer:
        for piece in chunks(data, (1, 65536, 7, 300_000, 4096)):
            writer.write(piece)
        writer.flush()
        assert target.stat().st_size == len(data)  # flush means on disk, not just queued
        assert writer.hexdigest() == hashlib.sha256(data).hexdigest()
    assert target.read_bytes() == data


def test_hashing_writer_puts_even_a_few_bytes_in_the_os_hands_at_flush(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with HashingWriter(target) as writer:
        writer.write(b"abc")
        writer.flush()
        # What a kill -9 now would leave: the file is unbuffered, so the bytes are there.
        assert target.read_bytes() == b"abc"
        writer.write(b"de")
    assert target.read_bytes() == b"abcde"


def test_hashing_writer_continues_a_digest_and_restarts_from_zero(tmp_path: Path) -> None:
    head, tail = os.urandom(MB), os.urandom(MB)
    target = tmp_path / "out"
    target.write_bytes(head)
    with HashingWriter(target, digest=hashlib.sha256(head)) as writer:
        writer.write(tail)
        assert writer.hexdigest() == hashlib.sha256(head + tail).hexdigest()
        writer.restart()  # as when a server ignores the Range header
        assert target.stat().st_size == 0
        writer.write(tail)
        assert writer.hexdigest() == hashlib.sha256(tail).hexdigest()
    assert target.read_bytes() == tail


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_reaches_the_callers_thread() -> None:
    writer = HashingWriter(Path("/dev/full"))
    with pytest.raises(OSError) as caught:
        for _ in range(64):  # the first hand-over fails in the helper; a later one reports it
            writer.write(b"x" * 65536)
        writer.flush()
    assert caught.value.errno == errno.ENOSPC and is_disk_full(caught.value)
    writer.close()  # does not hang, does not raise again


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_found_when_the_writer_is_left_is_raised_there() -> None:
    with pytest.raises(OSError) as at_exit, HashingWriter(Path("/dev/full")) as unflushed:
        unflushed.write(b"x")  # nothing waits for this write: its error comes at the end
    assert at_exit.value.errno == errno.ENOSPC


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE short writes are Linux's")
def test_a_short_write_is_continued_and_the_next_error_reported(tmp_path: Path) -> None:
    """At the file-size limit (as on a full disk) the kernel writes part of a buffer; the rest
    is written again, and that write's error (EFBIG here, ENOSPC on a full disk) is the one
    reported, never a silent loss. In this process, so that mutation runs see it: the limit is
    set for the moment of one write, far above anything else written meanwhile."""
    import resource
    import signal

    target = tmp_path / "out"
    limit = 300_000
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        with pytest.raises(OSError) as caught, HashingWriter(target) as writer:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, old_limit[1]))
            writer.write(b"x" * 1_000_000)
            writer.flush()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert caught.value.errno == errno.EFBIG
    assert target.stat().st_size == limit


class HeldDigest:
    """A sha256 whose first update waits until released: it holds the helper thread busy, so
    the test knows that the writes made meanwhile are still pending."""

    def __init__(self) -> None:
        self.inner = hashlib.sha256()
        self.entered = threading.Event()
        self.release = threading.Event()

    def update(self, data: bytes, /) -> None:
        self.entered.set()
        self.release.wait()
        self.inner.update(data)

    def hexdigest(self) -> str:
        return self.inner.hexdigest()


def test_hashing_writer_joins_what_is_pending_when_closed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    digest = HeldDigest()
    writer = HashingWriter(target, digest=digest, batch=1 << 30)
    writer.write(b"first ")  # the helper is idle: handed over at once, and held in update
    assert digest.entered.wait(10)
    writer.write(b"second ")  # the helper is busy and the batch is not full: kept pending
    writer.write(b"third")
    digest.release.set()
    writer.close()
    assert target.read_bytes() == b"first second third"
    assert writer.hexdigest() == hashlib.sha256(b"first second third").hexdigest()
    writer.close()  # a second close does nothing
    with pytest.raises(ValueError, match=r"^the HashingWriter is closed$"):
        writer.flush()


def test_hash_file_matches_hashlib_and_reports_progress(payload: Path) -> None:
    seen: list[int] = []
    digest = hash_file(payload, on_chunk=seen.append)
    assert digest.hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert seen[-1] == payload.stat().st_size and seen == sorted(seen)


def test_hash_file_stops_at_the_length_given(payload: Path) -> None:
    data = payload.read_bytes()
    for length in (0, 1000, len(data) - 1):
        assert hash_file(payload, length).hexdigest() == hashlib.sha256(data[:length]).hexdigest()


def test_git_blob_sha1_is_the_id_git_gives_the_bytes(tmp_path: Path) -> None:
    small = tmp_path / "hello"
    small.write_bytes(b"hello\n")
    assert git_blob_sha1(small) == "ce013625030ba8dba906f756967f9e9ca394464a"  # git hash-object
    large = tmp_path / "large"
    data = os.urandom(3 * MB + 7)
    large.write_bytes(data)
    expected = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    assert git_blob_sha1(large) == expected


def test_retry_waits_double_up_to_a_ceiling() -> None:
    waits = [hub.retry_delay(0.5, attempt) for attempt in range(7)]
    assert waits == [0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def run_transfer(server: FakeHub, partial: Path, total: int) -> TransferResult:
    """Fetch the rest of the fake Hub's file into ``partial``, as a pull would."""
    meta = hub.fetch_file_metadata(REPO, FILENAME, endpoint=server.url, retries=0)
    reports: list[DownloadProgress] = []
    transfer = RangedTransfer(
        meta,
        token=None,
        endpoint=server.url,
        control=TransferControl(),
        meter=ProgressMeter(reports.append, interval=0.0),
        refresh=lambda: meta,
        retries=1,
        retry_wait=0.01,
    )
    have = partial.stat().st_size if partial.exists() else 0
    digest = hash_file(partial) if have else None
    result = transfer.run(partial, have, total, digest=digest)
    assert reports[-1].done == reports[-1].total == total  # the count matches the file
    return result


@pytest.mark.parametrize("ignore_range", [False, True])
def test_ranged_transfer_resumes_or_starts_over(
    server: FakeHub, payload: Path, tmp_path: Path, ignore_range: bool
) -> None:
    data = payload.read_bytes()
    partial = tmp_path / "partial"
    partial.write_bytes(data[: 10 * MB])
    server.faults.ignore_range = ignore_range

    result = run_transfer(server, partial, len(data))

    assert partial.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    gets = server.file_gets()
    assert [g.range for g in gets] == [f"bytes={10 * MB}-"]
    expected_fetched = len(data) if ignore_range else len(data) - 10 * MB
    assert result.fetched == expected_fetched
    assert [g.accept_encoding for g in gets] == ["identity"]  # the bytes as stored, never gzip


# --- the progress meter ------------------------------------------------------------------------


class Clock:
    """A monotonic clock the test moves by hand, so the meter's arithmetic can be checked
    exactly (this checks what is computed from the times, not how fast anything runs)."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(transfer, "time", clock)
    return clock


def test_meter_reports_at_most_once_per_interval_unless_forced(clock: Clock) -> None:
    reports: list[DownloadProgress] = []
    meter = ProgressMeter(reports.append, interval=1.0)
    assert meter.latest == DownloadProgress(0, None, 0.0, None, "checking")
    meter.update(0, 100, force=True)
    clock.now += 0.5
    meter.update(10, 100)  # within the interval: dropped
    assert [r.done for r in reports] == [0]
    clock.now += 0.5
    meter.update(20, 100)  # exactly one interval later: reported
    clock.now += 0.1
    meter.update(30, 100, phase="verifying", force=True)
    assert [(r.done, r.phase) for r in reports] == [
        (0, "downloading"),
        (20, "downloading"),
        (30, "verifying"),
    ]
    assert meter.latest is reports[-1]


def test_meter_speed_is_over_the_last_three_seconds_and_gives_the_time_left(clock: Clock) -> None:
    reports: list[DownloadProgress] = []
    meter = ProgressMeter(reports.append, interval=0.0)
    meter.update(0, 1000)
    assert reports[-1].speed_bps == 0.0 and reports[-1].eta_s is None  # one sample: no speed
    clock.now += 1.0
    meter.update(100, 1000)
    assert reports[-1].speed_bps == 100.0
    assert reports[-1].eta_s == 9.0
    assert reports[-1].fraction == 0.1
    clock.now += 1.0
    meter.update(300, 1000)
    assert reports[-1].speed_bps == 150.0  # (300 - 0) bytes in 2 s
    clock.now += 2.0
    meter.update(700, 1000)  # the sample at t=0 is now 4 s old: dropped
    assert reports[-1].speed_bps == 200.0  # (700 - 100) bytes in 3 s
    clock.now += 1.0
    meter.update(720, 1000)  # the sample at t=2 is exactly 3 s old: still counted
    assert reports[-1].speed_bps == pytest.approx((720 - 300) / 3.0)
    clock.now += 4.5
    meter.update(800, 1000)  # all older than 3 s, but the last two samples are always kept
    assert reports[-1].speed_bps == pytest.approx((800 - 720) / 4.5)
    clock.now += 0.04
    meter.update(900, None)
    assert reports[-1].eta_s is None and reports[-1].fraction is None  # no total: no time left


def test_meter_speed_needs_a_twentieth_of_a_second(clock: Clock) -> None:
    clock.now = 0.0  # 0.05 - 0.0 is exactly 0.05 in floating point
    reports: list[DownloadProgress] = []
    meter = ProgressMeter(reports.append, interval=0.0)
    meter.update(0, 1000)
    clock.now += 0.05
    meter.update(500, 1000)
    assert reports[-1].speed_bps == 0.0  # too short a span to say
    clock.now += 0.01
    meter.update(600, 1000)
    assert reports[-1].speed_bps == pytest.approx(600 / 0.06)


def test_meter_gives_the_time_left_at_a_crawl(clock: Clock) -> None:
    reports: list[DownloadProgress] = []
    meter = ProgressMeter(reports.append, interval=0.0)
    meter.update(0, 10)
    clock.now += 2.0
    meter.update(1, 10)
    assert reports[-1].speed_bps == 0.5 and reports[-1].eta_s == 18.0


def test_meter_restart_forgets_the_speed_and_pauses_and_retries_keep_the_count(
    clock: Clock,
) -> None:
    reports: list[DownloadProgress] = []
    meter = ProgressMeter(reports.append, interval=0.0)
    meter.update(0, 1000)
    clock.now += 1.0
    meter.update(500, 1000)
    meter.paused(500, 1000)
    assert reports[-1] == DownloadProgress(500, 1000, 0.0, None, "paused")
    meter.retrying("Hub answered 500, retrying in 1 s (1/5)")
    assert reports[-1] == DownloadProgress(
        500, 1000, 0.0, None, "retrying", "Hub answered 500, retrying in 1 s (1/5)"
    )
    meter.restart()
    clock.now += 10.0
    meter.update(600, 1000)
    assert reports[-1].speed_bps == 0.0  # the bytes before the restart do not count
    assert len(reports) == 5


# --- pause, resume, cancel ------------------------------------------------------------------


def test_control_pause_waits_in_checkpoint_until_resumed(clock: Clock) -> None:
    control = TransferControl()
    reports: list[DownloadProgress] = []
    meter = ProgressMeter(reports.append, interval=0.0)
    assert not control.interrupted and not control.paused
    control.checkpoint(meter, 5, 10)  # nothing asked: returns at once
    assert reports == []
    control.pause()
    assert control.interrupted and not control.paused
    left = threading.Event()

    def wait() -> None:
        control.checkpoint(meter, 5, 10)
        left.set()

    worker = threading.Thread(target=wait)
    worker.start()
    while not control.paused:
        assert worker.is_alive()
        time.sleep(0.005)
    assert reports == [DownloadProgress(5, 10, 0.0, None, "paused")]
    assert not left.wait(0.1)  # still waiting
    control.resume()
    worker.join(10)
    assert left.is_set() and not control.paused and not control.interrupted


def test_control_cancel_ends_a_pause_and_raises(clock: Clock) -> None:
    control = TransferControl()
    meter = ProgressMeter(lambda p: None, interval=0.0)
    control.pause()
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            control.checkpoint(meter, 0, None)
        except Cancelled as exc:
            outcome.append(exc)

    worker = threading.Thread(target=wait)
    worker.start()
    while not control.paused:
        time.sleep(0.005)
    control.cancel(discard_partial=True)
    worker.join(10)
    assert len(outcome) == 1 and control.discard_partial and control.interrupted
    with pytest.raises(Cancelled):
        control.checkpoint(meter, 0, None)
    assert not control.paused


def test_control_cancel_without_pause_keeps_the_partial() -> None:
    control = TransferControl()
    control.cancel()
    assert control.cancel_requested and not control.discard_partial and control.interrupted
    with pytest.raises(Cancelled):
        control.checkpoint(ProgressMeter(lambda p: None, interval=0.0), 0, None)


def test_control_sleep_ends_when_cancelled() -> None:
    control = TransferControl()
    woke = threading.Event()

    def sleep() -> None:
        control.sleep(120)
        woke.set()

    worker = threading.Thread(target=sleep)
    worker.start()
    control.cancel()
    worker.join(30)  # a hang guard: without the cancel this sleeps two minutes
    assert woke.is_set()


# --- ranged transfers: faults, errors, tokens --------------------------------------------------


def make_transfer(
    server: FakeHub,
    reports: list[DownloadProgress],
    *,
    control: TransferControl | None = None,
    token: str | None = None,
    retries: int = 1,
    refreshes: list[str] | None = None,
) -> RangedTransfer:
    meta = hub.fetch_file_metadata(REPO, FILENAME, endpoint=server.url, retries=0)

    def refresh() -> hub.FileMetadata:
        if refreshes is not None:
            refreshes.append(meta.location)
        return hub.fetch_file_metadata(REPO, FILENAME, endpoint=server.url, retries=0)

    return RangedTransfer(
        meta,
        token=token,
        endpoint=server.url,
        control=control or TransferControl(),
        meter=ProgressMeter(reports.append, interval=0.0),
        refresh=refresh,
        retries=retries,
        retry_wait=0.01,
    )


def test_a_dropped_connection_is_resumed_from_the_bytes_on_disk(
    server: FakeHub, payload: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="assistant.models.transfer")
    data = payload.read_bytes()
    server.faults.drop_after = 3 * MB + 17
    server.faults.drop_times = 2
    reports: list[DownloadProgress] = []
    partial = tmp_path / "partial"

    # One retry allowed, two drops: each attempt brought bytes, so the count of failures in a
    # row starts again after each.
    result = make_transfer(server, reports, retries=1).run(partial, 0, len(data))

    assert partial.read_bytes() == data
    assert result == TransferResult(len(data), hashlib.sha256(data).hexdigest())
    gets = server.file_gets()
    assert [g.range for g in gets] == [
        None,
        f"bytes={gets[0].bytes_sent}-",
        f"bytes={gets[0].bytes_sent + gets[1].bytes_sent}-",
    ]
    notes = [r.note for r in reports if r.phase == "retrying"]
    # Nothing counted against the retries, so no "(0/1)": the download just goes on.
    assert notes == ["Connection to the Hub failed, resuming in 0.0 s"] * 2
    assert {r.total for r in reports if r.phase == "downloading"} == {len(data)}
    resumed = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert len(resumed) == 2
    assert resumed[0].startswith(f"Download of {FILENAME} interrupted (")
    assert resumed[0].endswith(f"); resuming at byte {gets[0].bytes_sent}.")
    assert reports[0] == DownloadProgress(0, len(data), 0.0, None, "downloading")
    assert reports[-1].done == len(data) and reports[-1].phase == "downloading"


def test_a_connection_that_keeps_dropping_gives_up_after_the_retries(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    server.faults.drop_after = 0
    server.faults.drop_times = None
    partial = tmp_path / "partial"
    partial.write_bytes(payload.read_bytes()[:MB])
    reports: list[DownloadProgress] = []

    with pytest.raises(ConnectionDroppedError):
        make_transfer(server, reports, retries=2).run(partial, MB, payload.stat().st_size)

    cdn = [r for r in server.records() if r.server == "cdn"]
    assert [r.range for r in cdn] == [f"bytes={MB}-"] * 3  # the first try and two retries
    assert [r.note for r in reports if r.phase == "retrying"] == [
        "Connection to the Hub failed, retrying in 0.0 s (1/2)",
        "Connection to the Hub failed, retrying in 0.0 s (2/2)",
    ]
    assert partial.stat().st_size == MB  # kept for the next pull


def test_server_errors_are_retried_then_reported(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    server.faults.status = 503
    server.faults.status_on = ("get",)
    reports: list[DownloadProgress] = []
    with pytest.raises(HubServerError):
        make_transfer(server, reports, retries=1).run(tmp_path / "p", 0, payload.stat().st_size)
    assert [r.status for r in server.records() if r.server == "cdn"] == [503, 503]
    assert [r.note for r in reports if r.phase == "retrying"] == [
        "Hub answered 503, retrying in 0.0 s (1/1)"
    ]


def test_a_passing_server_error_is_survived(server: FakeHub, payload: Path, tmp_path: Path) -> None:
    server.faults.status = 500
    server.faults.status_on = ("get",)
    server.faults.status_times = 1
    partial = tmp_path / "p"
    make_transfer(server, []).run(partial, 0, payload.stat().st_size)
    assert partial.read_bytes() == payload.read_bytes()


def test_a_missing_blob_is_not_retried(server: FakeHub, payload: Path, tmp_path: Path) -> None:
    reports: list[DownloadProgress] = []
    job = make_transfer(server, reports, retries=3)
    server.faults.status = 404
    server.faults.status_on = ("get",)
    with pytest.raises(DownloadError) as caught:
        job.run(tmp_path / "p", 0, payload.stat().st_size)
    assert FILENAME in caught.value.message and REPO in caught.value.message
    assert len([r for r in server.records() if r.server == "cdn"]) == 1
    assert not [r for r in reports if r.phase == "retrying"]


@pytest.mark.parametrize("status", [401, 403])
def test_an_expired_cdn_link_is_renewed(
    server: FakeHub, payload: Path, tmp_path: Path, status: int
) -> None:
    server.faults.status = status
    server.faults.status_on = ("get",)
    server.faults.status_times = 1
    refreshes: list[str] = []
    partial = tmp_path / "p"
    make_transfer(server, [], refreshes=refreshes).run(partial, 0, payload.stat().st_size)
    assert len(refreshes) == 1
    assert partial.read_bytes() == payload.read_bytes()


def test_an_expired_cdn_link_is_renewed_once(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    server.faults.status = 403
    server.faults.status_on = ("get",)
    server.faults.status_times = 1
    refreshes: list[str] = []
    partial = tmp_path / "p"
    make_transfer(server, [], refreshes=refreshes).run(partial, 0, payload.stat().st_size)
    assert len(refreshes) == 1
    assert partial.read_bytes() == payload.read_bytes()
    heads = [r for r in server.records() if r.server == "hub" and r.method == "HEAD"]
    assert len(heads) == 2  # the first metadata, and the renewal

    server.faults.status_times = None  # refused again after the renewal: reported
    server.clear_log()
    refreshes.clear()
    with pytest.raises(HubAccessError):
        make_transfer(server, [], refreshes=refreshes).run(
            tmp_path / "q", 0, payload.stat().st_size
        )
    assert len(refreshes) == 1
    assert len([r for r in server.records() if r.server == "cdn"]) == 2


def test_a_refusal_by_the_hub_itself_is_not_taken_for_an_expired_link(
    payload: Path, tmp_path: Path
) -> None:
    with FakeHub(cdn=False) as direct:
        direct.add_file(REPO, FILENAME, payload)
        refreshes: list[str] = []
        job = make_transfer(direct, [], token="hf_secret", refreshes=refreshes)
        direct.faults.status = 403
        direct.faults.status_on = ("get",)
        with pytest.raises(HubAccessError) as caught:
            job.run(tmp_path / "p", 0, payload.stat().st_size)
        assert refreshes == []
        assert FILENAME in caught.value.message
        assert f"{direct.url}/{REPO}" in caught.value.hint  # the model's page on this Hub
        assert "your token's account was granted access" in caught.value.hint


def test_the_token_goes_to_the_hub_and_never_to_the_cdn(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    make_transfer(server, [], token="hf_secret").run(tmp_path / "p", 0, payload.stat().st_size)
    gets = server.file_gets()
    assert [(g.server, g.authorization) for g in gets] == [("cdn", None)]
    with FakeHub(cdn=False) as direct:
        direct.add_file(REPO, FILENAME, payload)
        partial = tmp_path / "q"
        make_transfer(direct, [], token="hf_secret").run(partial, 0, payload.stat().st_size)
        assert [g.authorization for g in direct.file_gets()] == ["Bearer hf_secret"]
        assert partial.read_bytes() == payload.read_bytes()


@pytest.mark.parametrize("have", [0, 5 * MB])
def test_an_unknown_total_is_read_from_the_response(
    server: FakeHub, payload: Path, tmp_path: Path, have: int
) -> None:
    data = payload.read_bytes()
    partial = tmp_path / "p"
    partial.write_bytes(data[:have])
    reports: list[DownloadProgress] = []
    digest = hashlib.sha256(data[:have])
    result = make_transfer(server, reports).run(partial, have, None, digest=digest)
    assert partial.read_bytes() == data
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.fetched == len(data) - have
    assert reports[-1].total == len(data) and reports[-1].done == len(data)


def test_an_empty_answer_counts_as_a_dropped_connection(tmp_path: Path, payload: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    with FakeHub() as server:
        server.add_file(REPO, FILENAME, empty)
        reports: list[DownloadProgress] = []
        with pytest.raises(ConnectionDroppedError) as caught:
            make_transfer(server, reports, retries=2).run(tmp_path / "p", 0, 1000)
        # Three attempts (retries=2), each one GET; but an attempt can die on a kept-alive
        # connection the server had just closed, before it reaches the server (a dropped
        # connection too, retried alike), so the server may see only two of them. The words
        # are those of the last failure: "nothing" when every attempt got an empty answer.
        reached = len([r for r in server.records() if r.server == "cdn"])
        assert 2 <= reached <= 3
        nothing = f"The Hub kept sending nothing for {FILENAME}."
        dropping = f"The connection to the Hub kept dropping while sending {FILENAME} from {REPO}."
        words = {
            nothing: "Try again later: the bytes downloaded so far are kept.",
            dropping: "Try again: the download continues where it stopped.",
        }
        assert caught.value.message in ([nothing] if reached == 3 else words)
        assert caught.value.hint == words[caught.value.message]


def test_pause_mid_transfer_stops_then_resumes_with_a_range(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    data = payload.read_bytes()
    control = TransferControl()
    reports: list[DownloadProgress] = []
    transfer_ = make_transfer(server, reports, control=control)

    def pause_once(progress: DownloadProgress) -> None:
        reports.append(progress)
        if progress.phase == "downloading" and progress.done >= 4 * MB and not seen_pause:
            seen_pause.append(progress.done)
            control.pause()

    seen_pause: list[int] = []
    transfer_.meter = ProgressMeter(pause_once, interval=0.0)
    partial = tmp_path / "p"
    outcome: list[TransferResult] = []
    worker = threading.Thread(target=lambda: outcome.append(transfer_.run(partial, 0, len(data))))
    worker.start()
    while not control.paused:
        assert worker.is_alive()
        time.sleep(0.005)
    on_disk = partial.stat().st_size
    assert on_disk == seen_pause[0]  # everything received was written before pausing
    assert reports[-1] == DownloadProgress(on_disk, len(data), 0.0, None, "paused")
    control.resume()
    worker.join(30)
    assert partial.read_bytes() == data and outcome[0].fetched == len(data)
    cdn = [r for r in server.records() if r.server == "cdn"]
    assert [r.range for r in cdn] == [None, f"bytes={on_disk}-"]


def test_cancel_mid_transfer_keeps_what_arrived(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    data = payload.read_bytes()
    control = TransferControl()
    transfer_ = make_transfer(server, [], control=control)
    at: list[int] = []

    def cancel_at(progress: DownloadProgress) -> None:
        if progress.done >= 2 * MB and not at:
            at.append(progress.done)
            control.cancel()

    transfer_.meter = ProgressMeter(cancel_at, interval=0.0)
    partial = tmp_path / "p"
    with pytest.raises(Cancelled):
        transfer_.run(partial, 0, len(data))
    assert partial.read_bytes() == data[: at[0]]
    assert len([r for r in server.records() if r.server == "cdn"]) == 1


def test_offline_mode_is_explained(server: FakeHub, payload: Path, tmp_path: Path) -> None:
    job = make_transfer(server, [])
    with hub.offline_guard(), pytest.raises(HubOfflineError) as caught:
        job.run(tmp_path / "p", 0, payload.stat().st_size)
    assert REPO in caught.value.message
    assert server.file_gets() == []


def test_content_range_and_length_parsing() -> None:
    def response(**headers: str) -> httpx2.Response:
        return httpx2.Response(206, headers=headers)

    def raw(name: str, value: str) -> httpx2.Response:
        """A header value that is not ASCII, as a server may send it."""
        return httpx2.Response(206, headers=[(name.encode(), value.encode())])

    assert _range_starts_at(response(**{"Content-Range": "bytes 500-999/1000"}), 500)
    assert not _range_starts_at(response(**{"Content-Range": "bytes 400-999/1000"}), 500)
    assert not _range_starts_at(response(**{"Content-Range": "bytes"}), 500)
    assert not _range_starts_at(response(**{"Content-Range": "bytes x-999/1000"}), 500)
    assert not _range_starts_at(response(), 0)
    assert _length(response(**{"Content-Range": "bytes 500-999/1000"}), 500) == 1000
    assert _length(response(**{"Content-Range": "bytes 500-999/x/1000"}), 500) == 1000
    assert _length(response(**{"Content-Range": "bytes 500-999/*"}), 500) is None
    assert _length(raw("Content-Range", "bytes 500-999/1²"), 500) is None
    assert _length(response(**{"Content-Length": "500"}), 300) == 800
    assert _length(raw("Content-Length", "²"), 300) is None
    assert _length(response(**{"Content-Length": ""}), 300) is None
    assert _length(response(**{"Content-Range": "bytes 0-9", "Content-Length": "10"}), 0) == 10
    assert _length(response(), 0) is None


def test_fsync_in_background_hands_back_its_error(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"data")
    with fsync_in_background(target):
        pass
    with pytest.raises(FileNotFoundError), fsync_in_background(tmp_path / "missing"):
        pass
    with pytest.raises(KeyError), fsync_in_background(tmp_path / "missing"):
        raise KeyError("the block's own error wins")


def test_a_stalled_server_times_out(server: FakeHub, payload: Path, tmp_path: Path) -> None:
    server.faults.stall_after = 0  # headers, then silence
    server.faults.stall_s = 2.0
    server.faults.stall_times = None
    job = make_transfer(server, [], retries=0)
    assert (job.timeout, job.retries, job.retry_wait) == (10.0, 0, 0.01)
    job.timeout = 0.3
    with pytest.raises(DownloadTimeoutError):
        job.run(tmp_path / "p", 0, payload.stat().st_size)


def test_transfer_defaults() -> None:
    meta = hub.FileMetadata(REPO, FILENAME, "main", "c" * 40, "e" * 64, 10, "http://127.0.0.1:9/x")
    job = RangedTransfer(
        meta,
        token=None,
        endpoint="http://127.0.0.1:9",
        control=TransferControl(),
        meter=ProgressMeter(lambda p: None, interval=0.0),
        refresh=lambda: meta,
    )
    assert (job.timeout, job.retries, job.retry_wait) == (10.0, 5, 1.0)


def test_a_transfer_reports_its_start_and_end_whatever_the_interval(
    server: FakeHub, payload: Path, tmp_path: Path, clock: Clock
) -> None:
    size = payload.stat().st_size
    reports: list[DownloadProgress] = []
    job = make_transfer(server, reports)
    job.meter = ProgressMeter(reports.append, interval=3600.0)
    job.run(tmp_path / "p", 0, size)
    assert [(r.done, r.total) for r in reports] == [(0, size), (size, size)]


@pytest.mark.parametrize("known_total", [True, False])
def test_a_server_with_fewer_bytes_than_the_partial_is_an_error(
    server: FakeHub, payload: Path, tmp_path: Path, known_total: bool
) -> None:
    """The file on the server shrank (a new commit under the same name): the range asked for
    is past its end, answered 416."""
    size = payload.stat().st_size
    partial = tmp_path / "p"
    partial.write_bytes(os.urandom(size + 10))
    with pytest.raises(DownloadError, match="416"):
        make_transfer(server, []).run(partial, size + 10, size + 20 if known_total else None)
    assert partial.stat().st_size == size + 10


def test_a_refused_request_is_an_error_not_data(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    server.faults.status = 400
    server.faults.status_on = ("get",)
    partial = tmp_path / "p"
    with pytest.raises(DownloadError, match="HTTP 400"):
        make_transfer(server, []).run(partial, 0, payload.stat().st_size)
    assert partial.read_bytes() == b""


def test_without_any_length_the_body_ends_when_the_connection_closes(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    server.faults.hide_length = True
    data = payload.read_bytes()
    partial = tmp_path / "p"
    reports: list[DownloadProgress] = []
    result = make_transfer(server, reports).run(partial, 0, None)
    assert partial.read_bytes() == data
    assert result == TransferResult(len(data), hashlib.sha256(data).hexdigest())
    assert reports[-1].done == len(data) and reports[-1].total is None


def test_a_range_that_starts_elsewhere_is_refused(
    server: FakeHub, payload: Path, tmp_path: Path
) -> None:
    data = payload.read_bytes()
    partial = tmp_path / "p"
    partial.write_bytes(data[:MB])
    server.faults.misplace_range = 100
    with pytest.raises(DownloadError) as caught:
        make_transfer(server, []).run(partial, MB, len(data), digest=hashlib.sha256(data[:MB]))
    assert caught.value.message == f"The server sent the wrong part of {FILENAME}."
    assert partial.read_bytes() == data[:MB]


def test_control_flags_are_plain_booleans_from_the_start(clock: Clock) -> None:
    """Front ends read these flags (and show them); they are ``False`` until set, and again
    after a pause ends."""
    control = TransferControl()
    flags = ("pause_requested", "cancel_requested", "discard_partial", "paused")
    assert [getattr(control, name) for name in flags] == [False] * 4
    assert all(getattr(control, name) is False for name in flags)
    meter = ProgressMeter(lambda p: None, interval=0.0)
    control.pause()
    worker = threading.Thread(target=control.checkpoint, args=(meter, 0, None))
    worker.start()
    while not control.paused:
        time.sleep(0.005)
    control.resume()
    worker.join(10)
    assert control.pause_requested is False and control.paused is False


def test_the_writer_thread_says_what_it_is(tmp_path: Path) -> None:
    """Named for thread dumps and profilers (a hung download shows where it waits)."""
    with HashingWriter(tmp_path / "out"):
        assert "sha256-writer" in [thread.name for thread in threading.enumerate()]
