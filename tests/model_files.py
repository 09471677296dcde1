"""Small GGUF files made for tests with the ``gguf`` package (the format's reference writer)."""

from __future__ import annotations

import mmap
import shutil
import struct
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


# Header keys of the source that describe its network, not its tokenizer: the tiny model
# writes its own. ``general.alignment`` would misplace the tiny model's tensors.
_NETWORK_KEYS = ("general.name", "general.size_label", "general.file_type", "general.alignment")

# ``write_tiny_llama``'s ``end_lift`` at which its default network ends some answers by
# itself, at lengths that vary with the prompt and the seed (tuned by hand: at 2,000 every
# greedy answer is empty, at 1,200 few answers end).
ENDS_ANSWERS = 1400.0

# Bytes of each fixed-size GGUF value type (gguf.GGUFValueType); strings and arrays vary.
_VALUE_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(data: memoryview, at: int, kind: int) -> int:
    """Where the GGUF value of type ``kind`` starting at ``at`` ends."""
    if kind in _VALUE_SIZES:
        return at + _VALUE_SIZES[kind]
    if kind == gguf.GGUFValueType.STRING:
        (length,) = struct.unpack_from("<Q", data, at)
        return at + 8 + length
    item, count = struct.unpack_from("<IQ", data, at)  # an array
    at += 12
    if item in _VALUE_SIZES:
        return at + count * _VALUE_SIZES[item]
    for _ in range(count):
        at = _skip_value(data, at, item)
    return at


def _header_entries(source: Path) -> dict[str, bytes]:
    """Every key-value entry of a little-endian GGUF header, as the file encodes it (key,
    type and value), by key. Copied as bytes: ``gguf.GGUFReader`` takes seconds to decode a
    vocabulary of 49,152 tokens and 48,900 merges into Python objects."""
    entries: dict[str, bytes] = {}
    with source.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as m:
        data = memoryview(m)
        try:
            (count,) = struct.unpack_from("<Q", data, 16)  # after magic, version, tensor count
            at = 24
            for _ in range(count):
                (length,) = struct.unpack_from("<Q", data, at)
                key = bytes(data[at + 8 : at + 8 + length]).decode("utf-8")
                (kind,) = struct.unpack_from("<I", data, at + 8 + length)
                end = _skip_value(data, at + 12 + length, kind)
                entries[key] = bytes(data[at:end])
                at = end
        finally:
            data.release()
    return entries


def _array_length(entry: bytes) -> int:
    """How many items the array in a raw header entry holds."""
    (length,) = struct.unpack_from("<Q", entry, 0)
    return int(struct.unpack_from("<Q", entry, 8 + length + 8)[0])


def _scalar(entry: bytes) -> int:
    """The unsigned 32-bit value of a raw header entry (a token id)."""
    (length,) = struct.unpack_from("<Q", entry, 0)
    return int(struct.unpack_from("<I", entry, 8 + length + 4)[0])


def write_tiny_llama(
    path: Path,
    source: Path,
    *,
    seed: int = 0,
    blocks: int = 2,
    embedding: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    feed_forward: int = 128,
    context: int = 2048,
    embedding_std: float = 0.15,
    block_gain: float = 8.0,
    end_lift: float = 0.0,
) -> Path:
    """A runnable ``llama`` GGUF of about 8 MB for tests that need a real model but not a
    good one (the engine's quick lane, mutation runs): ``source``'s tokenizer, vocabulary,
    merges, chat template and special tokens (every header key of ``source`` but its
    network's), with a tiny network of pseudo-random weights drawn from ``seed``. It says
    nothing sensible, but it decodes many times faster than SmolLM2-135M, gives the same
    text twice at temperature 0 and different text per seed when sampling. The same
    arguments write the same bytes. Its babble does not always read back as the same tokens
    once turned into text (a real model's answers mostly do): a test of the KV cache across
    turns should write the assistant's turns itself.

    With ``end_lift`` 0, no answer ends by itself (each runs to ``max_tokens``); with
    ``ENDS_ANSWERS``, some end after a few to a few hundred tokens and some not within 200,
    depending on the prompt and the seed; some greedy answers are then empty.

    The output layer is the token embedding (tied, as in SmolLM2: no ``output.weight``), so
    the file is mostly that embedding, in f16. Two scales keep the babble varied. The
    embedding's spread (``embedding_std``) is also the logits' spread: wider, and sampling
    at temperature 1 always picks the top token. The blocks' output projections have
    ``block_gain`` times unit gain so that what the blocks add outweighs the token's own
    embedding in the residual stream; with a weaker network, the tied output predicts the
    last token again ("excite excite excite"), and greedy answers fall sooner into loops."""
    copied = {
        key: entry
        for key, entry in _header_entries(source).items()
        if not key.startswith(("GGUF.", "llama.")) and key != gguf.Keys.General.ARCHITECTURE
        if key not in _NETWORK_KEYS
    }
    vocab = _array_length(copied[gguf.Keys.Tokenizer.LIST])
    head_dim = embedding // heads
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch="llama")
    writer.add_name(f"Tiny llama (seed {seed})")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_vocab_size(vocab)
    writer.add_context_length(context)
    writer.add_embedding_length(embedding)
    writer.add_feed_forward_length(feed_forward)
    writer.add_block_count(blocks)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)

    rng = np.random.default_rng(seed)

    def matrix(rows: int, columns: int, gain: float = 1.0) -> np.ndarray:
        # numpy's (rows, columns) is ggml's ne = [columns, rows]: ``columns`` is the input.
        weights = rng.standard_normal((rows, columns), dtype=np.float32)
        return weights * np.float32(gain / np.sqrt(columns))

    ones = np.ones(embedding, dtype=np.float32)
    embed = rng.standard_normal((vocab, embedding), dtype=np.float32) * np.float32(embedding_std)
    # Dimension 0 is always on: every token has the same value there and no block writes to
    # it, so the final hidden state always has it. The end-of-answer token has twice that
    # value, and the output norm's gain on dimension 0 (``end_lift``) lifts its logit above
    # the others' (whose lift, all the same, changes nothing).
    embed[:, 0] = embedding_std
    embed[_scalar(copied[gguf.Keys.Tokenizer.EOS_ID]), 0] *= 2
    writer.add_tensor("token_embd.weight", embed.astype(np.float16))
    for block in range(blocks):
        prefix = f"blk.{block}"
        writer.add_tensor(f"{prefix}.attn_norm.weight", ones)
        writer.add_tensor(f"{prefix}.attn_q.weight", matrix(heads * head_dim, embedding))
        writer.add_tensor(f"{prefix}.attn_k.weight", matrix(kv_heads * head_dim, embedding))
        writer.add_tensor(f"{prefix}.attn_v.weight", matrix(kv_heads * head_dim, embedding))
        attn_output = matrix(embedding, heads * head_dim, block_gain)
        attn_output[0] = 0
        writer.add_tensor(f"{prefix}.attn_output.weight", attn_output)
        writer.add_tensor(f"{prefix}.ffn_norm.weight", ones)
        writer.add_tensor(f"{prefix}.ffn_gate.weight", matrix(feed_forward, embedding))
        writer.add_tensor(f"{prefix}.ffn_up.weight", matrix(feed_forward, embedding))
        ffn_down = matrix(embedding, feed_forward, block_gain)
        ffn_down[0] = 0
        writer.add_tensor(f"{prefix}.ffn_down.weight", ffn_down)
    output_norm = ones.copy()
    output_norm[0] = end_lift
    writer.add_tensor("output_norm.weight", output_norm)
    written = len(writer.kv_data[0])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    assert writer.fout is not None
    # The copied entries follow the writer's own; the writer pads the tensor data from where
    # the file then is, so the data stays aligned.
    writer.fout[0].write(b"".join(copied.values()))
    writer.write_tensors_to_file()
    writer.close()
    with path.open("r+b") as handle:  # the key count, after magic, version and tensor count
        handle.seek(16)
        handle.write(struct.pack("<Q", written + len(copied)))
    return path


def without_chat_template(model_path: Path, target: Path) -> Path:
    """A copy of the model whose chat template key is renamed (same length), as in a base
    model that ships none."""
    shutil.copyfile(model_path, target)
    data = bytearray(target.read_bytes()[:4_000_000])
    key = b"tokenizer.chat_template"
    at = data.find(key)
    assert at > 0
    with target.open("r+b") as handle:
        handle.seek(at)
        handle.write(b"tokenizer.xhat_template")
    return target


def quantize_q8(source: Path, path: Path) -> Path:
    """``source`` with its weights quantized to Q8_0 (llama.cpp's own quantizer), at ``path``.

    A quantized model's batches give, row for row, the logits of single-token decoding on every
    processor (its rows are read the same way either way); an f16 or f32 one's do not where the
    processor has kernels of its own for batches (AVX-512), and the engine then does not draft.
    """
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    path.parent.mkdir(parents=True, exist_ok=True)
    failed = llama_cpp.llama_model_quantize(
        str(source).encode(), str(path).encode(), ctypes.byref(params)
    )
    if failed:
        raise RuntimeError(f"llama.cpp could not quantize {source} (status {failed})")
    return path
