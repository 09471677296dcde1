"""Predicted against measured speed, for the two real test models, on this machine, in one run.

The machine is measured afresh (``calibrate``, as the app does once), then each model is loaded
with ``LocalEngine`` and timed the way a user's answer is: prompt processing (tokens/s over a new
prompt of a few hundred tokens, from the answer's time to first token) and decoding (the
answer's own tokens/s). The prediction is the raw one: no correction learnt from earlier use.
Targets: within ±30 % for decoding, ±50 % for prompt processing.

``--shaped`` adds models of catalog models' shapes and formats with random weights (built once
by ``benchmarks/shaped_models.py``, about 7 GB, a few minutes): the test models are 135M and
270M, the catalog's 0.6–4B, and the prediction must hold there too.

On a machine shared with other busy programs, llama.cpp threads that wait for each other slow
down far more than the calibration does; ``--threads 1`` takes that stall out of both sides.

Usage: python benchmarks/bench_predict.py [--threads N] [--repeats N] [--shaped] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from assistant.engine.base import ChatMessage, GenerationSettings  # noqa: E402
from assistant.engine.local import LocalEngine  # noqa: E402
from assistant.models.gguf_file import read_gguf_info  # noqa: E402
from assistant.models.hardware import detect_hardware  # noqa: E402
from assistant.models.speed import SpeedEstimator, calibrate  # noqa: E402
from tests.support import gemma_base_path, smollm2_path  # noqa: E402

DECODE_TARGET = 0.30
PROMPT_TARGET = 0.50
TEXT = (
    "Lighthouses have guided ships for centuries, from the fire towers of antiquity to the "
    "automated beacons of today. Their keepers lived through storms, isolation and long nights. "
)


def measure(path: Path, threads: int, repeats: int) -> tuple[float, float]:
    """Median (decode, prompt) tokens/s of real answers with ``LocalEngine``."""
    engine = LocalEngine(path, n_ctx=2048, n_threads=threads)
    settings = GenerationSettings(max_tokens=96, temperature=0.0, seed=1)
    decode: list[float] = []
    prompt: list[float] = []
    try:
        for run in range(repeats + 1):
            # A new opening each time: nothing of the prompt comes from the cache.
            question = f"Note {run}. " + TEXT * 8 + "Now tell a long story about one keeper."
            generation = engine.stream_chat([ChatMessage("user", question)], settings)
            for _ in generation:
                pass
            stats = generation.stats
            if run == 0 or stats is None:
                continue  # the first answer also pays for warming caches and pages
            if stats.tokens_per_s:
                decode.append(stats.tokens_per_s)
            if stats.ttft_s:
                prompt.append(stats.evaluated_prompt_tokens / stats.ttft_s)
    finally:
        engine.close()
    return statistics.median(decode), statistics.median(prompt)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=0, help="0: one per physical core")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shaped", action="store_true", help="also catalog-shaped models")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    hw = detect_hardware()
    threads = args.threads or max(1, hw.physical_cores)
    load_before = os.getloadavg()[0]
    profile = calibrate(hw)
    estimator = SpeedEstimator(hw, profile, threads=threads)
    rows = []
    models = [("SmolLM2 135M, Q4_1", smollm2_path()), ("Gemma 3 270M, Q4_K_M", gemma_base_path())]
    if args.shaped:
        import shaped_models

        models += [(shaped_models.label(n), shaped_models.ensure(n)) for n in shaped_models.SHAPES]
    for label, path in models:
        predicted = estimator.for_gguf(read_gguf_info(path))
        decode, prompt = measure(path, threads, args.repeats)
        rows.append(
            {
                "model": label,
                "predicted_decode": predicted.decode_tokens_per_s,
                "measured_decode": decode,
                "predicted_prompt": predicted.prompt_tokens_per_s,
                "measured_prompt": prompt,
            }
        )
    load_after = os.getloadavg()[0]

    ok = True
    if args.json:
        print(json.dumps({"profile": profile.__dict__, "threads": threads, "rows": rows}))
    print(
        f"{hw.physical_cores} cores, {threads} thread(s); load average {load_before:.1f} before, "
        f"{load_after:.1f} after. Calibration: read {profile.read_gbps_1:.1f} GB/s (1 thread), "
        f"{profile.read_gbps_n:.1f} GB/s ({profile.threads}); {profile.gflops_1:.0f} GFLOP/s "
        "per thread."
    )
    print(
        "| model | decode predicted | decode measured | error | "
        "prompt predicted | prompt measured | error |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        decode_error = row["predicted_decode"] / row["measured_decode"] - 1
        prompt_error = row["predicted_prompt"] / row["measured_prompt"] - 1
        ok = ok and abs(decode_error) <= DECODE_TARGET and abs(prompt_error) <= PROMPT_TARGET
        print(
            f"| {row['model']} | {row['predicted_decode']:.1f} | {row['measured_decode']:.1f} | "
            f"{decode_error:+.0%} | {row['predicted_prompt']:.0f} | "
            f"{row['measured_prompt']:.0f} | {prompt_error:+.0%} |"
        )
    print(
        f"targets: decode within ±{DECODE_TARGET:.0%}, prompt within ±{PROMPT_TARGET:.0%}: "
        + ("met" if ok else "NOT met")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
