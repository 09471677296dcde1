"""What is installed: the registry of model files the app may use.

The registry is one JSON file (``installed_models.json`` in the data folder), always written
atomically under a file lock, so the GUI and a CLI running at the same time never lose an entry.
A model enters it only complete and verified: downloads register after their checksum and header
checks, imports after their header check. Reading the registry never touches the network.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from assistant.atomic import atomic_write_text
from assistant.catalog import Catalog, ModelSpec, load_catalog
from assistant.errors import (
    DiskFullError,
    ModelFileMissingError,
    ModelNotFoundError,
    NoModelError,
)
from assistant.gguf_file import read_gguf_info
from assistant.paths import AppPaths, app_paths

log = logging.getLogger(__name__)

Source = Literal["catalog", "hub", "import"]
REGISTRY_VERSION = 1
COPY_CHUNK = 8 * 1024 * 1024
# Free space to leave on the disk beyond the file itself: the system needs room to breathe.
MIN_FREE_MARGIN = 256 * 1024 * 1024


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
            hint="Free some space (for example remove a model with `offline-assistant models "
            "rm ID`) and try again.",
        )


def disk_full_error(folder: Path, what: str, note: str) -> DiskFullError:
    return DiskFullError(
        f"The disk holding {folder} filled up while writing {what}. {note}",
        hint="Free some space and try again.",
    )


def format_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"  # pragma: no cover


class ModelStore:
    """The installed models, the default one, imports and removals."""

    def __init__(self, paths: AppPaths | None = None, catalog: Catalog | None = None) -> None:
        self.paths = paths or app_paths()
        # The packaged catalog by default, so an imported catalog file gets its catalog id.
        self.catalog: Catalog | None = catalog if catalog is not None else load_catalog()
        self.file = self.paths.installed_models_file

    # --- reading ---------------------------------------------------------------------------

    def _read(self) -> dict[str, Any]:
        try:
            raw = json.loads(self.file.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("models"), dict):
                raise ValueError("not a registry of models")
            return raw
        except FileNotFoundError:
            return {"version": REGISTRY_VERSION, "default": None, "models": {}}
        except (OSError, ValueError) as exc:
            # Never lose the evidence: keep the broken file beside the new one.
            backup = self.file.with_name(f"{self.file.name}.broken-{int(time.time())}")
            with contextlib.suppress(OSError):
                shutil.copy2(self.file, backup)
            log.warning(
                "Installed-models file %s unreadable (%s); kept as %s.", self.file, exc, backup
            )
            return {"version": REGISTRY_VERSION, "default": None, "models": {}}

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

    def find_by_path(self, path: Path) -> InstalledModel | None:
        target = _canonical(path)
        for model in self.list_installed():
            if _canonical(model.path) == target:
                return model
        return None

    def get(self, model_id: str) -> InstalledModel:
        model = self.find(model_id)
        if model is not None:
            return model
        if self.catalog is not None and model_id in self.catalog:
            raise ModelNotFoundError(
                f"{model_id} is in the catalog but not downloaded yet.",
                hint=f"Get it with `offline-assistant models pull {model_id}`.",
            )
        installed = [m.id for m in self.list_installed()]
        known = installed + list(self.catalog.ids if self.catalog is not None else ())
        close = difflib.get_close_matches(model_id, known, n=3, cutoff=0.6)
        raise ModelNotFoundError(
            f"No installed model is called {model_id!r}."
            + (f" Did you mean {', '.join(close)}?" if close else ""),
            hint="See the models with `offline-assistant models list`.",
        )

    def resolve(self, model_id: str) -> Path:
        """The file of an installed model, ready for the engine to load."""
        model = self.get(model_id)
        if model.missing:
            how = (
                f"`offline-assistant models pull {model.id}`"
                if model.source == "catalog"
                else f"`offline-assistant models pull {model.repo} --file {model.filename}`"
                if model.source == "hub"
                else "`offline-assistant models import PATH`"
            )
            raise ModelFileMissingError(
                f"The file of model {model.id} is gone: {model.path} was deleted or moved.",
                hint=f"Get it again with {how}, or forget it with "
                f"`offline-assistant models rm {model.id}`.",
            )
        return model.path

    def default_id(self) -> str | None:
        data = self._read()
        default = data.get("default")
        return default if isinstance(default, str) and default in data["models"] else None

    def default_model(self) -> InstalledModel:
        model_id = self.default_id()
        if model_id is None:
            raise NoModelError(
                "No model is installed yet.",
                hint="Get one with `offline-assistant models pull ID` (see `models list`), or "
                "import a .gguf file with `offline-assistant models import PATH`.",
            )
        return self.get(model_id)

    # --- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _editing(self) -> Iterator[dict[str, Any]]:
        from filelock import FileLock

        self.file.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.file) + ".lock"):
            data = self._read()
            yield data
            data["version"] = REGISTRY_VERSION
            self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        atomic_write_text(self.file, json.dumps(data, indent=2, sort_keys=True))

    def register(self, model: InstalledModel, *, make_default: bool = False) -> InstalledModel:
        """Add or replace an entry. The first model registered becomes the default."""
        model = replace(model, added_at=model.added_at or now_iso(), missing=False)
        with self._editing() as data:
            data["models"][model.id] = model.to_json()
            default = data.get("default")
            if make_default or default not in data["models"]:
                data["default"] = model.id
        return model

    def set_default(self, model_id: str) -> InstalledModel:
        model = self.get(model_id)
        with self._editing() as data:
            data["default"] = model_id
        return model

    def unique_id(self, filename: str) -> str:
        base = slugify(filename)
        taken = set(self._models(self._read()))
        if self.catalog is not None:
            taken |= {spec.id for spec in self.catalog}
        candidate, number = base, 2
        while candidate in taken:
            candidate, number = f"{base}-{number}", number + 1
        return candidate

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
        snapshots = next((p for p in path.parents if p.name == "snapshots"), None)
        if snapshots is not None and snapshots.parent.name.startswith("models--"):
            from assistant.hub_cache import HubCache

            return HubCache(snapshots.parent.parent).remove_file(path)
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

        The header is checked first, so an empty, random or truncated file is refused with the
        reason and nothing is registered. A copy is written to a temporary file and renamed only
        when complete.
        """
        source = Path(path).expanduser()
        if not source.is_file():
            raise ModelFileMissingError(
                f"There is no file at {source}.", hint="Check the path and try again."
            )
        source = source.resolve()
        read_gguf_info(source)  # raises NotGGUFError / CorruptModelError with the reason
        if model_id is not None and self.find(model_id) is not None:
            raise ValueError(f"a model called {model_id!r} is already installed")
        if not copy:
            existing = self.find_by_path(source)
            if existing is not None and not existing.missing:
                return existing
        spec = self._matching_spec(source)
        if model_id is None:
            model_id = (
                spec.id
                if spec is not None and self.find(spec.id) is None
                else self.unique_id(source.name)
            )
        sha256: str | None = None
        target, owned = source, False
        if copy:
            target, sha256 = self._copy_in(source, on_progress)
            owned = True
        model = InstalledModel(
            id=model_id,
            name=spec.name if spec is not None else _display_name(target),
            path=target,
            size_bytes=target.stat().st_size,
            source="import",
            repo=spec.repo if spec is not None else None,
            filename=source.name,
            sha256=sha256,
            owned=owned,
        )
        return self.register(model)

    def _matching_spec(self, source: Path) -> ModelSpec | None:
        """The catalog model this file is, judged by name and size (cheap, no hashing)."""
        if self.catalog is None:
            return None
        size = source.stat().st_size
        for spec in self.catalog:
            if spec.filename == source.name and spec.size_bytes in (None, 0, size):
                return spec
        return None

    def _copy_in(
        self, source: Path, on_progress: Callable[[int, int], None] | None
    ) -> tuple[Path, str]:
        folder = self.paths.models_dir
        folder.mkdir(parents=True, exist_ok=True)
        total = source.stat().st_size
        check_free_space(folder, total, margin=MIN_FREE_MARGIN, what=f"a copy of {source.name}")
        _remove_dead_copies(folder)
        target = folder / source.name
        number = 2
        while target.exists():
            target = folder / f"{source.stem}-{number}{source.suffix}"
            number += 1
        tmp = folder / f".{target.name}.{os.getpid()}.importing"
        digest = hashlib.sha256()
        done = 0
        try:
            with source.open("rb") as reader, tmp.open("wb") as writer:
                while chunk := reader.read(COPY_CHUNK):
                    writer.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if on_progress is not None:
                        on_progress(done, total)
                writer.flush()
                os.fsync(writer.fileno())
            read_gguf_info(tmp)
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno == errno.ENOSPC:
                raise disk_full_error(
                    folder, f"a copy of {source.name}", "The unfinished copy was removed."
                ) from exc
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target, digest.hexdigest()


def _remove_dead_copies(folder: Path) -> None:
    """Delete unfinished copies left by an import whose process was killed."""
    import psutil

    for leftover in folder.glob(".*.importing"):
        pid = leftover.name.rsplit(".", 2)[-2]
        if not pid.isdigit() or not psutil.pid_exists(int(pid)):
            leftover.unlink(missing_ok=True)


def _display_name(path: Path) -> str:
    try:
        name = read_gguf_info(path).name
    except Exception:  # the name is cosmetic; the file was validated before
        name = ""
    return name or re.sub(r"\.gguf$", "", path.name, flags=re.IGNORECASE)


def _canonical(path: Path) -> str:
    try:
        return str(path.expanduser().resolve())
    except OSError:
        return str(path)
