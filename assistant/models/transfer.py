"""Moving the bytes of one file: resumable ranged HTTP, sha256 on the way, pause and cancel.

:class:`RangedTransfer` appends the missing bytes of a file to a partial file with
``Range: bytes=N-`` requests, retrying dropped connections from wherever the file stopped. The
download thread only receives; a :class:`HashingWriter` helper thread writes and hashes (both
release the GIL), so on a fast link the disk and the sha256 overlap the next network reads.
Progress goes out through a :class:`ProgressMeter`; a :class:`TransferControl` carries pause,
resume and cancel requests from any thread.

Nothing here knows about models, the catalog or the Hub cache: see
:mod:`assistant.models.downloads`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx2
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

from assistant.errors import Cancelled, ConnectionDroppedError, DownloadError
from assistant.models import hub

if TYPE_CHECKING:
    import io

log = logging.getLogger(__name__)

# Reads of a file to hash it: large, so hashing (which releases the GIL) overlaps the next read.
HASH_CHUNK = 8 * 1024 * 1024
# Network reads are gathered into writes of up to this size. Bytes not yet written are lost to a
# kill -9 and fetched again by the next pull, so this bounds that (with WRITE_QUEUE_DEPTH).
WRITE_BATCH = 1024 * 1024
WRITE_QUEUE_DEPTH = 4


class Digest(Protocol):
    """What :class:`HashingWriter` needs of a ``hashlib`` object."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True)
class DownloadProgress:
    """``done`` of ``total`` bytes (``total`` None when unknown), speed over the last seconds,
    and the time left at that speed. ``phase`` is ``checking``, ``downloading``, ``verifying``,
    ``paused`` or ``retrying``; with ``retrying``, ``note`` says why and for how long
    ("Hub answered 500, retrying in 4 s (2/5)")."""

    done: int
    total: int | None
    speed_bps: float
    eta_s: float | None
    phase: str = "downloading"
    note: str = ""

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


@dataclass(frozen=True)
class TransferResult:
    """Bytes received from the server, and the sha256 of the whole partial file."""

    fetched: int
    sha256: str


class ProgressMeter:
    """Byte counts in, :class:`DownloadProgress` reports out: at most one per ``interval``
    seconds unless forced, with the speed over the last three seconds and the time left."""

    WINDOW_S = 3.0

    def __init__(self, report: Callable[[DownloadProgress], None], interval: float) -> None:
        self._report = report
        self.interval = interval
        self.latest = DownloadProgress(0, None, 0.0, None, "checking")
        self._last_report = 0.0
        self._samples: deque[tuple[float, int]] = deque()

    def update(
        self, done: int, total: int | None, *, phase: str = "downloading", force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < self.interval:
            return  # the common case, once per network read: keep it cheap
        self._last_report = now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.WINDOW_S:
            self._samples.popleft()
        first_t, first_done = self._samples[0]
        span = now - first_t
        speed = (done - first_done) / span if span > 0.05 else 0.0
        eta = (total - done) / speed if total is not None and speed > 0 else None
        self.latest = DownloadProgress(done, total, speed, eta, phase)
        self._report(self.latest)

    def paused(self, done: int, total: int | None) -> None:
        self.latest = DownloadProgress(done, total, 0.0, None, "paused")
        self._report(self.latest)

    def retrying(self, note: str) -> None:
        """A failed attempt will be retried after a wait: say so at once (a wait of tens of
        seconds must not look like a hang)."""
        latest = self.latest
        self.latest = DownloadProgress(latest.done, latest.total, 0.0, None, "retrying", note)
        self._report(self.latest)

    def restart(self) -> None:
        """Forget the speed so far (after a pause, or when the bytes start coming again)."""
        self._samples.clear()


class TransferControl:
    """Pause, resume and cancel requests for one transfer, made from any thread.

    The transferring thread polls :attr:`interrupted` once per network read (two attribute
    reads), leaves its connection, and stops at :meth:`checkpoint`.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.pause_requested = False
        self.cancel_requested = False
        self.discard_partial = False
        self.paused = False  # true while the transferring thread waits in a pause

    @property
    def interrupted(self) -> bool:
        return self.pause_requested or self.cancel_requested

    def pause(self) -> None:
        with self._cond:
            self.pause_requested = True
            self._cond.notify_all()

    def resume(self) -> None:
        with self._cond:
            self.pause_requested = False
            self._cond.notify_all()

    def cancel(self, *, discard_partial: bool = False) -> None:
        with self._cond:
            self.cancel_requested = True
            self.discard_partial = discard_partial
            self._cond.notify_all()

    def checkpoint(self, meter: ProgressMeter, done: int, total: int | None) -> None:
        """Raise ``Cancelled`` if asked to; while paused, say so through ``meter`` and wait."""
        with self._cond:
            if self.pause_requested and not self.cancel_requested:
                self.paused = True
                try:
                    meter.paused(done, total)
                    while self.pause_requested and not self.cancel_requested:
                        self._cond.wait()
                finally:
                    self.paused = False
                meter.restart()
            if self.cancel_requested:
                raise Cancelled()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if cancelled meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: self.cancel_requested, timeout=seconds)


class HashingWriter:
    """Appends chunks to a file and keeps their sha256, on a helper thread.

    :meth:`write` costs the caller a list append: chunks are gathered into batches of up to
    ``batch`` bytes, handed over whenever the helper is idle or a batch is full, through a queue
    ``depth`` batches deep. The helper writes each batch with one call and hashes it. So a slow
    link still reaches the disk chunk by chunk, and a fast one in large writes.

    :meth:`flush` waits until every byte given so far is on disk and in the digest, and
    re-raises a write error (a full disk) in the caller's thread; so do :meth:`write` and
    :meth:`close` on the next hand-over. Without a ``path`` it only hashes. Use it as a context
    manager: leaving writes what is pending and stops the helper.
    """

    def __init__(
        self,
        path: Path | None = None,
        *,
        digest: Digest | None = None,
        batch: int = WRITE_BATCH,
        depth: int = WRITE_QUEUE_DEPTH,
    ) -> None:
        # Unbuffered: what the helper writes is in the OS's hands at once, kill -9 or not.
        self._file: io.FileIO | None = None if path is None else path.open("ab", buffering=0)
        self._digest: Digest = digest if digest is not None else hashlib.sha256()
        self._batch = batch
        self._queue: queue.Queue[bytes | threading.Event | None] = queue.Queue(maxsize=depth)
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._idle = True
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="sha256-writer", daemon=True)
        self._thread.start()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close()
        if exc is None and self._error is not None:
            raise self._error

    def write(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= self._batch or self._idle:
            self._hand_over()

    def flush(self) -> None:
        """Wait until everything given so far is written and hashed."""
        if self._closed:
            raise ValueError("the HashingWriter is closed")
        self._hand_over()
        done = threading.Event()
        self._queue.put(done)
        done.wait()
        if self._error is not None:
            raise self._error

    def restart(self) -> None:
        """Empty the file and start the digest again, for bytes that start from byte 0."""
        self.flush()
        if self._file is not None:
            self._file.truncate(0)  # opened for appending: the next write lands at 0
        self._digest = hashlib.sha256()

    def hexdigest(self) -> str:
        if self._closed:
            if self._error is not None:
                raise self._error
        else:
            self.flush()
        return self._digest.hexdigest()

    def close(self) -> None:
        """Write and hash what is pending, then stop the helper and close the file."""
        if self._closed:
            return
        self._closed = True
        if self._pending:
            self._queue.put(b"".join(self._pending))
            self._pending, self._pending_size = [], 0
        self._queue.put(None)
        self._thread.join()
        if self._file is not None:
            self._file.close()

    def _hand_over(self) -> None:
        if self._error is not None:
            raise self._error
        if not self._pending:
            return
        pending = self._pending
        self._pending, self._pending_size = [], 0
        self._idle = False  # the helper says when it is idle again
        self._queue.put(pending[0] if len(pending) == 1 else b"".join(pending))

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                self._idle = True
                item = self._queue.get()
                self._idle = False
            if item is None:
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            if self._error is not None:
                continue  # after a failed write only drain the queue, so nobody waits forever
            try:
                if self._file is not None:
                    _write_all(self._file, item)
                self._digest.update(item)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc


def hash_file(
    path: Path,
    length: int | None = None,
    *,
    digest: Digest | None = None,
    on_chunk: Callable[[int], None] | None = None,
) -> Digest:
    """Feed the first ``length`` bytes of ``path`` (all of it by default) to ``digest`` (a new
    sha256 by default) and return it. ``on_chunk(done)`` runs after each read; it may raise to
    stop."""
    digest = digest if digest is not None else hashlib.sha256()
    if length is None:
        length = path.stat().st_size
    done = 0
    with HashingWriter(digest=digest, batch=1, depth=2) as hasher, path.open("rb") as source:
        while done < length:
            chunk = source.read(min(HASH_CHUNK, length - done))
            if not chunk:
                break
            hasher.write(chunk)
            done += len(chunk)
            if on_chunk is not None:
                on_chunk(done)
    return digest


@contextlib.contextmanager
def fsync_in_background(path: Path) -> Iterator[None]:
    """fsync ``path`` on a helper thread while the block runs. Leaving waits for it and raises
    its ``OSError``, unless the block raised first."""
    errors: list[OSError] = []

    def sync() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # handed back below
            errors.append(exc)

    thread = threading.Thread(target=sync, name="fsync", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if errors:
        raise errors[0]


def git_blob_sha1(path: Path) -> str:
    """The id git gives the file's contents (the Hub's etag for files not stored in LFS): the
    sha1 of a ``blob <size>`` header and the bytes."""
    size = path.stat().st_size
    header = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    return hash_file(path, size, digest=header).hexdigest()


class RangedTransfer:
    """Gets the rest of one Hub file into a partial file, resuming after dropped connections.

    Each attempt asks for ``Range: bytes=<bytes on disk>-``; a server that ignores the range
    starts the file over. Transient failures (dropped connections, time-outs, 5xx, 429) are
    retried ``retries`` times in a row with doubling waits, an attempt that brought bytes
    resetting the count; an expired signed CDN link is renewed once through ``refresh``. Other
    failures are raised as the plain-words errors of
    :func:`assistant.models.hub.translate_error`, and a write error (a full disk) as the
    ``OSError`` it is, for the caller to explain.
    """

    def __init__(
        self,
        meta: hub.FileMetadata,
        *,
        token: str | None,
        endpoint: str,
        control: TransferControl,
        meter: ProgressMeter,
        refresh: Callable[[], hub.FileMetadata],
        timeout: float = 10.0,
        retries: int = 5,
        retry_wait: float = 1.0,
    ) -> None:
        self.meta = meta
        self.token = token
        self.endpoint = endpoint
        self.control = control
        self.meter = meter
        self.refresh = refresh
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait

    def run(
        self, partial: Path, done: int, total: int | None, *, digest: Digest | None = None
    ) -> TransferResult:
        """Append to ``partial``, which holds ``done`` bytes that ``digest`` has already seen
        (a new sha256 when it holds none), until it holds ``total`` bytes (until the body ends
        when ``total`` is None)."""
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        meta, control, meter = self.meta, self.control, self.meter
        url = meta.location
        refreshed = False
        attempts = 0
        fetched = 0
        meter.restart()
        meter.update(done, total, force=True)
        with HashingWriter(partial, digest=digest) as sink:
            while total is None or done < total:
                sink.flush()  # a pause or the next range starts from what is on disk
                control.checkpoint(meter, done, total)
                send_token = self.token if hub.same_origin(url, self.endpoint) else None
                headers = build_hf_headers(
                    token=send_token or False, headers={"Accept-Encoding": "identity"}
                )
                if done:
                    headers["Range"] = f"bytes={done}-"
                progressed = False
                try:
                    with get_session().stream(
                        "GET", url, headers=headers, timeout=httpx2.Timeout(self.timeout)
                    ) as response:
                        if response.status_code == 416 and total is not None and done >= total:
                            break
                        if response.status_code >= 400:
                            response.read()
                            hf_raise_for_status(response)
                        if done and response.status_code != 206:
                            # The server ignored the Range header: start again from byte 0.
                            sink.restart()
                            done = 0
                        elif done and not _range_starts_at(response, done):
                            raise DownloadError(
                                f"The server sent the wrong part of {meta.filename}."
                            )
                        if total is None:
                            total = _length(response, done)
                        for chunk in response.iter_raw():
                            sink.write(chunk)
                            done += len(chunk)
                            fetched += len(chunk)
                            progressed = True
                            meter.update(done, total)
                            if control.interrupted:
                                break
                        else:
                            if total is None:
                                break  # no length announced: the end of the body is the end
                    if not progressed:
                        # An empty answer, and no error: count it like a dropped connection.
                        attempts += 1
                        if attempts > self.retries:
                            raise ConnectionDroppedError(
                                f"The Hub kept sending nothing for {meta.filename}.",
                                hint="Try again later: the bytes downloaded so far are kept.",
                            )
                except Exception as exc:
                    if not isinstance(exc, httpx2.TransportError | HfHubHTTPError):
                        if isinstance(exc, OfflineModeIsEnabled):
                            raise hub.translate_error(exc, repo=meta.repo) from exc
                        raise
                    attempts = 0 if progressed else attempts + 1
                    if not self._give_up(exc, attempts):
                        log.info(
                            "Download of %s interrupted (%s); resuming at byte %d.",
                            meta.filename,
                            exc,
                            done,
                        )
                        delay = hub.retry_delay(self.retry_wait, attempts)
                        meter.retrying(hub.retry_note(exc, delay, attempts, self.retries))
                        control.sleep(delay)
                        continue
                    if (
                        isinstance(exc, HfHubHTTPError)
                        and not refreshed
                        and exc.response.status_code in (401, 403)
                        and not hub.same_origin(url, self.endpoint)
                    ):
                        # A signed CDN link expired (say, during a long pause): get a new one.
                        url, refreshed = self.refresh().location, True
                        continue
                    raise hub.translate_error(
                        exc,
                        repo=meta.repo,
                        filename=meta.filename,
                        endpoint=self.endpoint,
                        has_token=bool(self.token),
                    ) from exc
            sink.flush()
            sha256 = sink.hexdigest()
        meter.update(done, total, force=True)
        return TransferResult(fetched=fetched, sha256=sha256)

    def _give_up(self, exc: BaseException, attempts: int) -> bool:
        if hub.is_tls_failure(exc) or not hub.is_transient(exc):
            return True
        return attempts > self.retries


def _write_all(sink: io.FileIO, data: bytes) -> None:
    written = sink.write(data) or 0
    if written == len(data):
        return
    view = memoryview(data)[written:]
    while view:
        written = sink.write(view) or 0
        if not written:
            raise OSError(errno.EIO, f"could not write to {sink.name}")
        view = view[written:]


def _range_starts_at(response: httpx2.Response, offset: int) -> bool:
    content_range = response.headers.get("Content-Range", "")
    try:
        return int(content_range.split()[1].split("-")[0]) == offset
    except (IndexError, ValueError):
        return False


def _length(response: httpx2.Response, done: int) -> int | None:
    content_range = response.headers.get("Content-Range")
    if content_range and "/" in content_range:
        tail = content_range.rsplit("/", 1)[1]
        return int(tail) if tail.isascii() and tail.isdigit() else None
    length = response.headers.get("Content-Length")
    # isascii: "²".isdigit() is True, and int("²") fails.
    return done + int(length) if length and length.isascii() and length.isdigit() else None


__all__ = [
    "HASH_CHUNK",
    "Digest",
    "DownloadProgress",
    "HashingWriter",
    "ProgressMeter",
    "RangedTransfer",
    "TransferControl",
    "TransferResult",
    "fsync_in_background",
    "git_blob_sha1",
    "hash_file",
]
