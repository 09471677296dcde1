"""What is installed: the registry of model files the app may use.

The registry is one JSON file (``installed_models.json`` in the data folder), always written
atomically under a file lock, so the GUI and a CLI running at the same time never lose an entry.
A model enters it only complete and verified: downloads register after their checksum and header
checks, imports after their header check. Reading the registry never touches the network.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
import logging
import os
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assistant.atomic import atomic_write_text
from assistant.disk import MIN_FREE_MARGIN, check_free_space, disk_full_error, is_disk_full
from assistant.errors import (
    ModelFileMissingError,
    ModelIdTakenError,
    ModelNotFoundError,
    NoModelError,
)
from assistant.models.catalog import Catalog, ModelSpec, load_catalog
from assistant.models.gguf_file import check_model_path, check_supported, read_gguf_info
from assistant.models.hub_cache import HubCache
from assistant.paths import AppPaths, app_paths

if TYPE_CHECKING:
    from filelock import FileLock

log = logging.getLogger(__name__)

Source = Literal["catalog", "hub", "import"]
REGISTRY_VERSION = 1
COPY_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class InstalledModel:
    """One usable model file. ``owned`` files (downloads, copies) are deleted with the model;
    a file imported in place belongs to the user and is only ever unregistered."""

    id: str
    name: str
    path: Path
    size_bytes: int
    source: Source
    repo: str | None = None
    filename: str | None = None
    sha256: str | None = None
    added_at: str = ""
    owned: bool = True
    revision: str | None = None
    """The repository commit a downloaded file was taken from."""
    missing: bool = field(default=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data.pop("missing")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstalledModel:
        known = {name for name in cls.__dataclass_fields__ if name != "missing"}
        values = {key: value for key, value in data.items() if key in known}
        values["path"] = Path(values["path"])
        model = cls(**values)
        return replace(model, missing=not model.path.is_file())


@dataclass(frozen=True)
class Removal:
    """What ``remove`` did, for the front end to report."""

    model: InstalledModel
    deleted: Path | None
    freed_bytes: int
    note: str = ""


def slugify(filename: str) -> str:
    """``SmolLM2-135M-Instruct.Q4_1.gguf`` → ``smollm2-135m-instruct-q4_1``."""
    stem = re.sub(r"\.gguf$", "", Path(filename).name, flags=re.IGNORECASE)
    slug = re.sub(r"[^a-z0-9_]+", "-", stem.lower()).strip("-_")
    return slug or "model"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _free_slug(filename: str, taken: set[str]) -> str:
    """The slug of ``filename``, numbered (``name-2``, ``name-3``, ...) until not in ``taken``."""
    base = slugify(filename)
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


class ModelStore:
    """The installed models, the default one, imports and removals."""

    def __init__(self, paths: AppPaths | None = None, catalog: Catalog | None = None) -> None:
        self.paths = paths or app_paths()
        # The packaged catalog by default, so an imported catalog file gets its catalog id.
        self.catalog: Catalog = catalog if catalog is not None else load_catalog()
        self.file = self.paths.installed_models_file

    # --- reading ---------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        with contextlib.suppress(OSError, ValueError):
            return self._load()
        # Broken. Look again holding the lock, so that a registry another process has just
        # rewritten is never the one moved aside.
        try:
            with self._lock():
                try:
                    return self._load()
                except (OSError, ValueError) as exc:
                    self._quarantine(exc)
        except OSError as exc:  # no lock to be had (a read-only folder): leave the file be
            log.warning("Installed-models file %s unreadable; not moved aside: %s", self.file, exc)
        return _empty_registry()

    def _load(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return _empty_registry()
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
            raise ValueError("not a registry of models")
        return raw

    def _quarantine(self, problem: Exception) -> None:
        """Move a broken registry aside: the evidence is kept, once, and later reads find no
        file (until the next edit writes a new one)."""
        stamp = f"{self.file.name}.broken-{int(time.time())}"
        backup, number = self.file.with_name(stamp), 2
        while backup.exists():  # broken twice within a second: keep both
            backup, number = self.file.with_name(f"{stamp}-{number}"), number + 1
        try:
            os.replace(self.file, backup)
        except FileNotFoundError:
            return  # another process moved it aside first
        except OSError as exc:
            log.warning(
                "Installed-models file %s unreadable (%s); not moved aside: %s",
                self.file,
                problem,
                exc,
            )
            return
        log.warning(
            "Installed-models file %s unreadable (%s); moved to %s.", self.file, problem, backup
        )

    def _models(self, data: dict[str, Any]) -> dict[str, InstalledModel]:
        models = {}
        for model_id, entry in data["models"].items():
            try:
                models[model_id] = InstalledModel.from_json(entry)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("Skipping unreadable registry entry %r: %s", model_id, exc)
        return models

    def list_installed(self) -> list[InstalledModel]:
        """Every registered model, oldest first; ``missing`` flags files deleted behind our back."""
        return sorted(self._models(self._read()).values(), key=lambda m: (m.added_at, m.id))

    def find(self, model_id: str) -> InstalledModel | None:
        return self._models(self._read()).get(model_id)

    def get(self, model_id: str) -> InstalledModel:
        return self._get(model_id, self._models(self._read()))

    def _get(self, model_id: str, installed: dict[str, InstalledModel]) -> InstalledModel:
        model = installed.get(model_id)
        if model is not None:
            return model
        if model_id in self.catalog:
            raise ModelNotFoundError(
                f"{model_id} is in the catalog but not downloaded yet.",
                hint="Download it first.",
                command=f"offline-assistant models pull {model_id}",
            )
        close = difflib.get_close_matches(
            model_id, [*installed, *self.catalog.ids], n=3, cutoff=0.6
        )
        raise ModelNotFoundError(
            f"No installed model is called {model_id!r}."
            + (f" Did you mean {', '.join(close)}?" if close else ""),
            hint="Pick one of the installed models.",
            command="offline-assistant models list",
        )

    def resolve(self, model_id: str) -> Path:
        """The file of an installed model, ready for the engine to load."""
        model = self.get(model_id)
        if model.missing:
            raise ModelFileMissingError(
                f"The file of model {model.id} is gone: {model.path} was deleted or moved.",
                hint=f"{_how_to_get_again(model)}, or remove the model from the list.",
                command=_fix_missing_command(model),
            )
        return model.path

    def default_id(self) -> str | None:
        return _default_of(self._read())

    def default_model(self) -> InstalledModel:
        data = self._read()
        model_id = _default_of(data)
        if model_id is None:
            raise NoModelError(
                "No model is installed yet.",
                hint="Download a model, or import a .gguf file you already have.",
                command="offline-assistant models list",
            )
        return self._get(model_id, self._models(data))

    # --- writing ---------------------------------------------------------------------------

    def _lock(self) -> FileLock:
        from filelock import FileLock

        # One lock object per registry in this process: a read that finds the file broken can
        # take the lock again while an edit in the same thread holds it.
        return FileLock(str(self.file) + ".lock", is_singleton=True)

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self._lock():
            data = self._read()
            yield data
            data["version"] = REGISTRY_VERSION
            self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.file, json.dumps(data, indent=2, sort_keys=True))

    def register(
        self,
        model: InstalledModel,
        *,
        make_default: bool = False,
        new: bool = False,
        slug_from: str | None = None,
        reuse: Callable[[InstalledModel], bool] | None = None,
    ) -> InstalledModel:
        """Add ``model``, or replace the entry with its id. The first model becomes the default.

        With ``new`` the model replaces no other: its id is chosen while the registry is locked,
        so two processes adding models at once both keep theirs. It takes the id of an entry
        ``reuse`` accepts (the same model, registered meanwhile); else ``model.id`` if no entry
        has it (an empty ``model.id`` asks for none); else, with ``slug_from``, the first free
        slug of that file name that is no catalog id either; else it raises
        :class:`ModelIdTakenError`.
        """
        model = replace(model, added_at=model.added_at or now_iso(), missing=False)
        with self._editing() as data:
            if new:
                model = replace(model, id=self._new_id(model.id, data, slug_from, reuse))
            data["models"][model.id] = model.to_json()
            default = data.get("default")
            if make_default or default not in data["models"]:
                data["default"] = model.id
        return model

    def _new_id(
        self,
        wanted: str,
        data: dict[str, Any],
        slug_from: str | None,
        reuse: Callable[[InstalledModel], bool] | None,
    ) -> str:
        if reuse is not None:
            same = sorted(
                (m for m in self._models(data).values() if reuse(m)),
                key=lambda m: (m.id != wanted, m.added_at, m.id),
            )
            if same:
                return same[0].id
        if wanted and wanted not in data["models"]:
            return wanted
        if slug_from is None:
            raise _id_taken(wanted)
        return _free_slug(slug_from, set(data["models"]) | set(self.catalog.ids))

    def set_default(self, model_id: str) -> InstalledModel:
        model = self.get(model_id)
        with self._editing() as data:
            data["default"] = model_id
        return model

    def unique_id(self, filename: str) -> str:
        """The id a model from ``filename`` would get now, if its catalog id is not free.
        (:meth:`register` chooses for real, holding the lock.)"""
        return _free_slug(filename, set(self._read()["models"]) | set(self.catalog.ids))

    def remove(self, model_id: str, delete_file: bool = True) -> Removal:
        """Forget a model and, for files the app owns, delete them to free the disk."""
        model = self.get(model_id)
        deleted: Path | None = None
        freed = 0
        note = ""
        if not model.owned:
            note = f"The file {model.path} was left where it is: it is yours, not the app's."
        elif not delete_file:
            note = f"The file {model.path} was kept."
        elif model.missing:
            note = "Its file was already gone."
        else:
            freed = self._delete_owned_file(model.path)
            deleted = model.path
        with self._editing() as data:
            data["models"].pop(model_id, None)
            if data.get("default") == model_id:
                rest = sorted(
                    data["models"].values(), key=lambda e: (e.get("added_at", ""), e.get("id", ""))
                )
                data["default"] = rest[0]["id"] if rest else None
        return Removal(model=model, deleted=deleted, freed_bytes=freed, note=note)

    @staticmethod
    def _delete_owned_file(path: Path) -> int:
        cache = HubCache.containing(path)
        if cache is not None:
            return cache.remove_file(path)  # and its blob, unless another snapshot uses it
        size = path.stat().st_size
        path.unlink()
        return size

    # --- importing -------------------------------------------------------------------------

    def import_file(
        self,
        path: Path | str,
        *,
        copy: bool = False,
        model_id: str | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> InstalledModel:
        """Register a local ``.gguf``: in place (the user's file) or copied into the app's folder.

        The header is checked first, then whether this build of llama.cpp runs the file's
        architecture, so an empty, random, truncated or unsupported file is refused with the
        reason and nothing is registered (and nothing copied). A copy is written to a temporary
        file and renamed only when complete. ``model_id`` must be free, and may be a catalog id
        only for that catalog model's file; without it a catalog file gets its catalog id,
        others a slug of the name.
        """
        source = Path(path).expanduser()
        try:
            check_model_path(source)  # a folder, a FIFO, a loop: named, and never opened
        except ModelFileMissingError:
            raise ModelFileMissingError(
                f"There is no file at {source}.", hint="Check the path and try again."
            ) from None
        source = source.resolve()
        info = read_gguf_info(source)  # raises NotGGUFError / CorruptModelError with the reason
        data = self._read()
        spec = self._matching_spec(source)
        if model_id is not None:
            if model_id in data["models"]:
                raise _id_taken(model_id, _import_command(source, copy))
            if model_id in self.catalog:
                spec = self.catalog.get(model_id)
                if not _is_file_of(spec, source):
                    raise ModelIdTakenError(
                        f"{model_id!r} is the id of a catalog model, and {source.name} is not "
                        "that model's file.",
                        hint="Give it another id.",
                        command=_import_command(source, copy),
                    )
        if not copy:
            existing = _find_by_path(self._models(data).values(), source)
            if existing is not None and not existing.missing:
                return existing
        # Raises UnsupportedArchitectureError naming the architecture (a file too new for
        # this engine), before any copy is made.
        check_supported(source, info)
        sha256: str | None = None
        target, owned = source, False
        if copy:
            target, sha256 = self._copy_in(source, on_progress)
            owned = True
        header_name = info.name or re.sub(r"\.gguf$", "", target.name, flags=re.IGNORECASE)
        model = InstalledModel(
            id=model_id or (spec.id if spec is not None else ""),
            name=spec.name if spec is not None else header_name,
            path=target,
            size_bytes=target.stat().st_size,
            source="import",
            repo=spec.repo if spec is not None else None,
            filename=source.name,
            sha256=sha256,
            owned=owned,
        )
        try:
            return self.register(
                model, new=True, slug_from=source.name if model_id is None else None
            )
        except BaseException as exc:
            if owned:
                target.unlink(missing_ok=True)  # the id was taken meanwhile: drop the copy
            if isinstance(exc, ModelIdTakenError) and exc.command is None:
                exc.command = _import_command(source, copy)
            raise

    def _matching_spec(self, source: Path) -> ModelSpec | None:
        """The catalog model this file is, judged by name and size (cheap, no hashing)."""
        return next((spec for spec in self.catalog if _is_file_of(spec, source)), None)

    def _copy_in(
        self, source: Path, on_progress: Callable[[int, int], None] | None
    ) -> tuple[Path, str]:
        folder = self.paths.models_dir
        folder.mkdir(parents=True, exist_ok=True)
        total = source.stat().st_size
        check_free_space(folder, total, margin=MIN_FREE_MARGIN, what=f"a copy of {source.name}")
        _remove_dead_copies(folder)
        # Unique even between two imports of one name in one process; the pid comes last, for
        # _remove_dead_copies.
        tmp = folder / f".{source.name}.{uuid.uuid4().hex[:8]}.{os.getpid()}.importing"
        digest = hashlib.sha256()
        done = 0
        try:
            with source.open("rb") as reader, tmp.open("xb") as writer:
                while chunk := reader.read(COPY_CHUNK):
                    writer.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
                writer.flush()
                os.fsync(writer.fileno())
            read_gguf_info(tmp)
            target = _install_copy(tmp, folder, source)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if is_disk_full(exc):
                raise disk_full_error(
                    folder, f"a copy of {source.name}", "The unfinished copy was removed."
                ) from exc
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target, digest.hexdigest()


def _empty_registry() -> dict[str, Any]:
    return {"version": REGISTRY_VERSION, "default": None, "models": {}}


def _default_of(data: dict[str, Any]) -> str | None:
    default = data.get("default")
    return default if isinstance(default, str) and default in data["models"] else None


def _id_taken(model_id: str, command: str | None = None) -> ModelIdTakenError:
    return ModelIdTakenError(
        f"A model called {model_id!r} is already installed.",
        hint="Give this one another id, or remove the installed one first.",
        command=command,
    )


def _import_command(source: Path, copy: bool) -> str:
    """The import the user tried, with a new id to fill in."""
    return (
        f"offline-assistant models import {shlex.quote(str(source))}"
        + (" --copy" if copy else "")
        + " --id NEW_ID"
    )


def _how_to_get_again(model: InstalledModel) -> str:
    if model.source in ("catalog", "hub"):
        return "Download it again"
    return "Import the file again" if model.owned else "Put the file back"


def _fix_missing_command(model: InstalledModel) -> str:
    """Get a missing file again: download it under the same id; an import cannot be redone by
    the app (the file was the user's), so forget it."""
    if model.source == "catalog":
        return f"offline-assistant models pull {model.id}"
    if model.source == "hub" and model.repo and model.filename:
        return f"offline-assistant models pull {model.repo} --file {shlex.quote(model.filename)}"
    return f"offline-assistant models rm {shlex.quote(model.id)}"


def _is_file_of(spec: ModelSpec, source: Path) -> bool:
    return spec.filename == source.name and spec.size_bytes in (None, 0, source.stat().st_size)


def _install_copy(tmp: Path, folder: Path, source: Path) -> Path:
    """Give the finished copy ``tmp`` the first free name of ``source`` in ``folder``, never
    replacing a file: another import may have just finished a copy of the same name."""
    number = 1
    while True:
        name = source.name if number == 1 else f"{source.stem}-{number}{source.suffix}"
        target = folder / name
        number += 1
        try:
            os.link(tmp, target)  # unlike a rename, fails when the name is taken
        except FileExistsError:
            continue
        except OSError:
            # No hard links on this file system (FAT, some network shares): check, then rename.
            if target.exists():
                continue
            os.replace(tmp, target)
            return target
        tmp.unlink()
        return target


def _remove_dead_copies(folder: Path) -> None:
    """Delete unfinished copies left by an import whose process was killed."""
    import psutil

    for leftover in folder.glob(".*.importing"):
        pid = leftover.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or not psutil.pid_exists(int(pid)):
            leftover.unlink(missing_ok=True)


def _find_by_path(models: Iterable[InstalledModel], path: Path) -> InstalledModel | None:
    target = _canonical(path)
    return next((model for model in models if _canonical(model.path) == target), None)


def _canonical(path: Path) -> str:
    try:
        return str(path.expanduser().resolve())
    except OSError:
        return str(path)
