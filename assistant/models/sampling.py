"""Which sampling suits a model: its authors' recommendation, from the catalog or the file.

A catalog entry carries the values its authors publish (``[models.sampling]`` in
``models.toml``). A GGUF file may carry them too, as ``general.sampling.*`` metadata (the keys
llama.cpp's ``gguf`` writer defines); that is what an imported model offers. A catalog entry wins
over the file: it was checked by hand. Without either, the app's own defaults apply.

Which of these values an answer really uses is decided by
:meth:`assistant.engine.base.GenerationSettings.merged`: a value the user set wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.engine.base import SamplingPreset
from assistant.errors import AssistantError

if TYPE_CHECKING:
    from assistant.models.catalog import Catalog, ModelSpec
    from assistant.models.gguf_file import GGUFInfo

# GGUF metadata key -> preset field (gguf-py's Keys.General.SAMPLING_*).
GGUF_SAMPLING_KEYS: dict[str, str] = {
    "general.sampling.temp": "temperature",
    "general.sampling.top_p": "top_p",
    "general.sampling.top_k": "top_k",
    "general.sampling.min_p": "min_p",
    "general.sampling.penalty_repeat": "repeat_penalty",
}
FROM_FILE = "the model file"

# The ranges a recommendation must lie in to be believed (the settings' own ranges, a little
# wider): a damaged or odd header must not hand the sampler nonsense.
_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "top_k": (0, 1000),
    "min_p": (0.0, 1.0),
    "repeat_penalty": (0.5, 2.0),
}


def preset_from_values(values: Mapping[str, Any], source: str) -> SamplingPreset | None:
    """A preset of the fields in ``values`` that are numbers within range; None if none is."""
    kept: dict[str, float | int] = {}
    for name, (low, high) in _RANGES.items():
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value) or not low <= value <= high:
            continue
        kept[name] = int(value) if name == "top_k" else round(float(value), 4)
    return SamplingPreset(**kept, source=source) if kept else None  # type: ignore[arg-type]


def preset_from_metadata(metadata: Mapping[str, Any]) -> SamplingPreset | None:
    """The recommendation a GGUF header carries, if any."""
    values = {field: metadata.get(key) for key, field in GGUF_SAMPLING_KEYS.items()}
    return preset_from_values(values, FROM_FILE)


def spec_for_file(catalog: Catalog, path: Path, size: int | None = None) -> ModelSpec | None:
    """The catalog entry whose file this is, judged by name and size (no hashing)."""
    size = path.stat().st_size if size is None else size
    return next(
        (spec for spec in catalog if spec.filename == path.name and spec.size_bytes == size), None
    )


def sampling_for_file(info: GGUFInfo, catalog: Catalog | None = None) -> SamplingPreset | None:
    """The recommendation for the model in a GGUF file: its catalog entry's, else the file's."""
    if catalog is not None:
        spec = spec_for_file(catalog, info.path, info.file_size)
        if spec is not None and spec.sampling:
            return spec.sampling
    return preset_from_metadata(info.metadata)


def sampling_for_model(
    catalog: Catalog,
    *,
    model_id: str,
    path: Path,
    repo: str | None = None,
    filename: str | None = None,
) -> SamplingPreset | None:
    """The recommendation for an installed model: by its catalog id or its repository file,
    else by reading its header (milliseconds). A file that cannot be read recommends nothing."""
    spec = catalog.find_by_file(repo, filename) if repo and filename else None
    if spec is None and model_id in catalog:
        spec = catalog.get(model_id)
    if spec is not None and spec.sampling:
        return spec.sampling
    from assistant.models.gguf_file import read_gguf_info

    try:
        return sampling_for_file(read_gguf_info(path), catalog)
    except (AssistantError, OSError):
        return None


__all__ = [
    "FROM_FILE",
    "GGUF_SAMPLING_KEYS",
    "preset_from_metadata",
    "preset_from_values",
    "sampling_for_file",
    "sampling_for_model",
    "spec_for_file",
]
