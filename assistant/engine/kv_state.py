"""One sequence of a llama.cpp context, copied out and back in; and what it depends on.

llama.cpp serializes a sequence's KV cells (``llama_state_seq_get_data``): only the cells in
use, not the whole context, so a 3,000-token chat of SmolLM2-135M is about 69 MB. The bytes are
only valid for the same model file and the same KV layout (context size, cache types, flash
attention, offload): :func:`context_fingerprint` names all of those.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
from pathlib import Path

import llama_cpp
from llama_cpp import Llama

SEQUENCE = 0
"""The engine keeps one conversation in sequence 0."""


def context_fingerprint(llama: Llama, model_path: Path, n_gpu_layers: int) -> str:
    """A hash of this model file (size, time, first MiB) and of every setting that changes
    what the KV cache holds or how it is laid out."""
    stat = model_path.stat()
    with open(model_path, "rb") as handle:
        head = hashlib.sha256(handle.read(1 << 20)).hexdigest()
    params = llama.context_params
    parts = {
        "model": [stat.st_size, stat.st_mtime_ns, head],
        "n_ctx": llama.n_ctx(),
        "kv": [params.type_k, params.type_v, params.flash_attn_type, params.swa_full],
        "rope": [params.rope_freq_base, params.rope_freq_scale, params.rope_scaling_type],
        "yarn": [params.yarn_ext_factor, params.yarn_attn_factor, params.yarn_orig_ctx],
        "offload": [n_gpu_layers, params.offload_kqv],
        "engine": llama_cpp.__version__,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def copy_out(llama: Llama) -> bytearray | None:
    """The sequence's state as bytes; None if llama.cpp gave none."""
    ctx = llama._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, SEQUENCE)
    data = bytearray(size)
    view = (ctypes.c_uint8 * size).from_buffer(data)
    written = llama_cpp.llama_state_seq_get_data(ctx, view, size, SEQUENCE)
    del view  # releases the buffer, so it may shrink
    if written <= 0:
        return None
    del data[written:]
    return data


def copy_in(llama: Llama, data: bytearray, held: int, keep: int) -> bool:
    """Replace the context with a saved state of ``held`` tokens and keep its first ``keep``.
    False, with the context emptied, when llama.cpp refuses the bytes (damaged, or from
    another build) or cannot drop the tail (a memory that only drops whole sequences)."""
    llama._ctx.kv_cache_clear()
    view = (ctypes.c_uint8 * len(data)).from_buffer(data)
    read = llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, view, len(data), SEQUENCE)
    del view
    memory = llama_cpp.llama_get_memory(llama._ctx.ctx)
    last = llama_cpp.llama_memory_seq_pos_max(memory, SEQUENCE)
    restored = read == len(data) and last == held - 1
    if restored and keep < held:
        restored = llama._ctx.kv_cache_seq_rm(SEQUENCE, keep, -1)
    if not restored:
        llama._ctx.kv_cache_clear()
    return bool(restored)
