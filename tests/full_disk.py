"""Real full, read-only and size-limited file systems for the hardening tests.

Where the tests may mount (root, or the capability), a small tmpfs is the real thing: a disk
that fills up (ENOSPC) or is read-only (EROFS). Where they may not, :func:`fsize_limit` gives
a child process a file-size limit instead (``RLIMIT_FSIZE``: writes past it fail with EFBIG),
which needs no privilege; tests that can use either say which one they got.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (tried once)."""
    with tempfile.TemporaryDirectory() as folder:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder], capture_output=True
        )
        if done.returncode != 0:
            return False
        subprocess.run(["umount", "-l", folder], capture_output=True)
        return True


@contextlib.contextmanager
def tmpfs(folder: Path, size_kb: int = 1024) -> Iterator[Path]:
    """A small real file system at ``folder``; the test is skipped where mounting is not
    allowed (use :func:`fsize_limit` there)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not can_mount():
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(folder)],
        check=True,
        capture_output=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Write into ``folder`` until its file system is full."""
    try:
        with (folder / ".filler").open("wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    with contextlib.suppress(OSError), (folder / ".filler2").open("wb") as handle:
        while True:  # every last byte, too
            handle.write(b"\0")
            handle.flush()


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def fsize_limit(limit: int) -> Callable[[], None]:
    """A ``preexec_fn``: files the child writes stop at ``limit`` bytes (EFBIG past it;
    SIGXFSZ ignored so the write fails instead of killing the child)."""

    def apply() -> None:
        import resource  # POSIX only: imported where it is used

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def other_user() -> str | None:
    """An unprivileged account for permission tests while the tests run as root (root reads
    everything); None when not root (the test's own user is unprivileged then)."""
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ("nobody", "daemon"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    pytest.skip("running as root and no unprivileged user (nobody, daemon) exists")
    return None
