"""The byte-moving layer on its own: the hashing writer, file hashing, and ranged transfers against
the fake Hub. The bytes moved are random (the layer never reads them), so these tests need no model
file and run in the quick lane. Whole pulls of the real model (pause, cancel, kill -9, disk full)
are in ``test_downloads.py``."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.disk import is_disk_full
from assistant.models import hub
from assistant.models.transfer import (
    DownloadProgress,
    HashingWriter,
    ProgressMeter,
    RangedTransfer,
    TransferControl,
    TransferResult,
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


def test_hash_file_matches_hashlib_and_reports_progress(payload: Path) -> None:
    seen: list[int] = []
    digest = hash_file(payload, on_chunk=seen.append)
    assert digest.hexdigest() == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert seen[-1] == payload.stat().st_size and seen == sorted(seen)


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
    return transfer.run(partial, have, total, digest=digest)


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
