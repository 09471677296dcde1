"""Small GGUF files made for tests with the ``gguf`` package (the format's reference writer)."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import gguf
import numpy as np


def write_unknown_architecture(path: Path, arch: str = "florp") -> Path:
    """A well-formed GGUF whose architecture no llama.cpp knows: its header reads fine, and
    llama.cpp refuses it with "unknown model architecture: '<arch>'"."""
    return _write_header_only(path, arch, "Florp 1B")


def write_without_vocabulary(path: Path) -> Path:
    """A well-formed GGUF of an architecture llama.cpp knows (llama) but with no vocabulary: its
    header reads fine, and llama.cpp refuses it for a reason of its own ("key not found in model:
    tokenizer.ggml.model"), neither an unknown architecture nor a damaged file."""
    return _write_header_only(path, "llama", "No Vocab")


def _write_header_only(path: Path, arch: str, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_name(name)
    writer.add_context_length(2048)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def with_sampling_metadata(source: Path, target: Path, values: dict[str, float | int]) -> Path:
    """A copy of the GGUF ``source`` whose header also carries ``general.sampling.*`` keys
    (``{"temp": 0.25, "top_k": 7}``), written the way llama.cpp's converter writes them."""
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(str(source))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(str(target), arch=arch, endianess=reader.endianess)
    alignment = reader.fields.get(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    new = {
        f"general.sampling.{name}": MetadataDetails(
            gguf.GGUFValueType.UINT32 if isinstance(value, int) else gguf.GGUFValueType.FLOAT32,
            value,
        )
        for name, value in values.items()
    }
    copy_with_new_metadata(reader, writer, new, [])
    return target


def write_small_runnable(
    path: Path, source: Path, *, padding: int = 0, without: Collection[str] = ()
) -> Path:
    """A GGUF of a few megabytes that llama.cpp accepts as ``source``'s architecture: every
    header key of ``source`` but those named in ``without`` (its vocabulary included, which is
    all a vocab-only load reads), a tiny stand-in tensor, and about ``padding`` bytes of zeros
    as a second tensor. Downloads check exactly that, so download tests can move this instead of
    the real model."""
    reader = gguf.GGUFReader(str(source))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=arch)
    for item in reader.fields.values():
        if item.name == gguf.Keys.General.ARCHITECTURE or item.name.startswith("GGUF."):
            continue  # the writer sets these itself
        if item.name in without:
            continue
        kind = item.types[0]
        sub = item.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(item.name, item.contents(), kind, sub_type=sub)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    if padding:
        writer.add_tensor("padding.weight", np.zeros(max(padding // 4, 1), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
