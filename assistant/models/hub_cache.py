"""The Hugging Face Hub's cache on disk: where files live, how they get in and out.

This is plain file-system work and never touches the network. It follows ``huggingface_hub``'s
layout exactly, so other tools find our downloads and we find theirs:

- ``models--owner--name/blobs/<etag>`` holds the bytes (the etag of an LFS file is its sha256);
- ``models--owner--name/snapshots/<commit>/<filename>`` links to the blob;
- ``models--owner--name/refs/<revision>`` names the commit a branch pointed to;
- ``.locks/models--owner--name/<etag>.lock`` is the lock ``hf_hub_download`` takes while writing.

A download in progress is ``blobs/<etag>.incomplete``: the name older ``huggingface_hub``
versions resumed from and that ``hf cache`` lists as an incomplete download.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from assistant.atomic import atomic_write_text
from assistant.paths import hf_home

# The branch a bare repository id means.
DEFAULT_REVISION = "main"
PARTIAL_SUFFIX = ".incomplete"


def hub_cache_dir() -> Path:
    """``HF_HUB_CACHE``, else ``$HF_HOME/hub`` (see :func:`hf_home`), read when called."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(os.path.expandvars(explicit)).expanduser()
    return hf_home() / "hub"


def _snapshots_of(path: Path) -> Path | None:
    """The ``models--*/snapshots`` folder that ``path`` lies in, if any."""
    snapshots = next((p for p in path.parents if p.name == "snapshots"), None)
    if snapshots is not None and snapshots.parent.name.startswith("models--"):
        return snapshots
    return None


def file_lock_held(lock_path: Path) -> bool:
    """Whether some process (this one included) holds the lock right now."""
    from filelock import FileLock, Timeout

    if not lock_path.exists():
        return False
    lock = FileLock(str(lock_path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


class HubCache:
    """One Hub cache folder (``root``, by default :func:`hub_cache_dir`); see the module
    docstring for its layout."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or hub_cache_dir()

    @classmethod
    def containing(cls, path: Path) -> HubCache | None:
        """The cache that holds the snapshot file ``path`` (whatever folder that cache is in),
        or ``None`` when ``path`` lies in no Hub cache."""
        snapshots = _snapshots_of(path)
        return cls(snapshots.parent.parent) if snapshots is not None else None

    # --- where things are --------------------------------------------------------------------

    def repo_dir(self, repo_id: str) -> Path:
        return self.root / ("models--" + repo_id.replace("/", "--"))

    def blob_path(self, repo_id: str, etag: str) -> Path:
        return self.repo_dir(repo_id) / "blobs" / etag

    def partial_path(self, repo_id: str, etag: str) -> Path:
        return self.repo_dir(repo_id) / "blobs" / (etag + PARTIAL_SUFFIX)

    def pointer_path(self, repo_id: str, commit: str, filename: str) -> Path:
        return self.repo_dir(repo_id) / "snapshots" / commit / Path(*filename.split("/"))

    def lock_path(self, repo_id: str, etag: str) -> Path:
        return self._lock_in(self.repo_dir(repo_id), etag)

    def _lock_in(self, repo_dir: Path, etag: str) -> Path:
        # The very lock hf_hub_download takes, so it and we never write the same blob at once.
        return self.root / ".locks" / repo_dir.name / f"{etag}.lock"

    def cached_file(
        self, repo_id: str, filename: str, revision: str = DEFAULT_REVISION
    ) -> Path | None:
        """The file, if any tool already put it in the cache. Reads the disk only."""
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(
                repo_id, filename, cache_dir=self.root, revision=revision
            )
        except ValueError:
            return None
        return Path(found) if isinstance(found, str) and os.path.exists(found) else None

    # --- putting files in --------------------------------------------------------------------

    def install(
        self,
        verified: Path,
        *,
        repo_id: str,
        filename: str,
        etag: str,
        commit: str,
        revision: str,
    ) -> Path:
        """Move a verified file into place as blob + snapshot link; return the snapshot path.

        ``revision`` (a branch such as ``main``) is recorded in ``refs/`` as naming ``commit``.
        """
        blob = self.blob_path(repo_id, etag)
        blob.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(verified, 0o644)
        os.replace(verified, blob)
        pointer = self.link_snapshot(blob, repo_id=repo_id, commit=commit, filename=filename)
        if revision != commit:
            ref = self.repo_dir(repo_id) / "refs" / revision
            atomic_write_text(ref, commit)
            os.chmod(ref, 0o644)  # readable like the blob (the temporary file was private)
        return pointer

    def link_snapshot(self, blob: Path, *, repo_id: str, commit: str, filename: str) -> Path:
        """Make ``snapshots/<commit>/<filename>`` point at ``blob``; return that path."""
        pointer = self.pointer_path(repo_id, commit, filename)
        pointer.parent.mkdir(parents=True, exist_ok=True)
        tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.link")
        tmp.unlink(missing_ok=True)
        try:
            os.symlink(os.path.relpath(blob, pointer.parent), tmp)
            os.replace(tmp, pointer)
        except OSError:
            # No symlinks here (Windows without developer mode): like huggingface_hub, keep the
            # file itself in the snapshot folder.
            tmp.unlink(missing_ok=True)
            os.replace(blob, pointer)
        return pointer

    # --- taking files out --------------------------------------------------------------------

    def remove_file(self, pointer: Path) -> int:
        """Delete a snapshot file and its blob unless another snapshot uses it; bytes freed."""
        freed = 0
        snapshots = _snapshots_of(pointer)
        if pointer.is_symlink():
            blob = pointer.resolve()
            pointer.unlink()
            if snapshots and blob.exists() and not self._blob_in_use(snapshots, blob):
                freed = blob.stat().st_size
                blob.unlink()
        elif pointer.exists():
            freed = pointer.stat().st_size
            pointer.unlink()
        if snapshots:
            for parent in pointer.parents:
                if parent == snapshots:
                    break
                with contextlib.suppress(OSError):
                    parent.rmdir()  # only when empty
        return freed

    @staticmethod
    def _blob_in_use(snapshots: Path, blob: Path) -> bool:
        return any(link.is_symlink() and link.resolve() == blob for link in snapshots.rglob("*"))

    # --- partial downloads -------------------------------------------------------------------

    def orphan_partials(self, repo_id: str, etag: str) -> list[Path]:
        """Temp files of ``hf_hub_download`` runs that were killed while fetching this blob."""
        blobs = self.blob_path(repo_id, etag).parent
        return sorted(blobs.glob(f"{etag}.*{PARTIAL_SUFFIX}")) if blobs.is_dir() else []

    def adopt_orphans(self, repo_id: str, etag: str) -> None:
        """Keep the largest partial of this blob as our resumable one; delete the others.

        ``huggingface_hub`` 2.x resumes only within one call: the per-process temp file a
        killed ``hf_hub_download`` leaves behind is never looked at again, but its bytes are
        as good as ours. Call with the blob's lock held.
        """
        partial = self.partial_path(repo_id, etag)
        have = partial.stat().st_size if partial.exists() else 0
        for orphan in self.orphan_partials(repo_id, etag):
            with contextlib.suppress(OSError):
                if orphan.stat().st_size > have:
                    os.replace(orphan, partial)
                    have = partial.stat().st_size
                else:
                    orphan.unlink()

    def clean_orphans(self, *, max_age_s: float) -> list[Path]:
        """Delete partial downloads nobody will finish; return what was deleted.

        Kept: partials whose lock is held (a download is running) and our resumable
        ``<etag>.incomplete`` files younger than ``max_age_s``. Deleted: partials of blobs that
        are already complete, ``hf_hub_download``'s per-process temp files whose process is gone
        (they can never be resumed), and resumable partials nobody came back to.
        """
        deleted: list[Path] = []
        if not self.root.is_dir():
            return deleted
        now = time.time()
        for blobs in self.root.glob("models--*/blobs"):
            for partial in blobs.glob("*" + PARTIAL_SUFFIX):
                stem = partial.name[: -len(PARTIAL_SUFFIX)]
                etag = stem.split(".", 1)[0]
                if file_lock_held(self._lock_in(blobs.parent, etag)):
                    continue
                try:
                    age = now - partial.stat().st_mtime
                except OSError:
                    continue
                per_process = "." in stem
                if per_process or (blobs / etag).exists() or age > max_age_s:
                    with contextlib.suppress(OSError):
                        partial.unlink()
                        deleted.append(partial)
        return deleted


__all__ = [
    "DEFAULT_REVISION",
    "PARTIAL_SUFFIX",
    "HubCache",
    "file_lock_held",
    "hf_home",
    "hub_cache_dir",
]
