"""A stand-in for the Hugging Face Hub on 127.0.0.1, with fault injection and a request log.

It speaks the part of the Hub's HTTP API that ``huggingface_hub`` and our downloader use:

- ``GET /api/models/{repo}[/revision/{rev}]``: model info with ``siblings`` (size, LFS sha256);
- revisions: ``main`` is the newest commit, and every earlier commit (:meth:`FakeHub.new_commit`)
  stays reachable by its id, as on the real Hub; an unknown revision is a 404
  ``RevisionNotFound``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{file}``: ``X-Repo-Commit``, ``X-Linked-Etag`` (the LFS
  sha256), ``X-Linked-Size``, and a 302 to a second "CDN" server on another port, as the real Hub
  redirects LFS files to its CDN (``cdn=False`` serves the bytes directly instead);
- the CDN: ``GET /blobs/{sha256}`` with ``Range`` (206 + ``Content-Range``);
- errors the way the Hub sends them: 404 with ``X-Error-Code: RepoNotFound`` / ``EntryNotFound``,
  401 with ``GatedRepo`` for a gated repo without the right token.

Faults (``hub.faults``) apply to file bodies: drop the connection after N bytes, throttle, stall,
flip a byte, ignore ``Range``, or answer with a status code. Every request lands in ``hub.log``.
Used by the tests and by ``benchmarks/bench_download.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024


@dataclass
class Faults:
    """What goes wrong. Counters (``*_times``) count down per affected response."""

    drop_after: int | None = None  # close the connection after this many body bytes
    drop_times: int | None = 1  # None: every response
    rate_bps: float | None = None  # throttle file bodies to this many bytes per second
    stall_after: int | None = None  # stop sending for ``stall_s`` after this many body bytes
    stall_s: float = 5.0
    stall_times: int | None = 1
    flip_byte_at: int | None = None  # serve this file offset with its bits inverted
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a range
    hide_length: bool = False  # no Content-Length: the body ends when the connection closes
    misplace_range: int = 0  # Content-Range claims to start this many bytes off
    status: int | None = None  # answer matching requests with this status instead
    status_on: tuple[str, ...] = ("head", "get", "api")  # which requests ``status`` hits
    status_times: int | None = None  # None: every time
    opaque_etags: bool = False  # a mirror whose ETags are its own ids, not the file's checksum
    hide_lfs: bool = False  # the API's file listing gives no LFS sha256
    hide_size: bool = False  # a mirror that sends no X-Linked-Size with a file's metadata
    stall_head_s: float | None = None  # wait this long before answering a HEAD on /resolve
    stall_head_times: int | None = 1


@dataclass(frozen=True)
class RequestRecord:
    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int
    bytes_sent: int
    accept_encoding: str | None = None


@dataclass
class HubFile:
    filename: str
    path: Path
    size: int
    sha256: str


@dataclass
class HubRepo:
    repo_id: str
    commit: str  # the head of "main"
    files: dict[str, HubFile] = field(default_factory=dict)  # at the head
    gated_token: str | None = None  # when set, this token (only) may download
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)  # every commit's files

    def at(self, revision: str) -> tuple[str, dict[str, HubFile]] | None:
        """The commit and files ``revision`` names ("main" or a commit id), if it exists."""
        if revision in ("main", self.commit):
            return self.commit, self.files
        files = self.commits.get(revision)
        return (revision, files) if files is not None else None


class FakeHub:
    """Start with ``with FakeHub() as hub:``; point clients at ``hub.url``."""

    def __init__(self, *, cdn: bool = True, tls: tuple[Path, Path] | None = None) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.faults = Faults()
        self.log: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._blobs: dict[str, HubFile] = {}
        self._tls = tls
        self._hub = self._make_server("hub")
        self._cdn = self._make_server("cdn") if cdn else None
        self._threads: list[threading.Thread] = []
        self._active = 0

    # --- setup -------------------------------------------------------------------------------

    def add_file(
        self, repo_id: str, filename: str, path: Path, *, sha256: str | None = None
    ) -> HubFile:
        repo = self.repos.get(repo_id)
        if repo is None:
            commit = hashlib.sha1(repo_id.encode(), usedforsecurity=False).hexdigest()
            repo = self.repos[repo_id] = HubRepo(repo_id, commit)
            repo.commits[commit] = repo.files
        digest = sha256 or _sha256(path)
        entry = HubFile(filename, path, path.stat().st_size, digest)
        repo.files[filename] = entry
        self._blobs[digest] = entry
        return entry

    def new_commit(self, repo_id: str, filename: str, path: Path) -> str:
        """Replace ``filename`` in a new commit that becomes the head of ``main``; the earlier
        commits keep their files. Returns the new commit id."""
        repo = self.repos[repo_id]
        commit = hashlib.sha1(
            f"{repo_id}@{len(repo.commits)}".encode(), usedforsecurity=False
        ).hexdigest()
        digest = _sha256(path)
        entry = HubFile(filename, path, path.stat().st_size, digest)
        repo.files = {**repo.files, filename: entry}
        repo.commit = commit
        repo.commits[commit] = repo.files
        self._blobs[digest] = entry
        return commit

    def gate(self, repo_id: str, token: str) -> None:
        self.repos[repo_id].gated_token = token

    @property
    def url(self) -> str:
        return self._base(self._hub)

    @property
    def cdn_url(self) -> str | None:
        return self._base(self._cdn) if self._cdn is not None else None

    def _base(self, server: ThreadingHTTPServer) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{server.server_address[1]}"

    # --- inspection --------------------------------------------------------------------------

    def records(self) -> list[RequestRecord]:
        """The log so far, once the requests being answered are finished (a response reaches
        the client a moment before its record is written)."""
        self.wait_idle()
        with self._lock:
            return list(self.log)

    def file_gets(self) -> list[RequestRecord]:
        """The GETs that carried file bytes (on the CDN, or on /resolve without a CDN)."""
        return [
            r
            for r in self.records()
            if r.method == "GET" and r.bytes_sent > 0 and not r.path.startswith("/api/")
        ]

    def bytes_served(self) -> int:
        return sum(r.bytes_sent for r in self.file_gets())

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being served (a cancelled client's response may still be
        finishing on the server side)."""
        deadline = time.monotonic() + timeout
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)

    def clear_log(self) -> None:
        self.wait_idle()
        with self._lock:
            self.log.clear()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeHub:
        for server in (self._hub, self._cdn):
            if server is None:
                continue
            thread = threading.Thread(
                target=server.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
            )
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._hub, self._cdn):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- the HTTP side -----------------------------------------------------------------------

    def _make_server(self, role: str) -> ThreadingHTTPServer:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        Handler.role = role
        server = _QuietServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self._tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self._tls[0]), str(self._tls[1]))
            server.socket = context.wrap_socket(server.socket, server_side=True)
        return server

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.log.append(record)

    def _take(self, counter: str) -> bool:
        """Use up one count of a fault; ``True`` when it applies to this response."""
        with self._lock:
            left = getattr(self.faults, counter)
            if left is None:
                return True
            if left <= 0:
                return False
            setattr(self.faults, counter, left - 1)
            return True


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up (cancel, kill -9, timeouts) are part of the tests, not errors.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub
    role: str

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    # --- routing -----------------------------------------------------------------------------

    def _dispatch(self, *, head: bool) -> None:
        self._sent = 0
        self._status = 0
        with self.hub._lock:
            self.hub._active += 1
        try:
            path = unquote(urlsplit(self.path).path)
            if self.role == "cdn":
                self._serve_blob(path, head=head)
            elif path.startswith("/api/models/"):
                self._model_info(path[len("/api/models/") :])
            elif "/resolve/" in path:
                self._resolve(path, head=head)
            else:
                self._error(404, "not a Hub route")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        finally:
            self.hub._record(
                RequestRecord(
                    server=self.role,
                    method=self.command,
                    path=self.path,
                    range=self.headers.get("Range"),
                    authorization=self.headers.get("authorization"),
                    status=self._status,
                    bytes_sent=self._sent,
                    accept_encoding=self.headers.get("Accept-Encoding"),
                )
            )
            with self.hub._lock:
                self.hub._active -= 1

    def _injected_status(self, kind: str) -> bool:
        faults = self.hub.faults
        if faults.status is None or kind not in faults.status_on:
            return False
        if not self.hub._take("status_times"):
            return False
        self._error(faults.status, f"injected {faults.status}")
        return True

    def _repo_or_error(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", code="RepoNotFound")
            return None
        if repo.gated_token is not None:
            auth = self.headers.get("authorization", "")
            if auth != f"Bearer {repo.gated_token}":
                self._error(
                    401 if not auth else 403,
                    f"Access to model {repo_id} is restricted. You must have access to "
                    "it and be authenticated to access it. Please log in.",
                    code="GatedRepo",
                )
                return None
        return repo

    def _model_info(self, rest: str) -> None:
        if self._injected_status("api"):
            return
        repo_id, _, revision = rest.partition("/revision/")
        repo = self._repo_or_error(repo_id)
        if repo is None:
            return
        found = repo.at(unquote(revision) or "main")
        if found is None:
            self._error(404, "Invalid rev id", code="RevisionNotFound")
            return
        commit, files = found
        siblings = [
            {
                "rfilename": f.filename,
                "size": f.size,
                "blobId": f.sha256[:40],
                **(
                    {}
                    if self.hub.faults.hide_lfs
                    else {"lfs": {"sha256": f.sha256, "size": f.size, "pointerSize": 135}}
                ),
            }
            for f in files.values()
        ]
        body = json.dumps(
            {
                "id": repo_id,
                "modelId": repo_id,
                "sha": commit,
                "private": False,
                "gated": repo.gated_token is not None and "manual",
                "siblings": siblings,
            }
        ).encode()
        self._send(200, {"Content-Type": "application/json"}, body)

    def _resolve(self, path: str, *, head: bool) -> None:
        if self._injected_status("head" if head else "get"):
            return
        stall = self.hub.faults.stall_head_s
        if head and stall is not None and self.hub._take("stall_head_times"):
            time.sleep(stall)  # the client may have given up meanwhile: then the answer is lost
        repo_id, _, rest = path.lstrip("/").partition("/resolve/")
        revision, _, filename = rest.partition("/")
        repo = self._repo_or_error(repo_id)
        if repo is None:
            return
        found = repo.at(revision)
        if found is None:
            self._error(404, "Invalid rev id", code="RevisionNotFound")
            return
        commit, files = found
        entry = files.get(filename)
        if entry is None:
            self._error(
                404, "Entry not found", code="EntryNotFound", extra={"X-Repo-Commit": commit}
            )
            return
        headers = {
            "X-Repo-Commit": commit,
            "X-Linked-Etag": f'"{entry.sha256}"',
            "X-Linked-Size": str(entry.size),
            "ETag": f'"{entry.sha256[:40]}"',
            "Accept-Ranges": "bytes",
        }
        if self.hub.faults.hide_size:
            del headers["X-Linked-Size"]
        if self.hub.faults.opaque_etags:
            headers["X-Linked-Etag"] = headers["ETag"] = f'"mirror-{entry.size}"'
        cdn = self.hub.cdn_url
        if cdn is not None:
            headers["Location"] = f"{cdn}/blobs/{entry.sha256}?X-Signature=test"
            self._send(302, headers, b"", head=head)
            return
        self._serve_file(entry, headers, head=head)

    def _serve_blob(self, path: str, *, head: bool) -> None:
        if self._injected_status("head" if head else "get"):
            return
        entry = self.hub._blobs.get(path.rsplit("/", 1)[-1])
        if entry is None:
            self._error(404, "NoSuchKey")
            return
        self._serve_file(entry, {"ETag": f'"{entry.sha256}"', "Accept-Ranges": "bytes"}, head=head)

    # --- bodies ------------------------------------------------------------------------------

    def _serve_file(self, entry: HubFile, headers: dict[str, str], *, head: bool) -> None:
        size = entry.size
        start = 0
        status = 200
        asked = self.headers.get("Range")
        if asked and not self.hub.faults.ignore_range:
            try:
                first = asked.split("=", 1)[1].split("-", 1)[0]
                start = int(first)
            except (IndexError, ValueError):
                start = 0
            if start >= size:
                self._send(416, {"Content-Range": f"bytes */{size}"}, b"")
                return
            status = 206
            claimed = start + self.hub.faults.misplace_range
            headers = {**headers, "Content-Range": f"bytes {claimed}-{size - 1}/{size}"}
        headers = {**headers, "Content-Type": "application/octet-stream"}
        if self.hub.faults.hide_length:
            headers.pop("Content-Range", None)
            self.close_connection = True
        else:
            headers["Content-Length"] = str(size - start)
        self._status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        self._stream(entry, start, size)

    def _stream(self, entry: HubFile, start: int, end: int) -> None:
        faults = self.hub.faults
        drop = faults.drop_after if faults.drop_after is not None else None
        stall = faults.stall_after
        plain = (
            drop is None
            and stall is None
            and faults.rate_bps is None
            and faults.flip_byte_at is None
            and not self.hub._tls
        )
        with entry.path.open("rb") as source:
            if plain:
                self._sent = self.connection.sendfile(source, offset=start, count=end - start)
                return
            source.seek(start)
            position = start
            began = time.monotonic()
            while position < end:
                chunk = bytearray(source.read(min(CHUNK, end - position)))
                flip = faults.flip_byte_at
                if flip is not None and position <= flip < position + len(chunk):
                    chunk[flip - position] ^= 0xFF
                if drop is not None and self._sent + len(chunk) >= drop:
                    if self.hub._take("drop_times"):
                        self.wfile.write(chunk[: max(drop - self._sent, 0)])
                        self._sent += max(drop - self._sent, 0)
                        self._hang_up()
                        return
                    drop = None
                if stall is not None and self._sent >= stall:
                    if self.hub._take("stall_times"):
                        time.sleep(faults.stall_s)
                        self._hang_up()
                        return
                    stall = None
                self.wfile.write(chunk)
                self._sent += len(chunk)
                position += len(chunk)
                rate = faults.rate_bps
                if rate:
                    ahead = self._sent / rate - (time.monotonic() - began)
                    if ahead > 0:
                        time.sleep(ahead)

    def _hang_up(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _error(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, *, head: bool = False
    ) -> None:
        self._status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and body and self.command != "HEAD":
            self.wfile.write(body)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def make_self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (no client trusts it: the TLS-failure test)."""
    import subprocess

    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(key, 0o600)
    return cert, key


@contextlib.contextmanager
def small_filesystem(folder: Path, size_mb: int) -> Iterator[Path]:
    """A real, small file system (tmpfs) at ``folder``, for disk-full tests.

    Mounting needs root, the right capability, or a user namespace of one's own: where this
    process may not mount, ``tests/conftest.py`` runs the test in such a namespace, and skips
    it (a failure under CI) only where neither is possible.
    """
    import subprocess

    import pytest

    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
