"""Hardware detection, memory estimates, fit verdicts and the recommendation.

Machines are constructed :class:`Hardware` values; only one test measures this computer.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from assistant.models.catalog import Catalog, ModelSpec, load_catalog
from assistant.models.hardware import (
    GIB,
    MIB,
    OVERHEAD_FIXED_BYTES,
    Hardware,
    MemoryEstimate,
    detect_hardware,
    estimate_for_spec,
    estimate_memory,
    fit_for_spec,
    fit_label,
    fit_verdict,
    recommend,
)


def _machine(total_gib: float, available_gib: float | None = None) -> Hardware:
    total = int(total_gib * GIB)
    available = total // 2 if available_gib is None else int(available_gib * GIB)
    return Hardware(
        total_ram=total,
        available_ram=available,
        physical_cores=4,
        logical_cores=8,
        gpu_offload=False,
    )


def _spec(
    model_id: str,
    parameters: int,
    size_bytes: int,
    *,
    context_length: int = 32768,
    layers: int | None = None,
    kv_heads: int | None = None,
    head_dim: int | None = None,
) -> ModelSpec:
    return ModelSpec(
        id=model_id,
        name=model_id,
        family="Test",
        repo=f"test/{model_id}",
        filename=f"{model_id}.gguf",
        quantization="Q4_K_M",
        size_bytes=size_bytes,
        parameters=parameters,
        context_length=context_length,
        license="apache-2.0",
        good_at="tests",
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
    )


# --- detection -----------------------------------------------------------------------------------


def test_detect_hardware_reports_this_machine() -> None:
    hw = detect_hardware()
    assert hw.total_ram > 256 * MIB
    assert 0 < hw.available_ram <= hw.total_ram
    assert hw.logical_cores >= hw.physical_cores >= 1
    assert isinstance(hw.gpu_offload, bool)


# --- estimates -----------------------------------------------------------------------------------


def test_kv_cache_is_exact_with_architecture_numbers() -> None:
    # Llama 3.2 1B: 16 layers, 8 KV heads of 64 dims; f16 K and V for 4096 tokens = 128 MiB.
    estimate = estimate_memory(807_694_464, 4096, layers=16, kv_heads=8, head_dim=64)
    assert estimate.kv_cache == 2 * 16 * 4096 * 8 * 64 * 2 == 128 * MIB
    assert estimate.weights == 807_694_464
    assert estimate.overhead >= OVERHEAD_FIXED_BYTES
    assert estimate.total == estimate.weights + estimate.kv_cache + estimate.overhead


@pytest.mark.parametrize(
    "arch",
    [
        {"layers": 28, "kv_heads": 8, "head_dim": 128},
        {"layers": None, "kv_heads": None, "head_dim": None, "parameters": 3_000_000_000},
        {"layers": 28, "kv_heads": None, "head_dim": 128},  # incomplete: falls back to heuristic
        {"layers": None, "kv_heads": None, "head_dim": None},  # only the file size is known
    ],
)
def test_estimate_grows_with_context(arch: dict[str, int | None]) -> None:
    sizes = [estimate_memory(2 * GIB, n_ctx, **arch) for n_ctx in (512, 2048, 8192, 32768)]
    assert all(a.kv_cache < b.kv_cache for a, b in itertools.pairwise(sizes))
    assert all(a.total < b.total for a, b in itertools.pairwise(sizes))
    assert len({(e.weights, e.overhead) for e in sizes}) == 1  # only the KV cache depends on n_ctx


def test_heuristic_kv_grows_with_model_size_and_is_on_the_safe_side() -> None:
    def heuristic(parameters: int) -> int:
        return estimate_memory(
            GIB, 4096, layers=None, kv_heads=None, head_dim=None, parameters=parameters
        ).kv_cache

    assert heuristic(135_000_000) < heuristic(1_500_000_000) < heuristic(4_000_000_000)
    # For grouped-query models (most of the catalog) the guess is well above the exact figure.
    exact = estimate_memory(GIB, 4096, layers=28, kv_heads=8, head_dim=128).kv_cache
    assert heuristic(3_212_749_824) > exact


def test_heuristic_without_parameters_uses_file_size() -> None:
    small = estimate_memory(100 * MIB, 4096, layers=None, kv_heads=None, head_dim=None)
    large = estimate_memory(2 * GIB, 4096, layers=None, kv_heads=None, head_dim=None)
    assert small.kv_cache < large.kv_cache


def test_overhead_grows_with_weights() -> None:
    small = estimate_memory(100 * MIB, 1024, layers=1, kv_heads=1, head_dim=64)
    large = estimate_memory(4 * GIB, 1024, layers=1, kv_heads=1, head_dim=64)
    assert small.overhead < large.overhead


@pytest.mark.parametrize(("size", "n_ctx"), [(0, 4096), (-1, 4096), (GIB, 0), (GIB, -10)])
def test_estimate_rejects_nonsense(size: int, n_ctx: int) -> None:
    with pytest.raises(ValueError):
        estimate_memory(size, n_ctx, layers=16, kv_heads=8, head_dim=64)


def test_estimate_for_spec_defaults_to_4096_capped_by_the_model() -> None:
    long = _spec("long", 1_000_000_000, GIB, layers=16, kv_heads=8, head_dim=64)
    short = replace(long, id="short", context_length=2048)

    def kv(n_ctx: int) -> int:
        return estimate_memory(GIB, n_ctx, layers=16, kv_heads=8, head_dim=64).kv_cache

    assert estimate_for_spec(long).kv_cache == kv(4096)
    assert estimate_for_spec(short).kv_cache == kv(2048)
    assert estimate_for_spec(long, 16384).kv_cache == kv(16384)
    assert estimate_for_spec(short, 16384).kv_cache == kv(2048)  # never past the trained context
    assert estimate_for_spec(long, 1024).total < estimate_for_spec(long, 8192).total


def test_estimate_for_spec_uses_parameters_when_architecture_is_unknown() -> None:
    spec = _spec("plain", 3_000_000_000, 2 * GIB)
    expected = estimate_memory(
        2 * GIB, 4096, layers=None, kv_heads=None, head_dim=None, parameters=3_000_000_000
    )
    assert estimate_for_spec(spec) == expected


def test_packaged_models_have_plausible_estimates() -> None:
    for spec in load_catalog():
        estimate = estimate_for_spec(spec)
        assert isinstance(estimate, MemoryEstimate)
        assert spec.size_bytes < estimate.total < spec.size_bytes + 2 * GIB


# --- verdicts ------------------------------------------------------------------------------------


def test_fit_verdict_thresholds() -> None:
    hw = _machine(total_gib=8, available_gib=4)
    assert fit_verdict(3 * GIB, hw) == "fits"  # within 80% of the 4 GiB free
    assert fit_verdict(int(3.3 * GIB), hw) == "tight"  # above 3.2 GiB, within 85% of 8 GiB
    assert fit_verdict(int(6.8 * GIB), hw) == "tight"
    assert fit_verdict(7 * GIB, hw) == "wont_fit"


def test_verdicts_on_small_and_large_machines() -> None:
    catalog = load_catalog()
    smallest = catalog.get("smollm2-135m-instruct")
    biggest = catalog.get("phi-3.5-mini-instruct")

    old_laptop = _machine(total_gib=4, available_gib=1.5)
    assert fit_for_spec(smallest, old_laptop) == "fits"
    assert fit_for_spec(biggest, old_laptop) == "wont_fit"

    busy_laptop = _machine(total_gib=8, available_gib=2)
    assert fit_for_spec(biggest, busy_laptop) == "tight"

    workstation = _machine(total_gib=32, available_gib=24)
    assert {fit_for_spec(spec, workstation) for spec in catalog} == {"fits"}

    # A long context turns a fitting model into one that does not.
    assert fit_for_spec(biggest, _machine(16, 10), n_ctx=4096) == "fits"
    assert fit_for_spec(biggest, _machine(16, 10), n_ctx=131072) == "wont_fit"


def test_fit_labels() -> None:
    assert fit_label("fits") == "fits"
    assert fit_label("tight") == "tight"
    assert fit_label("wont_fit") == "won't fit"


# --- recommendation ------------------------------------------------------------------------------


def test_recommend_picks_a_bigger_model_on_a_bigger_machine() -> None:
    catalog = load_catalog()
    small = recommend(catalog, _machine(total_gib=4, available_gib=2))
    large = recommend(catalog, _machine(total_gib=32, available_gib=24))
    assert small is not None and large is not None
    assert small.parameters < large.parameters
    assert large.parameters == max(spec.parameters for spec in catalog)
    for hw in (_machine(4, 2), _machine(32, 24)):
        choice = recommend(catalog, hw)
        assert choice is not None and fit_for_spec(choice, hw) == "fits"


def test_recommend_returns_none_on_a_tiny_machine() -> None:
    assert recommend(load_catalog(), _machine(total_gib=0.5, available_gib=0.25)) is None


def test_recommend_never_picks_a_tight_model() -> None:
    catalog = Catalog([_spec("small", 500_000_000, 300 * MIB), _spec("big", 4 * 10**9, 3 * GIB)])
    hw = _machine(total_gib=8, available_gib=2)
    assert fit_for_spec(catalog.get("big"), hw) == "tight"
    choice = recommend(catalog, hw)
    assert choice is not None and choice.id == "small"


def test_recommend_is_deterministic_and_ties_go_to_the_smaller_id() -> None:
    specs = [_spec(name, 1_000_000_000, 600 * MIB) for name in ("beta", "alpha", "gamma")]
    hw = _machine(total_gib=16, available_gib=8)
    for order in (specs, specs[::-1]):
        choice = recommend(Catalog(order), hw)
        assert choice is not None and choice.id == "alpha"


def test_recommend_respects_the_context_size() -> None:
    catalog = load_catalog()
    hw = _machine(total_gib=8, available_gib=5)
    short = recommend(catalog, hw, n_ctx=2048)
    long = recommend(catalog, hw, n_ctx=131072)
    assert short is not None and long is not None
    assert long.parameters <= short.parameters
