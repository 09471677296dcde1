"""Disk space: byte counts in words, room checked before writing, a full disk told plainly.

Shared by every module that writes model files (imports, downloads) and by the front ends, which
show sizes the same way.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from assistant.errors import DiskFullError

# Free space to leave on the disk beyond the file itself: the system needs room to breathe.
MIN_FREE_MARGIN = 256 * 1024 * 1024


def format_bytes(count: float) -> str:
    """``98_400_000`` → ``98.4 MB`` (decimal units, as disks and download pages count)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


def check_free_space(folder: Path, needed: int, *, margin: int, what: str) -> None:
    """Raise ``DiskFullError`` unless ``needed`` bytes plus ``margin`` fit in ``folder``."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed + margin:
        raise DiskFullError(
            f"Not enough free disk space for {what}: it needs {format_bytes(needed)} "
            f"plus {format_bytes(margin)} to spare, and {folder} has {format_bytes(free)} free.",
            hint="Free some space (for example by removing a model you no longer use) and try "
            "again.",
        )


def is_disk_full(exc: BaseException) -> bool:
    """Whether a write failed for want of space: a full disk, or the user's quota used up."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def disk_full_error(folder: Path, what: str, note: str) -> DiskFullError:
    """The error for a disk that filled up while ``what`` was being written into ``folder``;
    ``note`` says what was done about the unfinished file."""
    return DiskFullError(
        f"The disk holding {folder} filled up while writing {what}. {note}",
        hint="Free some space and try again.",
    )


__all__ = [
    "MIN_FREE_MARGIN",
    "check_free_space",
    "disk_full_error",
    "format_bytes",
    "is_disk_full",
]
