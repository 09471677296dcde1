"""What this computer has, how much memory a model needs, and whether it fits.

Everything except :func:`detect_hardware` is a pure function of a :class:`Hardware` value, so the
model picker, the CLI and the tests can ask "would this fit on an 8 GB laptop?" without owning one.

The estimate is for system RAM. With GPU offload the weights move to video memory instead, but a
laptop's integrated GPU shares system RAM and llama.cpp still maps the file, so RAM stays the
honest budget to judge by.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import psutil

from assistant.models.catalog import ModelSpec

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# Context used for estimates when the caller names none: what a chat really needs, not the
# 128K some models were trained for (their KV cache alone would outgrow most laptops).
DEFAULT_ESTIMATE_CTX = 4096

# KV cache: llama.cpp keeps K and V for every layer and token, in f16 by default.
KV_BYTES_PER_VALUE = 2

# When a model's architecture numbers are unknown, budget the KV cache per token as a base plus a
# share per billion parameters. Across the catalog's models the exact figure runs from 22 KiB per
# token (SmolLM2 135M) through 112 KiB (Qwen3 0.6B, Llama 3.2 3B) and 192 KiB (SmolLM2 1.7B, full
# multi-head attention) to 384 KiB (Phi-3.5 mini, also full multi-head, 3.8B). 48 KiB plus 96 KiB
# per billion lies on or above nearly all of them: an upper envelope, because guessing low is what
# turns a "fits" into a swapping machine.
HEURISTIC_KV_BASE_BYTES_PER_TOKEN = 48 * KIB
HEURISTIC_KV_BYTES_PER_TOKEN_PER_BILLION = 96 * KIB
# Without a parameter count either, infer it from the file: Q4_K_M averages about 4.8 bits per
# weight, and most catalog files are Q4_K_M or smaller per weight.
HEURISTIC_BITS_PER_WEIGHT = 4.8

# Overhead beyond weights and KV cache: llama.cpp compute buffers (they grow with the batch size
# and the vocabulary, a few hundred MB for these models at the default batch), the output logits,
# the tokenizer and the allocator's slack. A fixed part plus a small share of the weights.
OVERHEAD_FIXED_BYTES = 256 * MIB
OVERHEAD_WEIGHTS_FRACTION = 0.05

# Verdict thresholds.
# "fits": the model takes at most 80% of the memory free right now, leaving room for the app,
# the browser the user has open and the growth of the conversation.
FITS_AVAILABLE_FRACTION = 0.80
# "tight": it would fit in 85% of all RAM, so it runs if the user closes other programs (or the
# system swaps, slowly). The last 15% belongs to the operating system.
TIGHT_TOTAL_FRACTION = 0.85

Fit = Literal["fits", "tight", "wont_fit"]

_FIT_LABELS: dict[Fit, str] = {"fits": "fits", "tight": "tight", "wont_fit": "won't fit"}


@dataclass(frozen=True)
class Hardware:
    """What the machine offers. Sizes in bytes."""

    total_ram: int
    available_ram: int
    physical_cores: int
    logical_cores: int
    gpu_offload: bool


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs: its weights, its KV cache at one context size, and overhead."""

    weights: int
    kv_cache: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.overhead


def detect_hardware() -> Hardware:
    """Measure this machine now (available memory changes from one call to the next)."""
    memory = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True) or os.cpu_count() or 1
    # psutil cannot always count physical cores (some VMs, some BSDs); assume no SMT then.
    physical = psutil.cpu_count(logical=False) or logical
    return Hardware(
        total_ram=int(memory.total),
        available_ram=int(memory.available),
        physical_cores=physical,
        logical_cores=logical,
        gpu_offload=_llama_supports_gpu_offload(),
    )


def _llama_supports_gpu_offload() -> bool:
    """Whether the installed llama.cpp build can offload layers to a GPU (CUDA, Metal, Vulkan...).

    Imported lazily: loading llama.cpp's shared library is slow, and a missing or broken build
    must not stop the rest of the app from answering "what fits here?".
    """
    from assistant.engine import diagnose

    known = diagnose.known_report()
    if known is not None:  # checked already, perhaps found unable to load at all
        return bool(known.usable and known.gpu_offload)
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # ImportError, OSError from a broken shared library, a missing symbol
        return False


def estimate_memory(
    size_bytes: int,
    n_ctx: int,
    *,
    layers: int | None,
    kv_heads: int | None,
    head_dim: int | None,
    parameters: int | None = None,
) -> MemoryEstimate:
    """Memory to run a GGUF file of ``size_bytes`` with a context of ``n_ctx`` tokens.

    With the architecture numbers the KV cache is exact for llama.cpp's default f16 cache:
    ``2 (K and V) * layers * n_ctx * kv_heads * head_dim * 2 bytes``. Without them it is budgeted
    from the parameter count (or, lacking that, from the file size); see the HEURISTIC constants.
    """
    if size_bytes <= 0:
        raise ValueError(f"size_bytes must be positive, got {size_bytes}")
    if n_ctx <= 0:
        raise ValueError(f"n_ctx must be positive, got {n_ctx}")

    if layers and kv_heads and head_dim:
        kv_cache = 2 * layers * n_ctx * kv_heads * head_dim * KV_BYTES_PER_VALUE
    else:
        if parameters is None or parameters <= 0:
            parameters = int(size_bytes * 8 / HEURISTIC_BITS_PER_WEIGHT)
        per_token = HEURISTIC_KV_BASE_BYTES_PER_TOKEN + int(
            parameters / 1e9 * HEURISTIC_KV_BYTES_PER_TOKEN_PER_BILLION
        )
        kv_cache = per_token * n_ctx

    overhead = OVERHEAD_FIXED_BYTES + int(size_bytes * OVERHEAD_WEIGHTS_FRACTION)
    return MemoryEstimate(weights=size_bytes, kv_cache=kv_cache, overhead=overhead)


def estimate_for_spec(spec: ModelSpec, n_ctx: int | None = None) -> MemoryEstimate:
    """:func:`estimate_memory` for a catalog model.

    ``n_ctx`` defaults to ``min(spec.context_length, 4096)``; a larger request is capped at the
    model's trained context, which is the most the engine will allocate for it.
    """
    if n_ctx is None:
        n_ctx = DEFAULT_ESTIMATE_CTX
    n_ctx = min(n_ctx, spec.context_length)
    return estimate_memory(
        spec.size_bytes,
        n_ctx,
        layers=spec.layers,
        kv_heads=spec.kv_heads,
        head_dim=spec.head_dim,
        parameters=spec.parameters,
    )


def estimate_for_size(size_bytes: int, n_ctx: int | None = None) -> MemoryEstimate:
    """:func:`estimate_memory` for a file known only by its size (an import, any Hub file).

    ``n_ctx`` defaults to ``DEFAULT_ESTIMATE_CTX``; the KV cache is budgeted from the size.
    """
    return estimate_memory(
        size_bytes,
        DEFAULT_ESTIMATE_CTX if n_ctx is None else n_ctx,
        layers=None,
        kv_heads=None,
        head_dim=None,
    )


def fit_verdict(estimate_total: int, hw: Hardware) -> Fit:
    """Whether a model needing ``estimate_total`` bytes runs comfortably on ``hw``.

    ``fits`` within 80% of the RAM available now; ``tight`` within 85% of all RAM (close other
    programs first, or expect swapping); otherwise ``wont_fit``.
    """
    if estimate_total <= hw.available_ram * FITS_AVAILABLE_FRACTION:
        return "fits"
    if estimate_total <= hw.total_ram * TIGHT_TOTAL_FRACTION:
        return "tight"
    return "wont_fit"


def fit_for_spec(spec: ModelSpec, hw: Hardware, n_ctx: int | None = None) -> Fit:
    """Shorthand for ``fit_verdict(estimate_for_spec(spec, n_ctx).total, hw)``."""
    return fit_verdict(estimate_for_spec(spec, n_ctx).total, hw)


def fit_for_size(size_bytes: int, hw: Hardware, n_ctx: int | None = None) -> Fit:
    """Shorthand for ``fit_verdict(estimate_for_size(size_bytes, n_ctx).total, hw)``."""
    return fit_verdict(estimate_for_size(size_bytes, n_ctx).total, hw)


def fit_label(fit: Fit) -> str:
    """The words to show for a verdict: "fits", "tight", "won't fit"."""
    return _FIT_LABELS[fit]


def recommend(
    catalog: Iterable[ModelSpec],
    hw: Hardware,
    n_ctx: int | None = None,
    *,
    speed: Callable[[ModelSpec], float] | None = None,
    min_tokens_per_s: float = 0.0,
) -> ModelSpec | None:
    """The most capable catalog model that fits comfortably on ``hw`` and, given ``speed``
    (expected tokens/s of a model here), answers at least ``min_tokens_per_s``; None if none
    does.

    Capability is judged by parameter count, which for these instruction-tuned families of
    similar vintage tracks answer quality well. Only "fits" counts (never "tight"), so the
    recommendation leaves the user's other programs their memory. Ties go to the smaller id, so
    the answer is the same on every run.
    """
    fitting = [spec for spec in catalog if fit_for_spec(spec, hw, n_ctx) == "fits"]
    if speed is not None:
        fitting = [spec for spec in fitting if speed(spec) >= min_tokens_per_s]
    if not fitting:
        return None
    return min(fitting, key=lambda spec: (-spec.parameters, spec.id))
