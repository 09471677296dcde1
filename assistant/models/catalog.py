"""Which models the app knows how to download: the curated catalog in ``data/models.toml``.

The catalog is read once from the installed package (through ``importlib.resources``, so it works
from a wheel, a zip or a frozen app) and checked strictly: a typo in the file must fail loudly in
development, with a message that names the entry and the field, rather than reach a user as a
broken download.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from assistant.engine.base import SamplingPreset
from assistant.errors import CatalogError, ModelNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

CATALOG_VERSION = 1
# Where the catalog lives inside the installed package.
PACKAGED_CATALOG = ("assistant", "data/models.toml")

_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
# Hugging Face repository ids: "owner/name", letters, digits, "-", "_" and ".".
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable model: a GGUF file in a Hugging Face repository, and what it is good for.

    ``layers``, ``kv_heads`` and ``head_dim`` are optional architecture numbers that make the memory
    estimate in :mod:`assistant.models.hardware` exact for the KV cache. ``revision`` is the
    repository commit the file was taken from (None: the ``main`` branch, guarded by
    ``sha256``); ``sampling`` the authors' recommended sampling, if they publish one.
    """

    id: str
    name: str
    family: str
    repo: str
    filename: str
    quantization: str
    size_bytes: int
    parameters: int
    context_length: int
    license: str
    good_at: str
    sha256: str | None = None
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    revision: str | None = None
    sampling: SamplingPreset | None = None

    @property
    def parameters_label(self) -> str:
        """The size people call the model by: "135M", "360M", "0.6B", "1.5B", "4B"."""
        return format_parameters(self.parameters)


def format_parameters(count: int) -> str:
    """A parameter count the way model names spell it.

    Below half a billion the count is shown in millions ("135M"); from there on in billions with
    one decimal, dropping a trailing ".0" ("0.6B", "1.5B", "4B"), matching names like Qwen3-0.6B.
    """
    if count < 500_000_000:
        return f"{max(1, round(count / 1_000_000))}M"
    billions = f"{count / 1_000_000_000:.1f}"
    return f"{billions.removesuffix('.0')}B"


class Catalog:
    """An ordered, read-only collection of :class:`ModelSpec` with lookups by id and by file."""

    def __init__(self, models: Iterable[ModelSpec]) -> None:
        self.models: tuple[ModelSpec, ...] = tuple(models)
        self._by_id: dict[str, ModelSpec] = {}
        self._by_file: dict[tuple[str, str], ModelSpec] = {}
        for spec in self.models:
            if spec.id in self._by_id:
                raise ValueError(f"duplicate model id {spec.id!r}")
            self._by_id[spec.id] = spec
            self._by_file[(spec.repo.lower(), spec.filename)] = spec

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._by_id

    def __repr__(self) -> str:
        return f"Catalog({len(self.models)} models)"

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(spec.id for spec in self.models)

    def get(self, model_id: str) -> ModelSpec:
        """The model with this id; :class:`ModelNotFoundError` naming close ids if there is none."""
        spec = self._by_id.get(model_id)
        if spec is not None:
            return spec
        suggestions = self.suggest(model_id)
        message = f'No model "{model_id}" is in the catalog.'
        if suggestions:
            message += " Did you mean " + _join_or([f'"{s}"' for s in suggestions]) + "?"
        raise ModelNotFoundError(
            message,
            hint="Pick one of the catalog's models.",
            command="offline-assistant models list",
        )

    def suggest(self, text: str, limit: int = 3) -> list[str]:
        """Up to ``limit`` ids that look like ``text``: close spellings first, then ids containing
        it."""
        needle = text.strip().lower()
        if not needle:
            return []
        close = difflib.get_close_matches(needle, self.ids, n=limit, cutoff=0.6)
        containing = [i for i in self.ids if needle in i and i not in close]
        return (close + containing)[:limit]

    def find_by_file(self, repo: str, filename: str) -> ModelSpec | None:
        """The catalog entry for this exact file, if any. Hub repository ids ignore case."""
        return self._by_file.get((repo.lower(), filename))


# --- loading -------------------------------------------------------------------------------------


def load_catalog(path: Path | None = None) -> Catalog:
    """The catalog in ``path``, or the one packaged with the app (read once, then cached)."""
    if path is None:
        return _packaged_catalog()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise CatalogError(f"Cannot read the model catalog {path}: {err.strerror or err}.") from err
    except UnicodeDecodeError as err:
        raise CatalogError(f"{Path(path).name}: the model catalog is not UTF-8 text.") from err
    return parse_catalog(text, Path(path).name)


@functools.cache
def _packaged_catalog() -> Catalog:
    package, relative = PACKAGED_CATALOG
    resource = resources.files(package)
    for part in relative.split("/"):
        resource = resource / part
    try:
        text = resource.read_text(encoding="utf-8")
    except OSError as err:
        # Only a broken installation gets here; say so rather than show a bare traceback.
        raise CatalogError(
            "The model catalog that ships with the app is missing.",
            hint="Reinstall Offline Assistant.",
        ) from err
    return parse_catalog(text, Path(relative).name)


def parse_catalog(text: str, source: str) -> Catalog:
    """Parse and validate catalog TOML. ``source`` names the file in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        # The message already ends with "(at line N, column M)".
        raise CatalogError(f"{source}: not valid TOML: {err}") from err
    return Catalog(_validate_document(data, source))


# --- validation ----------------------------------------------------------------------------------

_REQUIRED_STR = ("id", "name", "family", "repo", "filename", "quantization", "license", "good_at")
_REQUIRED_INT = ("size_bytes", "parameters", "context_length")
_OPTIONAL_INT = ("layers", "kv_heads", "head_dim")
_KNOWN_FIELDS = frozenset(
    (*_REQUIRED_STR, *_REQUIRED_INT, *_OPTIONAL_INT, "sha256", "revision", "sampling")
)
# [models.sampling]: the recommendation's fields, each a number in the setting's range, and the
# source in words ("the Qwen3 model card").
_SAMPLING_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "top_k": (0, 1000),
    "min_p": (0.0, 1.0),
    "repeat_penalty": (0.5, 2.0),
}
_TOP_LEVEL_KEYS = frozenset(("version", "models"))


def _validate_document(data: Mapping[str, Any], source: str) -> list[ModelSpec]:
    for key in data:
        if key not in _TOP_LEVEL_KEYS:
            raise CatalogError(
                f'{source}: unknown top-level key "{key}"{_did_you_mean(key, _TOP_LEVEL_KEYS)}.'
            )
    version = data.get("version")
    if version is None:
        raise CatalogError(f'{source}: the top-level "version" is missing.')
    if _positive_int(version) != CATALOG_VERSION:
        raise CatalogError(
            f'{source}: "version" must be {CATALOG_VERSION}, got {_show(version)}.',
            hint="This catalog was written for another version of the app.",
        )
    entries = data.get("models")
    if entries is None:
        raise CatalogError(f"{source}: no [[models]] entries.")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CatalogError(f'{source}: "models" must be an array of tables ([[models]]).')
    if not entries:
        raise CatalogError(f"{source}: no [[models]] entries.")

    specs: list[ModelSpec] = []
    seen_ids: dict[str, int] = {}
    seen_files: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries, start=1):
        spec = _validate_entry(entry, index, source)
        where = _where(source, index, spec.id)
        if spec.id in seen_ids:
            raise CatalogError(
                f'{where}: field "id" duplicates entry {seen_ids[spec.id]}; ids must be unique.'
            )
        file_key = (spec.repo.lower(), spec.filename)
        if file_key in seen_files:
            raise CatalogError(
                f'{where}: field "filename" names the same file as entry '
                f"{seen_files[file_key]} ({spec.repo}/{spec.filename})."
            )
        seen_ids[spec.id] = index
        seen_files[file_key] = index
        specs.append(spec)
    return specs


def _validate_entry(entry: Mapping[str, Any], index: int, source: str) -> ModelSpec:
    raw_id = entry.get("id")
    where = _where(source, index, raw_id if isinstance(raw_id, str) and raw_id else None)

    def fail(field: str, problem: str) -> CatalogError:
        return CatalogError(f'{where}: field "{field}" {problem}')

    for key in entry:
        if key not in _KNOWN_FIELDS:
            raise fail(key, f"is not a catalog field{_did_you_mean(key, _KNOWN_FIELDS)}.")

    strings: dict[str, str] = {}
    for field in _REQUIRED_STR:
        if field not in entry:
            raise fail(field, "is missing.")
        value = entry[field]
        if not isinstance(value, str) or not value.strip():
            raise fail(field, f"must be a non-empty string, got {_show(value)}.")
        strings[field] = value.strip()

    numbers: dict[str, int | None] = {}
    for field in (*_REQUIRED_INT, *_OPTIONAL_INT):
        if field not in entry:
            if field in _REQUIRED_INT:
                raise fail(field, "is missing.")
            numbers[field] = None
            continue
        number = _positive_int(entry[field])
        if number is None:
            raise fail(field, f"must be a positive integer, got {_show(entry[field])}.")
        numbers[field] = number

    if not _ID_RE.match(strings["id"]):
        raise fail(
            "id",
            "must be a short slug of lowercase letters, digits, '.', '-' or '_' "
            f"(at most 64 characters), got {_show(entry['id'])}.",
        )
    if not _REPO_RE.match(strings["repo"]):
        raise fail("repo", f'must look like "owner/name", got {_show(entry["repo"])}.')
    filename = strings["filename"]
    if not filename.lower().endswith(".gguf"):
        raise fail("filename", f"must end with .gguf, got {_show(entry['filename'])}.")
    if filename.startswith("/") or "\\" in filename or ".." in filename.split("/"):
        raise fail("filename", f"must be a path inside the repository, got {_show(filename)}.")

    sha256: str | None = None
    if "sha256" in entry:
        value = entry["sha256"]
        if not isinstance(value, str) or not _SHA256_RE.match(value):
            raise fail("sha256", f"must be 64 hexadecimal digits, got {_show(value)}.")
        sha256 = value.lower()

    revision: str | None = None
    if "revision" in entry:
        value = entry["revision"]
        if not isinstance(value, str) or not _COMMIT_RE.match(value):
            raise fail(
                "revision", f"must be a commit id of 40 lowercase hex digits, got {_show(value)}."
            )
        revision = value

    sampling = _validate_sampling(entry["sampling"], fail) if "sampling" in entry else None

    return ModelSpec(
        id=strings["id"],
        name=strings["name"],
        family=strings["family"],
        repo=strings["repo"],
        filename=filename,
        quantization=strings["quantization"],
        size_bytes=_required(numbers["size_bytes"]),
        parameters=_required(numbers["parameters"]),
        context_length=_required(numbers["context_length"]),
        license=strings["license"],
        good_at=strings["good_at"],
        sha256=sha256,
        layers=numbers["layers"],
        kv_heads=numbers["kv_heads"],
        head_dim=numbers["head_dim"],
        revision=revision,
        sampling=sampling,
    )


def _validate_sampling(table: object, fail: Any) -> SamplingPreset:
    if not isinstance(table, dict):
        raise fail("sampling", "must be a table ([models.sampling]).")
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "source":
            if not isinstance(value, str) or not value.strip():
                raise fail("sampling.source", f"must be a non-empty string, got {_show(value)}.")
            continue
        if key not in _SAMPLING_RANGES:
            known = frozenset((*_SAMPLING_RANGES, "source"))
            raise fail(f"sampling.{key}", f"is not a sampling field{_did_you_mean(key, known)}.")
        low, high = _SAMPLING_RANGES[key]
        whole = key == "top_k"
        is_number = isinstance(value, int) if whole else isinstance(value, int | float)
        if isinstance(value, bool) or not is_number or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            raise fail(
                f"sampling.{key}", f"must be {kind} from {low:g} to {high:g}, got {_show(value)}."
            )
        values[key] = value if whole else float(value)
    if not values:
        raise fail("sampling", "names no sampling value.")
    source = str(table.get("source", "")).strip() or "the model's authors"
    return SamplingPreset(**values, source=source)


def _positive_int(value: object) -> int | None:
    """``value`` if it is an integer above zero, else None."""
    # TOML booleans arrive as bool, which Python counts as an int; they are never a number here.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None
    return value


def _required(value: int | None) -> int:
    if value is None:  # pragma: no cover - _validate_entry checked required fields already
        raise AssertionError("required catalog field missing after validation")
    return value


def _where(source: str, index: int, model_id: str | None) -> str:
    return f'{source}: entry {index} ("{model_id}")' if model_id else f"{source}: entry {index}"


def _did_you_mean(key: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _show(value: object) -> str:
    """A value as it would be written in the TOML file, shortened for a message."""
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, str | int | float):
        shown = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, list):
        shown = "an array"
    elif isinstance(value, dict):
        shown = "a table"
    else:
        shown = str(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _join_or(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
