"""Is this file a usable GGUF model? Read its header without loading the weights.

The reader parses the GGUF header (magic, version, metadata, tensor table) with ``struct`` and
skips over large arrays such as the vocabulary, so checking a multi-gigabyte file takes
milliseconds. It also checks that the tensor data the table promises is really in the file, which
catches truncated downloads before llama.cpp sees them.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from assistant.errors import (
    AssistantError,
    CorruptModelError,
    FileAccessError,
    InsufficientMemoryError,
    ModelFileMissingError,
    ModelLoadError,
    NotGGUFError,
    UnsupportedArchitectureError,
)
from assistant.paths import check_regular_file, file_error

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
# Metadata strings longer than this are not real metadata but a damaged length field.
_MAX_STRING = 64 * 1024 * 1024
_MAX_COUNT = 1 << 32

# GGUF metadata value types.
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: (elements per block, bytes per block). Used only to find the file's end.
_GGML_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 36),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
}


@dataclass(frozen=True)
class GGUFInfo:
    """What the header says about a model file."""

    path: Path
    version: int
    architecture: str
    name: str
    context_length: int | None
    chat_template: str | None
    file_size: int
    tensor_count: int
    layers: int | None = None
    kv_heads: int | None = None
    head_dim: int | None = None
    parameters: int | None = None
    """Weights in all tensors (from the tensor table)."""
    vocab_size: int | None = None
    embedding_length: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template and self.chat_template.strip())


class _Reader:
    def __init__(self, handle: BinaryIO, path: Path) -> None:
        self._handle = handle
        self._path = path

    def damaged(self, detail: str) -> CorruptModelError:
        return CorruptModelError(
            f"The model file {self._path.name} is damaged ({detail}).",
            hint="Download it again, or pick another file.",
        )

    def read(self, size: int) -> bytes:
        data = self._handle.read(size)
        if len(data) != size:
            raise CorruptModelError(
                f"The model file {self._path.name} is incomplete or damaged "
                "(its header ends early).",
                hint="Download it again, or pick another file.",
            )
        return data

    def tell(self) -> int:
        return self._handle.tell()

    def skip(self, size: int) -> None:
        self._handle.seek(size, 1)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self) -> int:
        value = int(self.unpack("<Q"))
        if value > _MAX_COUNT:
            raise self.damaged("an impossible count in its header")
        return value

    def string(self) -> str:
        length = self.count()
        if length > _MAX_STRING:
            raise self.damaged("an impossible text length")
        return self.read(length).decode("utf-8", errors="replace")

    def value(self, kind: int, *, keep: bool) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind = int(self.unpack("<I"))
            length = self.count()
            if not keep:
                self._skip_array(item_kind, length)
                return None
            return [self.value(item_kind, keep=True) for _ in range(length)]
        raise self.damaged(f"unknown metadata type {kind}")

    def _skip_array(self, item_kind: int, length: int) -> None:
        if item_kind in _SCALARS:
            self.skip(struct.calcsize(_SCALARS[item_kind]) * length)
        elif item_kind == _STRING:
            for _ in range(length):
                self.skip(self.count())
        else:
            for _ in range(length):
                self.value(item_kind, keep=False)


# Metadata kept in full; everything else large (vocabulary, merges) is skipped.
def _keep_key(key: str) -> bool:
    return not key.startswith("tokenizer.ggml.")


def read_gguf_info(path: Path | str) -> GGUFInfo:
    """Read and check a GGUF header. Raises a ``ModelFileError`` subclass with a plain sentence."""
    path = Path(path)
    info = check_model_path(path)
    file_size = info.st_size
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise file_error(path, exc, "the model file") from None
    with handle:
        return _parse(_Reader(handle, path), path, file_size)


def check_model_path(path: Path) -> os.stat_result:
    """Stat a model path and refuse, with the true cause, what cannot be a model file: a
    missing file, one without read permission, a symlink loop, a folder, a FIFO or a device
    (refused without opening it: reading a FIFO would wait forever)."""
    try:
        return check_regular_file(path, "the model file")
    except FileAccessError as exc:
        if type(exc) is FileAccessError and not path.exists() and not path.is_symlink():
            raise ModelFileMissingError(
                f"The model file {path} does not exist.",
                hint="Check the path, or download the model again.",
            ) from None
        raise


def _parse(reader: _Reader, path: Path, file_size: int) -> GGUFInfo:
    not_gguf = NotGGUFError(
        f"{path.name} is not a GGUF model file.",
        hint="Offline Assistant runs GGUF files (the format of llama.cpp); "
        "look for a file ending in .gguf on the model's Hub page.",
    )
    if file_size < 8:
        raise not_gguf
    if reader.read(4) != GGUF_MAGIC:
        raise not_gguf
    version = int(reader.unpack("<I"))
    if version not in SUPPORTED_VERSIONS:
        raise CorruptModelError(
            f"{path.name} uses GGUF version {version}, which this app cannot read.",
            hint="Get a current GGUF (version 2 or 3) of this model.",
        )
    tensor_count = reader.count()
    kv_count = reader.count()
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = reader.string()
        kind = int(reader.unpack("<I"))
        value = reader.value(kind, keep=_keep_key(key))
        if value is not None:
            metadata[key] = value

    data_end, parameters, vocab_rows = _tensor_data_end(reader, tensor_count, metadata)
    if data_end > file_size:
        missing = data_end - file_size
        raise CorruptModelError(
            f"The model file {path.name} is incomplete: {missing:,} bytes of its weights are "
            "missing (an interrupted download or copy).",
            hint="Download it again, or pick another file.",
        )

    architecture = str(metadata.get("general.architecture", "")).strip()
    if not architecture:
        raise CorruptModelError(
            f"{path.name} does not say which model architecture it holds.",
            hint="The file may be damaged or not a language model; pick another file.",
        )

    def arch_int(suffix: str) -> int | None:
        value = metadata.get(f"{architecture}.{suffix}")
        if isinstance(value, list):  # per-layer values in some models
            value = max(value) if value else None
        return int(value) if isinstance(value, int | float) else None

    heads = arch_int("attention.head_count")
    embedding = arch_int("embedding_length")
    head_dim = arch_int("attention.key_length")
    if head_dim is None and heads and embedding:
        head_dim = embedding // heads
    template = metadata.get("tokenizer.chat_template")
    return GGUFInfo(
        path=path,
        version=version,
        architecture=architecture,
        name=str(metadata.get("general.name") or path.stem),
        context_length=arch_int("context_length"),
        chat_template=template if isinstance(template, str) else None,
        file_size=file_size,
        tensor_count=tensor_count,
        layers=arch_int("block_count"),
        kv_heads=arch_int("attention.head_count_kv") or heads,
        head_dim=head_dim,
        parameters=parameters or None,
        vocab_size=arch_int("vocab_size") or vocab_rows,
        embedding_length=embedding,
        metadata=metadata,
    )


def _tensor_data_end(
    reader: _Reader, tensor_count: int, metadata: dict[str, Any]
) -> tuple[int, int, int | None]:
    """Byte offset where the last tensor's data ends, per the tensor table; also the number of
    weights and the vocabulary size (the token embedding's rows), for speed estimates."""
    furthest = 0
    parameters = 0
    vocab_rows: int | None = None
    for _ in range(tensor_count):
        name = reader.string()
        n_dims = int(reader.unpack("<I"))
        if n_dims > 8:
            raise reader.damaged("an impossible tensor shape")
        elements = 1
        dims = []
        for _dim in range(n_dims):
            dims.append(int(reader.unpack("<Q")))
            elements *= dims[-1]
        parameters += elements
        if name == "token_embd.weight" and len(dims) == 2:
            vocab_rows = dims[1]  # ggml lists the fastest-varying dimension (n_embd) first
        kind = int(reader.unpack("<I"))
        offset = int(reader.unpack("<Q"))
        block = _GGML_BLOCKS.get(kind)
        size = (elements // block[0]) * block[1] if block else 0
        furthest = max(furthest, offset + size)
    alignment = int(metadata.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    header_end = reader.tell()
    data_start = (header_end + alignment - 1) // alignment * alignment
    return data_start + furthest, parameters, vocab_rows


def check_supported(path: Path | str, info: GGUFInfo | None = None) -> GGUFInfo:
    """Ask this build of llama.cpp whether it can run the file, loading only its vocabulary.

    Raises ``UnsupportedArchitectureError`` naming the architecture, or another
    ``ModelFileError`` with the reason llama.cpp gave. Takes well under a second.
    """
    from assistant.engine import diagnose, llama_log

    diagnose.require_engine()
    import llama_cpp  # deferred: reading headers must not pay for loading llama.cpp

    path = Path(path)
    info = info or read_gguf_info(path)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    with llama_log.capture() as lines:
        model = llama_cpp.llama_model_load_from_file(str(path).encode("utf-8"), params)
    if model is None:
        raise explain_load_failure("".join(lines), info)
    llama_cpp.llama_model_free(model)
    return info


def explain_load_failure(log_text: str, info: GGUFInfo) -> AssistantError:
    """Turn what llama.cpp logged during a failed load into an error a user can act on."""
    lowered = log_text.lower()
    unknown = re.search(r"unknown model architecture: '([^']+)'", log_text)
    if unknown:
        arch = unknown.group(1)
        return UnsupportedArchitectureError(
            arch,
            f"{info.name} uses the '{arch}' architecture, which this version of the app's engine "
            "(llama.cpp) does not support.",
            hint="Update Offline Assistant, or pick another model.",
        )
    if any(word in lowered for word in ("failed to allocate", "unable to allocate", "out of mem")):
        return InsufficientMemoryError(
            f"There is not enough memory to load {info.name}.",
            hint="Close other programs, lower the context size, or pick a smaller model.",
        )
    if any(word in lowered for word in ("not within the file bounds", "corrupt", "failed to read")):
        return CorruptModelError(
            f"The model file {info.path.name} is damaged.",
            hint="Download it again, or pick another file.",
        )
    reason = next(
        (line.strip() for line in reversed(log_text.splitlines()) if "error" in line.lower()),
        "no reason given",
    )
    return ModelLoadError(
        f"The engine could not load {info.name} ({reason}).",
        hint="The file may need a newer version of the app; try another model.",
    )
