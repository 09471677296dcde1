"""Models of a catalog model's size and shape, with random weights, for timing only.

The speed prediction has to hold for the models people download (0.5–4B parameters), but the
test models are 135M and 270M, and there is no Hub here to fetch a bigger one. Speed does not
depend on what the weights say, only on their shape and quantization, so this writes a llama-
architecture GGUF of the wanted shape (random float16 weights, SmolLM2's tokenizer padded to
the wanted vocabulary) and lets llama.cpp quantize it as the catalog's file is (Q4_K_M or Q8_0).
Such a model answers gibberish at the speed the real one would.

The files are built once and kept in ``~/.cache/offline-assistant-bench`` (about 7 GB for
all six; ``--clean`` removes them). Building one takes a minute or two on two cores.

Usage: python benchmarks/shaped_models.py [NAME ...] [--clean]
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = Path.home() / ".cache" / "offline-assistant-bench"


@dataclass(frozen=True)
class Shape:
    """The sizes that set a transformer's cost per token."""

    label: str
    layers: int
    width: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


QWEN3_06B = Shape("Qwen3 0.6B shape", 28, 1024, 3072, 16, 8, 128, 151_936)
QWEN3_17B = Shape("Qwen3 1.7B shape", 28, 2048, 6144, 16, 8, 128, 151_936)
LLAMA32_1B = Shape("Llama 3.2 1B shape", 16, 2048, 8192, 32, 8, 64, 128_256)
LLAMA32_3B = Shape("Llama 3.2 3B shape", 28, 3072, 8192, 24, 8, 128, 128_256)

# Three catalog models' shapes (from their published configurations), in the catalog's
# quantizations: name -> (shape, llama.cpp file type).
SHAPES = {
    "qwen3-0.6b": (QWEN3_06B, "Q4_K_M"),
    "llama3.2-1b": (LLAMA32_1B, "Q4_K_M"),
    "qwen3-1.7b": (QWEN3_17B, "Q4_K_M"),
    "llama3.2-3b": (LLAMA32_3B, "Q4_K_M"),
    "qwen3-0.6b-q8_0": (QWEN3_06B, "Q8_0"),
    "qwen3-1.7b-q8_0": (QWEN3_17B, "Q8_0"),
}
FILE_TYPES = {"Q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "Q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0"}


def label(name: str) -> str:
    shape, quant = SHAPES[name]
    return f"{shape.label}, {quant}"


def path_for(name: str) -> Path:
    quant = SHAPES[name][1]
    stem = name.removesuffix("-" + quant.lower())
    return CACHE / f"{stem}-random-{quant.lower()}.gguf"


def ensure(name: str) -> Path:
    """The quantized file for ``name``, built first if it is not cached."""
    target = path_for(name)
    if not target.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        shape, quant = SHAPES[name]
        f16 = CACHE / f"{name}-random-f16.gguf"
        try:
            _write_f16(shape, f16)
            _quantize(f16, target, quant)
        finally:
            f16.unlink(missing_ok=True)
    return target


def _write_f16(shape: Shape, path: Path) -> None:
    import gguf
    import numpy as np

    from tests.support import smollm2_path

    reader = gguf.GGUFReader(str(smollm2_path()))
    tokens = list(reader.fields["tokenizer.ggml.tokens"].contents())
    types = list(reader.fields["tokenizer.ggml.token_type"].contents())
    merges = list(reader.fields["tokenizer.ggml.merges"].contents())
    extra = shape.vocab - len(tokens)
    tokens += [f"<pad_{i}>" for i in range(extra)]
    types += [gguf.TokenType.USER_DEFINED] * extra

    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name(shape.label)
    writer.add_context_length(8192)
    writer.add_embedding_length(shape.width)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_key_length(shape.head_dim)
    writer.add_value_length(shape.head_dim)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(shape.vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)

    rng = np.random.default_rng(0)

    def weights(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    ones = np.ones(shape.width, dtype=np.float32)
    writer.add_tensor("token_embd.weight", weights(shape.vocab, shape.width))
    writer.add_tensor("output_norm.weight", ones)
    for layer in range(shape.layers):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", ones)
        writer.add_tensor(prefix + "attn_q.weight", weights(q, shape.width))
        writer.add_tensor(prefix + "attn_k.weight", weights(kv, shape.width))
        writer.add_tensor(prefix + "attn_v.weight", weights(kv, shape.width))
        writer.add_tensor(prefix + "attn_output.weight", weights(shape.width, q))
        writer.add_tensor(prefix + "ffn_norm.weight", ones)
        writer.add_tensor(prefix + "ffn_gate.weight", weights(shape.ffn, shape.width))
        writer.add_tensor(prefix + "ffn_up.weight", weights(shape.ffn, shape.width))
        writer.add_tensor(prefix + "ffn_down.weight", weights(shape.width, shape.ffn))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _quantize(source: Path, target: Path, quant: str) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FILE_TYPES[quant])
    params.nthread = 0
    partial = target.with_suffix(".partial")
    status = llama_cpp.llama_model_quantize(
        str(source).encode(), str(partial).encode(), ctypes.byref(params)
    )
    if status != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not quantize {source.name} (status {status})")
    partial.replace(target)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", help="some of: " + ", ".join(SHAPES) + " (default: all)"
    )
    parser.add_argument("--clean", action="store_true", help="remove the cached files")
    args = parser.parse_args()
    if args.clean:
        shutil.rmtree(CACHE, ignore_errors=True)
        return 0
    unknown = set(args.names) - set(SHAPES)
    if unknown:
        parser.error(f"unknown shape(s): {', '.join(sorted(unknown))}")
    for name in args.names or SHAPES:
        print(f"{name}: {ensure(name)} ({path_for(name).stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
