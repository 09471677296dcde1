"""Small GGUF files made for tests with the ``gguf`` package (the format's reference writer)."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np


def write_unknown_architecture(path: Path, arch: str = "florp") -> Path:
    """A well-formed GGUF whose architecture no llama.cpp knows: its header reads fine, and
    llama.cpp refuses it with "unknown model architecture: '<arch>'"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=arch)
    writer.add_name("Florp 1B")
    writer.add_context_length(2048)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
