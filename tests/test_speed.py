"""Expected speed: predictions for every model, recommending by them, learning from answers."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.engine.base import GenerationStats
from assistant.models.catalog import Catalog, load_catalog
from assistant.models.gguf_file import read_gguf_info
from assistant.models.hardware import GIB, Hardware, detect_hardware
from assistant.models.speed import (
    MachineProfile,
    SpeedEstimator,
    SpeedFactors,
    SpeedRecorder,
    ensure_profile,
    load_profile,
    raw_rates,
    recommend_by_speed,
    save_profile,
    shape_for_gguf,
    shape_for_spec,
)
from assistant.paths import app_paths

BIG_MEMORY = Hardware(
    total_ram=64 * GIB,
    available_ram=48 * GIB,
    physical_cores=4,
    logical_cores=8,
    gpu_offload=False,
)


def _profile(hw: Hardware, read_gbps: float, gflops: float) -> MachineProfile:
    from assistant.models.speed import fingerprint

    return MachineProfile(
        read_gbps_1=read_gbps / 2,
        read_gbps_n=read_gbps,
        threads=hw.physical_cores,
        gflops_1=gflops,
        measured_at=1.0,
        fingerprint=fingerprint(hw),
    )


SLOW = _profile(BIG_MEMORY, 3.0, 8.0)  # an old laptop on battery
FAST = _profile(BIG_MEMORY, 80.0, 120.0)  # a workstation


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module")
def here() -> SpeedEstimator:
    """This machine, measured for real."""
    hw = detect_hardware()
    return SpeedEstimator(hw, ensure_profile(app_paths().cache, hw))


def test_every_catalog_model_gets_a_sane_prediction_in_tokens_per_second(
    catalog: Catalog, here: SpeedEstimator
) -> None:
    assert here.measured
    for estimator in (here, SpeedEstimator(BIG_MEMORY, SLOW), SpeedEstimator(BIG_MEMORY, FAST)):
        for spec in catalog:
            predicted = estimator.for_spec(spec)
            assert 0.05 < predicted.decode_tokens_per_s < 5_000, spec.id
            assert 0.5 < predicted.prompt_tokens_per_s < 100_000, spec.id
            # Reading a prompt works on many tokens at once: faster than writing an answer.
            assert predicted.prompt_tokens_per_s > predicted.decode_tokens_per_s, spec.id
            assert re.fullmatch(r"≈ \d+(\.\d)? tokens/s", predicted.label), predicted.label
            assert predicted.to_dict()["device"] == "cpu"
    # More bytes per token, fewer tokens a second.
    by_size = sorted(catalog, key=lambda s: s.size_bytes)
    rates = [here.for_spec(s).decode_tokens_per_s for s in (by_size[0], by_size[-1])]
    assert rates[0] > 3 * rates[1]


def test_a_gguf_file_is_judged_by_its_header(model_path: Path, catalog: Catalog) -> None:
    info = read_gguf_info(model_path)
    assert info.parameters == 134_515_008 and info.vocab_size == 49_152
    assert info.embedding_length == 576
    from_file = shape_for_gguf(info)
    from_catalog = shape_for_spec(catalog.get("smollm2-135m-instruct"))
    assert from_file.weight_bytes == from_catalog.weight_bytes
    # The weights' format (it sets the prompt kernels' efficiency), from the header's file type.
    assert from_file.quantization == from_catalog.quantization == "Q4_1"
    assert from_file.prompt_efficiency == pytest.approx(from_catalog.prompt_efficiency, rel=0.15)
    # The catalog's estimated width is close to the header's.
    assert abs(from_catalog.embedding_length - 576) / 576 < 0.15
    estimator = SpeedEstimator(BIG_MEMORY, FAST)
    ratio = (
        estimator.for_gguf(info).decode_tokens_per_s
        / estimator.for_spec(catalog.get("smollm2-135m-instruct")).decode_tokens_per_s
    )
    assert 0.9 < ratio < 1.1


def test_the_recommendation_follows_the_measured_speed(catalog: Catalog) -> None:
    slow = recommend_by_speed(catalog, SpeedEstimator(BIG_MEMORY, SLOW), min_tokens_per_s=10)
    fast = recommend_by_speed(catalog, SpeedEstimator(BIG_MEMORY, FAST), min_tokens_per_s=10)
    assert slow.spec is not None and fast.spec is not None
    assert slow.usable and fast.usable and slow.fits and fast.fits
    assert slow.spec.parameters < fast.spec.parameters
    assert slow.prediction is not None and slow.prediction.decode_tokens_per_s >= 10
    assert fast.prediction is not None and fast.prediction.decode_tokens_per_s >= 10
    # Everything fits in 48 GB: the fast machine gets the most capable model of all.
    assert fast.spec.parameters == max(s.parameters for s in catalog)
    assert re.fullmatch(
        rf"{re.escape(slow.spec.name)}: fits in memory, about \d+ tokens/s here", slow.reason
    ), slow.reason

    # A threshold nothing reaches: the fastest model that fits, and the reason says so.
    none = recommend_by_speed(catalog, SpeedEstimator(BIG_MEMORY, SLOW), min_tokens_per_s=10_000)
    assert none.spec is not None and none.fits and not none.usable
    assert none.spec.size_bytes == min(s.size_bytes for s in catalog)
    assert "below the usable" in none.reason


def test_answers_move_the_machine_factor_toward_what_was_measured(
    tmp_path: Path, model_path: Path
) -> None:
    hw = BIG_MEMORY
    save_profile(tmp_path, SLOW)
    shape = shape_for_gguf(read_gguf_info(model_path))
    recorder = SpeedRecorder(tmp_path, hw, shape, threads=4, device="cpu")
    raw_decode, raw_prompt = raw_rates(shape, SLOW, 4)
    before = SpeedEstimator.from_cache(tmp_path, hw, threads=4).predict(shape)
    assert not before.learnt
    assert before.decode_tokens_per_s == pytest.approx(raw_decode)

    stats = GenerationStats(
        completion_tokens=64,
        tokens_per_s=2 * raw_decode,
        evaluated_prompt_tokens=200,
        ttft_s=200 / (0.5 * raw_prompt),
    )
    factors = []
    for _ in range(12):
        correction = recorder.record(stats)
        assert correction is not None
        factors.append((correction.decode, correction.prompt))
    decodes = [d for d, _ in factors]
    prompts = [p for _, p in factors]
    assert 1 < decodes[0] < decodes[-1] <= 2.0 and decodes == sorted(decodes)
    assert 1 > prompts[0] > prompts[-1] >= 0.5
    assert decodes[-1] == pytest.approx(2.0, rel=0.1)

    after = SpeedEstimator.from_cache(tmp_path, hw, threads=4).predict(shape)
    assert after.learnt
    assert after.decode_tokens_per_s == pytest.approx(raw_decode * decodes[-1])
    saved = json.loads((tmp_path / "speed-factors.json").read_text())
    assert saved["devices"]["cpu"]["decode_samples"] == 12

    # What says nothing about the machine teaches nothing.
    assert recorder.record(replace(stats, stop_reason="cancelled")) is None
    assert recorder.record(replace(stats, completion_tokens=2, evaluated_prompt_tokens=3)) is None
    wild = recorder.record(replace(stats, tokens_per_s=1000 * raw_decode, ttft_s=None))
    assert wild is not None and wild.decode == pytest.approx(decodes[-1])


def test_a_token_waits_for_the_slower_of_reading_and_computing_the_weights(
    catalog: Catalog,
) -> None:
    """Q8_0 holds twice the bytes of Q4_K_M for the same arithmetic: where memory is the limit
    it writes about half as fast; where arithmetic is, about as fast."""
    q8 = shape_for_spec(catalog.get("qwen3-1.7b"))
    assert q8.quantization == "Q8_0"
    q4 = replace(q8, weight_bytes=q8.weight_bytes * 9 // 17, quantization="Q4_K_M")
    slow_memory = _profile(BIG_MEMORY, 6.0, 400.0)
    slow_arithmetic = _profile(BIG_MEMORY, 400.0, 6.0)
    read_bound = raw_rates(q4, slow_memory, 4)[0] / raw_rates(q8, slow_memory, 4)[0]
    compute_bound = raw_rates(q4, slow_arithmetic, 4)[0] / raw_rates(q8, slow_arithmetic, 4)[0]
    assert read_bound > 1.6
    assert compute_bound == pytest.approx(1.0)
    # More threads help arithmetic, less than in proportion: they meet after every operation.
    one, four = raw_rates(q8, slow_arithmetic, 1)[0], raw_rates(q8, slow_arithmetic, 4)[0]
    assert 1.2 < four / one < 4
    # Reading a prompt: the format's kernels count (Q4_K's repacked ones beat Q8_0's).
    assert raw_rates(q4, slow_memory, 4)[1] > raw_rates(q8, slow_memory, 4)[1]


def test_the_profile_is_cached_and_measured_again_on_new_hardware(tmp_path: Path) -> None:
    hw = replace(detect_hardware(), available_ram=8 * GIB)
    assert load_profile(tmp_path, hw) is None
    first = ensure_profile(tmp_path, hw)
    assert first.measured and first.read_gbps_1 > 0 and first.gflops_1 > 0
    assert ensure_profile(tmp_path, hw) == first  # cached, not measured again
    # Available memory changes all the time; more memory in the machine is new hardware.
    assert load_profile(tmp_path, replace(hw, available_ram=2 * GIB)) == first
    upgraded = replace(hw, total_ram=hw.total_ram + 16 * GIB)
    assert load_profile(tmp_path, upgraded) is None
    # Factors learnt for the old profile do not carry over to a new one.
    old = SpeedFactors("old-profile")
    old.observe("cpu", decode_ratio=3.0)
    old.save(tmp_path)
    assert SpeedFactors.load(tmp_path, "new-profile").get("cpu").decode == 1.0
    # A damaged cache is measured again, not an error.
    (tmp_path / "speed-profile.json").write_text("{not json")
    assert load_profile(tmp_path, hw) is None


def test_models_list_shows_expected_speed_and_fit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for row in data["catalog"]:
        assert isinstance(row["expected_tokens_per_s"], float) and row["expected_tokens_per_s"] > 0
        assert row["fit"] in ("fits", "tight", "wont_fit")
    recommendation = data["recommendation"]
    assert recommendation["usable_tokens_per_s"] == 10.0
    assert "tokens/s here" in recommendation["reason"]
    assert data["speed"]["measured"]

    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "SPEED" in out and "Recommended: " in out
    assert len(re.findall(r"~[\d.]+ tok/s", out)) == len(load_catalog())


@pytest.mark.slow
def test_a_real_answer_teaches_the_factor(model_path: Path) -> None:
    from assistant.engine.base import ChatMessage, GenerationSettings
    from assistant.providers import load_gguf
    from assistant.settings import Settings

    paths = app_paths().ensure()
    ensure_profile(paths.cache, detect_hardware())
    settings = Settings.load(paths.settings_file)
    engine = load_gguf(model_path, settings, "smol")
    try:
        generation = engine.stream_chat(
            [ChatMessage("user", "Count from one to thirty in words. " * 6)],
            GenerationSettings(max_tokens=24, temperature=0.0, seed=1),
        )
        "".join(generation)
    finally:
        engine.close()
    # The answer reached the recorder (how far it moved the factor depends on how busy the
    # machine was: a measurement wildly off the prediction is set aside).
    saved = json.loads((paths.cache / "speed-factors.json").read_text())
    assert set(saved["devices"]) == {"cpu"}
