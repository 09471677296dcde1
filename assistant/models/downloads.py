"""Getting models from the Hugging Face Hub: resumable, verified, installed atomically.

A :class:`DownloadJob` fetches one file. Its ``run()`` blocks (call it from a worker thread);
``pause()``, ``resume()`` and ``cancel()`` may be called from any other thread, such as a GUI's,
and progress arrives through the plain ``on_progress`` callable.

How a file gets here:

1. Already registered, or already in the Hugging Face cache (put there by any tool): verify it
   and register it. No request is made.
2. Otherwise one HEAD on ``/resolve`` gives the commit, the size and the etag (the LFS sha256).
3. Bytes go to ``blobs/<etag>.incomplete`` in the Hub cache, under the same lock
   ``hf_hub_download`` takes. That name is stable across processes, so after a crash, a
   ``kill -9`` or a reboot the next pull asks the server only for the missing bytes
   (``Range: bytes=N-``). ``huggingface_hub`` 2.x resumes only within one call; its per-process
   temp files left by a killed run are adopted or cleaned up here.
4. The finished file is checked against the catalog's sha256 pin (or the Hub's LFS sha256) and
   its GGUF header, and llama.cpp is asked whether it runs the file's architecture; then it is
   renamed into the cache layout and only then registered. A failed check deletes the bytes: a
   file is never offered as a model before it is complete, verified and runnable here.

The bytes themselves move in :mod:`assistant.models.transfer`; the cache layout is
:mod:`assistant.models.hub_cache`. This module decides what to fetch, checks it and installs it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from assistant.disk import (
    MIN_FREE_MARGIN,
    check_free_space,
    disk_full_error,
    format_bytes,
    is_disk_full,
)
from assistant.errors import (
    Cancelled,
    ChecksumMismatchError,
    CorruptModelError,
    DownloadError,
    DownloadInProgressError,
    ModelFileError,
    ModelLoadError,
    ModelTooLargeError,
    NotGGUFError,
    RegistrationError,
    UnsupportedArchitectureError,
)
from assistant.models import hub
from assistant.models.gguf_file import check_supported, read_gguf_info
from assistant.models.hub_cache import DEFAULT_REVISION, HubCache
from assistant.models.store import InstalledModel, ModelStore, Source
from assistant.models.transfer import (
    Digest,
    DownloadProgress,
    ProgressMeter,
    RangedTransfer,
    TransferControl,
    fsync_in_background,
    git_blob_sha1,
    hash_file,
)
from assistant.paths import file_error
from assistant.secrets import get_hf_token

if TYPE_CHECKING:
    from assistant.models.catalog import Catalog, ModelSpec
    from assistant.models.hardware import Hardware

log = logging.getLogger(__name__)

JobState = Literal[
    "pending", "checking", "downloading", "paused", "verifying", "done", "failed", "cancelled"
]
ORPHAN_MAX_AGE_S = 14 * 24 * 3600


@dataclass(frozen=True)
class DownloadTarget:
    """One file to get: a catalog model's (``spec``) or any file of a Hub repository."""

    repo: str
    filename: str
    revision: str = DEFAULT_REVISION
    spec: ModelSpec | None = None

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> DownloadTarget:
        """The catalog model's file at the commit the catalog pins (else the main branch,
        where the sha256 pin still refuses any other file)."""
        return cls(
            repo=spec.repo,
            filename=spec.filename,
            revision=spec.revision or DEFAULT_REVISION,
            spec=spec,
        )

    @property
    def model_id(self) -> str | None:
        return self.spec.id if self.spec is not None else None

    @property
    def name(self) -> str | None:
        return self.spec.name if self.spec is not None else None

    @property
    def sha256(self) -> str | None:
        """The pin the file must match: the catalog's sha256 (lower case, as the catalog keeps
        it)."""
        return self.spec.sha256 if self.spec is not None else None

    @property
    def source(self) -> Source:
        return "catalog" if self.spec is not None else "hub"


@dataclass(frozen=True)
class DownloadResult:
    model: InstalledModel
    fetched_bytes: int = 0
    resumed_from: int = 0
    from_cache: bool = False
    already_installed: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


class Downloader:
    """Makes :class:`DownloadJob` objects that share one store, catalog and settings.

    ``endpoint`` and ``cache_dir`` default to ``HF_ENDPOINT`` and the Hub cache of ``HF_HOME``;
    ``token`` defaults to the one in the keyring (else ``HF_TOKEN``, else ``hf auth login``'s).
    """

    def __init__(
        self,
        store: ModelStore,
        *,
        catalog: Catalog | None = None,
        hardware: Hardware | None = None,
        endpoint: str | None = None,
        cache_dir: Path | None = None,
        token: Callable[[], str | None] = get_hf_token,
        timeout: float = 10.0,
        retries: int = 5,
        retry_wait: float = 1.0,
        free_margin: int = MIN_FREE_MARGIN,
        progress_interval: float = 0.1,
    ) -> None:
        self.store = store
        self.catalog: Catalog = catalog if catalog is not None else store.catalog
        self.hardware = hardware
        self.endpoint = endpoint
        self.cache = HubCache(cache_dir)
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.retry_wait = retry_wait
        self.free_margin = free_margin
        self.progress_interval = progress_interval

    def job(
        self,
        target: DownloadTarget,
        *,
        on_progress: Callable[[DownloadProgress], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        allow_large: bool = False,
    ) -> DownloadJob:
        return DownloadJob(
            self, target, on_progress=on_progress, on_warning=on_warning, allow_large=allow_large
        )

    def preflight(
        self,
        target: DownloadTarget,
        *,
        size: int | None = None,
        have: int | None = None,
        allow_large: bool = False,
    ) -> None:
        """Refuse, before a byte is fetched, a download this computer cannot take: the disk
        holding the Hub cache too full for the rest of the file (``DiskFullError``), or the
        model too large to run in this computer's memory (``ModelTooLargeError``, unless
        ``allow_large``). Both errors give the numbers. ``size`` defaults to the catalog's,
        ``have`` to the bytes of an earlier partial download."""
        size = size or (target.spec.size_bytes if target.spec else None)
        if not size:
            return  # nothing known yet: checked again once the Hub has said
        if have is None:
            have = 0
            if target.sha256:  # an LFS file's partial is named after its sha256
                partial = self.cache.partial_path(target.repo, target.sha256)
                have = partial.stat().st_size if partial.exists() else 0
        check_free_space(
            self.cache.repo_dir(target.repo),
            max(size - have, 0),
            margin=self.free_margin,
            what=f"{target.filename} ({format_bytes(size)})",
        )
        if not allow_large:
            self._check_memory(target, size)

    def _check_memory(self, target: DownloadTarget, size: int) -> None:
        from assistant.models import hardware

        hw = self.hardware or hardware.detect_hardware()
        spec = target.spec
        needed = (
            hardware.estimate_for_spec(spec).total
            if spec is not None
            else hardware.estimate_for_size(size).total
        )
        if hardware.fit_verdict(needed, hw) != "wont_fit":
            return
        name = target.name or target.filename
        command = (
            f"offline-assistant models pull {target.model_id} --anyway"
            if target.model_id
            else f"offline-assistant models pull {target.repo} --file {target.filename} --anyway"
        )
        raise ModelTooLargeError(
            f"{name} needs about {format_bytes(needed)} of memory to run, and this computer "
            f"has {format_bytes(hw.total_ram)} in all ({format_bytes(hw.available_ram)} free "
            "now): it would not run here. Nothing was downloaded.",
            hint="Pick a smaller model, or download it anyway if you will run it elsewhere.",
            command=command,
        )

    def target_for(self, model_or_repo: str, filename: str | None = None) -> DownloadTarget:
        """A catalog id, or a repo id with ``filename``, as a target."""
        if filename is None:
            return DownloadTarget.for_spec(self.catalog.get(model_or_repo))
        spec = self.catalog.find_by_file(model_or_repo, filename)
        if spec is not None:
            return DownloadTarget.for_spec(spec)
        return DownloadTarget(repo=model_or_repo, filename=filename)

    def pull(
        self,
        model_or_repo: str,
        filename: str | None = None,
        *,
        on_progress: Callable[[DownloadProgress], None] | None = None,
    ) -> DownloadResult:
        return self.job(self.target_for(model_or_repo, filename), on_progress=on_progress).run()

    def clean_orphans(self) -> list[Path]:
        return self.cache.clean_orphans(max_age_s=ORPHAN_MAX_AGE_S)

    def endpoint_url(self) -> str:
        return self.endpoint or hub.hub_endpoint()


class DownloadJob:
    """One file from the Hub to an installed model. See the module docstring for the steps."""

    def __init__(
        self,
        downloader: Downloader,
        target: DownloadTarget,
        *,
        on_progress: Callable[[DownloadProgress], None] | None = None,
        on_warning: Callable[[str], None] | None = None,
        allow_large: bool = False,
    ) -> None:
        self.downloader = downloader
        self.target = target
        self.allow_large = allow_large
        self.on_progress = on_progress
        self.on_warning = on_warning
        self.warnings: list[str] = []
        self._state: JobState = "pending"
        self._control = TransferControl()
        self._meter = ProgressMeter(self._notify, downloader.progress_interval)
        self._thread: threading.Thread | None = None
        self._result: DownloadResult | None = None
        self._error: BaseException | None = None
        # A cached blob found damaged: deleted before downloading, without hashing it again.
        self._rejected_blob: Path | None = None

    # --- control, from any thread ----------------------------------------------------------

    @property
    def state(self) -> JobState:
        return "paused" if self._control.paused else self._state

    @property
    def progress(self) -> DownloadProgress:
        return self._meter.latest

    def pause(self) -> None:
        self._control.pause()

    def resume(self) -> None:
        self._control.resume()

    def cancel(self, *, discard_partial: bool = False) -> None:
        """Stop soon. The bytes so far are kept for the next pull unless ``discard_partial``."""
        self._control.cancel(discard_partial=discard_partial)

    def start(self) -> threading.Thread:
        """Run in a daemon thread; collect the outcome with :meth:`wait`."""

        def work() -> None:
            try:
                self._result = self.run()
            except BaseException as exc:  # handed to wait(), never lost in the thread
                self._error = exc

        self._thread = threading.Thread(target=work, name="download", daemon=True)
        self._thread.start()
        return self._thread

    def wait(self, timeout: float | None = None) -> DownloadResult | None:
        """The result once done (``None`` if still running after ``timeout``); re-raises."""
        if self._thread is None:
            raise RuntimeError("the job was not started")
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self._result

    # --- the work, in the worker thread ------------------------------------------------------

    def run(self) -> DownloadResult:
        try:
            result = self._run()
        except Cancelled:
            self._state = "cancelled"
            raise
        except BaseException:
            self._state = "failed"
            raise
        self._state = "done"
        return result

    def _run(self) -> DownloadResult:
        self._state = "checking"
        target = self.target
        size = target.spec.size_bytes if target.spec else None
        self._meter.update(0, size, phase="checking", force=True)
        existing = self._installed()
        if existing is not None and not existing.missing:
            return DownloadResult(existing, already_installed=True)
        cached = self.downloader.cache.cached_file(target.repo, target.filename, target.revision)
        if cached is not None:
            adopted = self._adopt_cached(cached)
            if adopted is not None:
                return adopted
        # Before any request: a catalog model's size is known, so a download that cannot end
        # well is refused now, with the numbers, rather than after gigabytes.
        self.downloader.preflight(target, allow_large=self.allow_large)
        return self._download()

    def _installed(self) -> InstalledModel | None:
        """The registry's entry for this file (one read), under its catalog id if it has one."""
        found = [m for m in self.downloader.store.list_installed() if self._is_this_file(m)]
        found.sort(key=lambda m: m.id != self.target.model_id)  # stable: else the oldest
        return found[0] if found else None

    def _is_this_file(self, model: InstalledModel) -> bool:
        """Whether a registry entry is this target's file: a download of it, or an entry under
        the target's catalog id that names the same repository file (an import of it)."""
        target = self.target
        return (
            model.repo == target.repo
            and model.filename == target.filename
            and (model.source in ("catalog", "hub") or model.id == target.model_id)
        )

    def _adopt_cached(self, pointer: Path) -> DownloadResult | None:
        """A copy already in the Hub cache: verify it, then register it without any request."""
        blob = pointer.resolve()
        expected = self.target.sha256 or (blob.name if hub.is_sha256(blob.name) else None)
        if expected is None:
            return None  # cannot verify offline; fetch the metadata instead
        self._state = "verifying"
        actual = self._hash_file(pointer)
        if actual != expected:
            log.warning("Cached %s does not match its checksum; downloading it again.", pointer)
            self._rejected_blob = blob
            return None
        header_name = self._check_gguf(pointer, delete=False)
        model = self._register(
            pointer, pointer.stat().st_size, actual, header_name, _snapshot_commit(pointer)
        )
        return DownloadResult(model, from_cache=True, warnings=tuple(self.warnings))

    def _download(self) -> DownloadResult:
        d = self.downloader
        target = self.target
        endpoint = d.endpoint_url()
        token = d.token()
        meta = self._metadata(token, endpoint)
        if target.sha256 and meta.sha256 and target.sha256 != meta.sha256:
            raise ChecksumMismatchError(
                f"The Hub now serves a different {target.filename} than the one this app's "
                "catalog vouches for (the checksums differ). Nothing was downloaded.",
                hint="Update the app for a refreshed catalog, or download the file from the "
                f"{target.repo} repository's file list instead of the catalog.",
                command=f"offline-assistant models pull {target.repo} --file {target.filename}",
            )
        expected = target.sha256 or meta.sha256
        if expected is None and meta.git_sha1 is None:
            expected = self._sha256_from_listing(token, endpoint)
        total = meta.size or (target.spec.size_bytes if target.spec else None)
        self._check_split()
        blob = d.cache.blob_path(meta.repo, meta.etag)
        if blob.exists() and blob.resolve() == self._rejected_blob:
            blob.unlink()  # found damaged a moment ago: no need to hash it again
        elif blob.exists():
            # Same bytes already here under another revision: link them, after checking them.
            actual = self._hash_file(blob)
            if actual == expected or (expected is None and git_blob_sha1(blob) == meta.git_sha1):
                header_name = self._check_gguf(blob, delete=True)
                pointer = d.cache.link_snapshot(
                    blob, repo_id=meta.repo, commit=meta.commit, filename=meta.filename
                )
                model = self._register(
                    pointer, blob.stat().st_size, actual, header_name, meta.commit
                )
                return DownloadResult(model, from_cache=True, warnings=tuple(self.warnings))
            blob.unlink()

        from filelock import FileLock, Timeout

        lock_path = d.cache.lock_path(meta.repo, meta.etag)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise DownloadInProgressError(
                f"{target.filename} is being downloaded by another process right now.",
                hint="Wait for that download to finish; it will then be ready here too.",
            ) from None
        partial = d.cache.partial_path(meta.repo, meta.etag)
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
            d.cache.adopt_orphans(meta.repo, meta.etag)
            try:
                d.clean_orphans()
            except OSError as exc:
                log.warning("Could not clean up old partial downloads: %s", exc)
            try:
                return self._fetch(meta, partial, expected, total, token, endpoint)
            except Cancelled:
                if self._control.discard_partial:
                    partial.unlink(missing_ok=True)
                raise
            except OSError as exc:
                if not is_disk_full(exc):
                    raise
                partial.unlink(missing_ok=True)
                raise disk_full_error(
                    partial.parent,
                    target.filename,
                    "The partial download was deleted to give the space back.",
                ) from exc
        except BaseException:
            _remove_if_empty(partial)
            # Nothing to resume: the lock file would only be litter. Removed while still held,
            # and only then, so no other process can be between opening and locking it.
            if not partial.exists():
                lock_path.unlink(missing_ok=True)
            raise
        finally:
            lock.release()

    def _fetch(
        self,
        meta: hub.FileMetadata,
        partial: Path,
        expected: str | None,
        total: int | None,
        token: str | None,
        endpoint: str,
    ) -> DownloadResult:
        d = self.downloader
        have = partial.stat().st_size if partial.exists() else 0
        if total is not None and have > total:
            partial.unlink()
            have = 0
        if total is not None:
            # The Hub's size (a Hub file's only size), and the bytes already here.
            d.preflight(self.target, size=total, have=have, allow_large=self.allow_large)
        self._warn_memory_fit(total)
        digest = hashlib.sha256()
        if have:
            self._state = "verifying"
            self._hash_file(partial, have, digest)
        self._state = "downloading"
        transfer = RangedTransfer(
            meta,
            token=token,
            endpoint=endpoint,
            control=self._control,
            meter=self._meter,
            refresh=lambda: self._metadata(token, endpoint),
            timeout=d.timeout,
            retries=d.retries,
            retry_wait=d.retry_wait,
        )
        result = transfer.run(partial, have, total, digest=digest)
        actual = result.sha256
        size = partial.stat().st_size
        self._state = "verifying"
        self._meter.update(size, size, phase="verifying", force=True)
        # Make the bytes durable before they can be installed, while the checks run. A full
        # disk found then is reported like one found while writing (see _download).
        with fsync_in_background(partial):
            self._verify(partial, size, total, actual, expected, meta)
            header_name = self._check_gguf(partial, delete=True)
        pointer = d.cache.install(
            partial,
            repo_id=meta.repo,
            filename=meta.filename,
            etag=meta.etag,
            commit=meta.commit,
            revision=meta.revision,
        )
        model = self._register(pointer, size, actual, header_name, meta.commit)
        return DownloadResult(
            model, fetched_bytes=result.fetched, resumed_from=have, warnings=tuple(self.warnings)
        )

    def _verify(
        self,
        partial: Path,
        size: int,
        total: int | None,
        actual: str,
        expected: str | None,
        meta: hub.FileMetadata,
    ) -> None:
        """The size and checksum must be the published ones; otherwise delete the bytes."""
        name = self.target.filename
        if total is not None and size != total:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"{name} arrived with {size} bytes instead of {total}. "
                "It was deleted; nothing was installed.",
                hint="Try again; if it keeps happening the file on the Hub may be changing.",
            )
        matches = actual == expected if expected else git_blob_sha1(partial) == meta.git_sha1
        if not matches:
            partial.unlink(missing_ok=True)
            raise ChecksumMismatchError(
                f"The downloaded {name} does not match its published checksum "
                f"(expected {(expected or meta.etag)[:12]}…, got {actual[:12]}…). "
                "It was deleted; nothing was installed.",
                hint="Try again. If it happens again, the connection or a proxy is altering "
                "the file.",
            )

    def _metadata(self, token: str | None, endpoint: str) -> hub.FileMetadata:
        d = self.downloader
        return hub.fetch_file_metadata(
            self.target.repo,
            self.target.filename,
            revision=self.target.revision,
            token=token,
            endpoint=endpoint,
            timeout=d.timeout,
            retries=d.retries,
            retry_wait=d.retry_wait,
            on_retry=self._meter.retrying,
        )

    # --- helpers ---------------------------------------------------------------------------

    def _notify(self, progress: DownloadProgress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        if self.on_warning is not None:
            self.on_warning(text)

    def _hash_file(
        self, path: Path, length: int | None = None, digest: Digest | None = None
    ) -> str:
        """sha256 of the file's first ``length`` bytes, reported as verifying; pausable."""
        length = path.stat().st_size if length is None else length

        def step(done: int) -> None:
            self._meter.update(done, length, phase="verifying")
            self._control.checkpoint(self._meter, done, length)

        return hash_file(path, length, digest=digest, on_chunk=step).hexdigest()

    def _sha256_from_listing(self, token: str | None, endpoint: str) -> str:
        for item in hub.list_gguf_files(
            self.target.repo, revision=self.target.revision, token=token, endpoint=endpoint
        ):
            if item.filename == self.target.filename and item.sha256:
                return item.sha256
        raise DownloadError(
            f"The Hub publishes no checksum for {self.target.filename}, so it cannot be verified.",
            hint="Download it yourself (for example in a web browser), then import the file.",
            command="offline-assistant models import PATH",
        )

    def _check_split(self) -> None:
        part = hub.split_part(self.target.filename)
        if part is not None:
            self._warn(
                f"{self.target.filename} is part {part[0]} of {part[1]} of a split model; "
                "only this part is downloaded."
            )

    def _check_gguf(self, path: Path, *, delete: bool) -> str:
        """Check the GGUF header, then ask llama.cpp whether it runs the file's architecture;
        return the model name the header records ("" if none: the file's own name, which
        ``read_gguf_info`` falls back to, is only a sha256 while the bytes are a partial or a
        blob).

        A file that fails is never registered. With ``delete`` its bytes are deleted too: they
        are this download's, and a verified but unusable model would otherwise sit in the Hub
        cache, invisible in the app, taking gigabytes (after an app update, a pull fetches it
        again). Without ``delete`` the file belongs to the cache of another tool and is kept.
        """
        name, repo = self.target.filename, self.target.repo
        fate = " It was deleted; nothing was installed." if delete else " Nothing was installed."
        try:
            info = read_gguf_info(path)
            check_supported(path, info)
        except NotGGUFError as exc:
            if delete:
                path.unlink(missing_ok=True)
            raise NotGGUFError(
                f"{name} from {repo} is not a GGUF model file, so it cannot be used." + fate,
                hint="Pick one of the repository's .gguf files.",
                command=f"offline-assistant models search {repo}",
            ) from exc
        except UnsupportedArchitectureError as exc:
            if delete:
                path.unlink(missing_ok=True)
            raise UnsupportedArchitectureError(
                exc.architecture,
                f"{name} from {repo} holds a model of the '{exc.architecture}' architecture, "
                "which this version of the app's engine (llama.cpp) does not support." + fate,
                hint="Update Offline Assistant, or pick another model.",
            ) from exc
        except ModelLoadError as exc:  # llama.cpp refused it for another reason it named
            if delete:
                path.unlink(missing_ok=True)
            raise ModelLoadError(
                f"{name} from {repo} cannot be used: {exc.message}" + fate, hint=exc.hint
            ) from exc
        except ModelFileError as exc:
            if delete:
                path.unlink(missing_ok=True)
            raise CorruptModelError(
                f"{name} from {repo} is damaged ({exc.message})" + fate,
                hint="Try the download again, or pick another file.",
            ) from exc
        return str(info.metadata.get("general.name") or "")

    def _register(
        self, path: Path, size: int, sha256: str, header_name: str, commit: str | None
    ) -> InstalledModel:
        """Register the file: in the place of its earlier entry if it has one (even one added by
        another process meanwhile), else under its catalog id if free, else a slug of its name."""
        target = self.target
        model = InstalledModel(
            id=target.model_id or "",
            name=target.name or header_name or Path(target.filename).stem,
            path=path,
            size_bytes=size,
            source=target.source,
            repo=target.repo,
            filename=target.filename,
            sha256=sha256,
            owned=True,
            revision=commit,
        )
        try:
            return self.downloader.store.register(
                model, new=True, slug_from=target.filename, reuse=self._is_this_file
            )
        except OSError as exc:
            # The file is complete, verified and in place: only the list of installed models
            # could not be written (a full or read-only data disk). Say exactly that.
            # Name the path that failed: the registry itself or its lock file beside it.
            registry = self.downloader.store.file
            failed = Path(exc.filename) if exc.filename else registry
            what = "the list of installed models"
            if failed != registry:
                what = f"the lock file of {what}"
            cause = file_error(failed, exc, what)
            command = (
                f"offline-assistant models pull {target.model_id}"
                if target.model_id
                else f"offline-assistant models pull {target.repo} --file {target.filename}"
            )
            raise RegistrationError(
                f"{target.filename} was downloaded and verified and is installed in the "
                f"Hugging Face cache ({path}), but it could not be added to the list of "
                f"installed models: {cause.message}",
                hint="Fix that, then get the model again: the file is found in the cache and "
                "added without downloading it again.",
                command=command,
            ) from exc

    def _warn_memory_fit(self, size: int | None) -> None:
        try:
            from assistant.models import hardware

            hw = self.downloader.hardware or hardware.detect_hardware()
            spec = self.target.spec
            if spec is not None:
                needed = hardware.estimate_for_spec(spec).total
            elif size:
                needed = hardware.estimate_for_size(size).total
            else:
                return
            fit = hardware.fit_verdict(needed, hw)
        except Exception:  # advice only: never let it stop a download
            log.exception("Memory-fit estimate failed")
            return
        if fit == "wont_fit":  # reached only when the user asked for it anyway
            self._warn(
                f"{self.target.filename} needs about {format_bytes(needed)} of memory "
                f"and this computer has {format_bytes(hw.total_ram)}: it will probably "
                "not run here. Consider a smaller model."
            )
        elif fit == "tight":
            self._warn(
                f"{self.target.filename} needs about {format_bytes(needed)} of memory; "
                "close other programs before using it."
            )


def _snapshot_commit(pointer: Path) -> str | None:
    """The commit of a Hub cache file ``snapshots/<commit>/<filename>``."""
    for parent in pointer.parents:
        if parent.parent.name == "snapshots":
            return parent.name
    return None


def _remove_if_empty(path: Path) -> None:
    """Delete a 0-byte partial file: a failed pull that got no bytes leaves nothing behind."""
    try:
        if path.stat().st_size == 0:
            path.unlink()
    except OSError:
        pass


__all__ = [
    "DownloadJob",
    "DownloadProgress",
    "DownloadResult",
    "DownloadTarget",
    "Downloader",
    "JobState",
]
