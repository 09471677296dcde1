"""How much the engine costs on top of llama.cpp itself, and whether follow-ups stay fast.

In one run, on one model and thread count:
  (a) decode tokens/s of ``LocalEngine`` against a minimal loop on llama.cpp's C API
      (llama_decode + a greedy sampler) at the same context depth;
  (b) prompt-processing tokens/s against the same raw loop;
  (c) time to first token at turns 1, 5, 10 and 20 of one conversation.
Targets: (a), (b) >= 0.95 of raw; (c) turn 20 <= 1.3 x turn 1.

Usage: python benchmarks/bench_engine.py [--model FILE.gguf] [--threads N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import llama_cpp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.engine import llama_log  # noqa: E402
from assistant.engine.base import ChatMessage, GenerationSettings  # noqa: E402
from assistant.engine.local import LocalEngine  # noqa: E402
from assistant.models.hardware import detect_hardware  # noqa: E402

N_CTX = 4096
SYSTEM = ChatMessage("system", "You are a helpful assistant.")
STORY = ChatMessage("user", "Write a long story about a lighthouse keeper and a storm.")


class RawLoop:
    """The least Python one can put around llama.cpp: decode a batch, sample, decode one."""

    def __init__(self, path: Path, threads: int, gpu_layers: int) -> None:
        llama_log.install()
        model_params = llama_cpp.llama_model_default_params()
        model_params.n_gpu_layers = gpu_layers
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = N_CTX
        ctx_params.n_batch = 512
        ctx_params.n_threads = threads
        ctx_params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, ctx_params)
        chain = llama_cpp.llama_sampler_chain_default_params()
        self.sampler = llama_cpp.llama_sampler_chain_init(chain)
        llama_cpp.llama_sampler_chain_add(self.sampler, llama_cpp.llama_sampler_init_greedy())

    def _decode(self, tokens: list[int]) -> None:
        for start in range(0, len(tokens), 512):
            part = tokens[start : start + 512]
            array = (llama_cpp.llama_token * len(part))(*part)
            if llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(array, len(part))):
                raise RuntimeError("llama_decode failed")

    def prompt_rate(self, tokens: list[int]) -> float:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        started = time.perf_counter()
        self._decode(tokens)
        llama_cpp.llama_sampler_sample(self.sampler, self.ctx, -1)
        return len(tokens) / (time.perf_counter() - started)

    def decode_rate(self, prompt: list[int], count: int) -> float:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)
        self._decode(prompt)
        token = llama_cpp.llama_sampler_sample(self.sampler, self.ctx, -1)
        started = time.perf_counter()
        one = (llama_cpp.llama_token * 1)()
        for _ in range(count - 1):
            one[0] = token
            if llama_cpp.llama_decode(self.ctx, llama_cpp.llama_batch_get_one(one, 1)):
                raise RuntimeError("llama_decode failed")
            token = llama_cpp.llama_sampler_sample(self.sampler, self.ctx, -1)
        return (count - 1) / (time.perf_counter() - started)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.sampler)
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


def long_prompt(words: int) -> list[ChatMessage]:
    text = " ".join(f"item{i % 97} is listed under shelf {i % 13}." for i in range(words // 6))
    return [SYSTEM, ChatMessage("user", f"Summarise this inventory: {text}")]


def measure(model: Path, threads: int, repeats: int, gpu_layers: int) -> dict[str, object]:
    engine = LocalEngine(model, n_ctx=N_CTX, n_threads=threads, n_gpu_layers=gpu_layers)
    raw = RawLoop(model, threads, gpu_layers)
    greedy = GenerationSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=160)

    # (a) decode: same prompt, same number of tokens, greedy in both.
    decode_engine, decode_raw = [], []
    prompt_tokens, _, _ = engine.fit_prompt([SYSTEM, STORY], greedy)
    for _ in range(repeats):
        engine._llama.reset()  # the same depth for both: start from an empty context
        generation = engine.stream_chat([SYSTEM, STORY], greedy)
        generation.run()
        assert generation.stats is not None and generation.stats.tokens_per_s
        decode_engine.append(generation.stats.tokens_per_s)
        decode_raw.append(raw.decode_rate(prompt_tokens, generation.stats.completion_tokens))

    # (b) prompt processing: a ~600-token prompt evaluated from scratch.
    prompt_engine, prompt_raw = [], []
    messages = long_prompt(600)
    tokens, _, _ = engine.fit_prompt(messages, greedy)
    one_token = GenerationSettings(temperature=0.0, max_tokens=1)
    for _ in range(repeats):
        engine._llama.reset()
        generation = engine.stream_chat(messages, one_token)
        generation.run()
        stats = generation.stats
        assert stats is not None and stats.ttft_s
        prompt_engine.append(stats.evaluated_prompt_tokens / stats.ttft_s)
        prompt_raw.append(raw.prompt_rate(tokens))
    raw.close()

    # (c) time to first token as one conversation grows.
    short = GenerationSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=48)
    conversation = [SYSTEM]
    ttft: dict[int, float] = {}
    evaluated: dict[int, int] = {}
    engine._llama.reset()
    for turn in range(1, 21):
        conversation.append(ChatMessage("user", f"Give me one fact about the number {turn}."))
        generation = engine.stream_chat(conversation, short)
        generation.run()
        assert generation.stats is not None and generation.stats.ttft_s
        conversation.append(ChatMessage("assistant", generation.text))
        ttft[turn] = generation.stats.ttft_s
        evaluated[turn] = generation.stats.evaluated_prompt_tokens
    context_at_20 = generation.stats.prompt_tokens
    engine.close()

    decode_ratio = statistics.median(decode_engine) / statistics.median(decode_raw)
    prompt_ratio = statistics.median(prompt_engine) / statistics.median(prompt_raw)
    ttft_ratio = ttft[20] / ttft[1]
    hardware = detect_hardware()
    return {
        "model": model.name,
        "threads": threads,
        "gpu_layers": gpu_layers,
        "repeats": repeats,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "physical_cores": hardware.physical_cores,
            "ram_gb": round(hardware.total_ram / 2**30, 1),
            "system": platform.platform(),
            "llama_cpp_python": llama_cpp.__version__,
        },
        "decode_tps": {
            "engine": statistics.median(decode_engine),
            "raw": statistics.median(decode_raw),
            "ratio": decode_ratio,
            "target": 0.95,
            "met": decode_ratio >= 0.95,
        },
        "prompt_tps": {
            "engine": statistics.median(prompt_engine),
            "raw": statistics.median(prompt_raw),
            "ratio": prompt_ratio,
            "prompt_tokens": len(tokens),
            "target": 0.95,
            "met": prompt_ratio >= 0.95,
        },
        "ttft_s": {str(turn): ttft[turn] for turn in (1, 5, 10, 20)},
        "evaluated_tokens": {str(turn): evaluated[turn] for turn in (1, 5, 10, 20)},
        "context_tokens_at_turn_20": context_at_20,
        "ttft_ratio_20_to_1": ttft_ratio,
        "ttft_target": 1.3,
        "ttft_met": ttft_ratio <= 1.3,
    }


def print_table(result: dict[str, object]) -> None:
    decode = result["decode_tps"]
    prompt = result["prompt_tps"]
    assert isinstance(decode, dict) and isinstance(prompt, dict)
    print(
        f"model {result['model']}, {result['threads']} threads, "
        f"{result['gpu_layers']} GPU layers, median of {result['repeats']}"
    )
    print(f"{'measure':<28}{'engine':>10}{'raw':>10}{'ratio':>8}{'target':>9}  met")
    for name, row in (("decode tokens/s", decode), ("prompt tokens/s", prompt)):
        print(
            f"{name:<28}{row['engine']:>10.1f}{row['raw']:>10.1f}{row['ratio']:>8.3f}"
            f"{'>= 0.95':>9}  {'yes' if row['met'] else 'NO'}"
        )
    ttft = result["ttft_s"]
    evaluated = result["evaluated_tokens"]
    assert isinstance(ttft, dict) and isinstance(evaluated, dict)
    print(
        f"{'time to first token':<28}"
        + "".join(f"  turn {t}: {ttft[t] * 1000:.0f} ms ({evaluated[t]} tok)" for t in ttft)
    )
    print(
        f"{'turn 20 / turn 1':<28}{result['ttft_ratio_20_to_1']:>10.2f}"
        f"{'':>18}{'<= 1.3':>9}  {'yes' if result['ttft_met'] else 'NO'}"
        f"   (context at turn 20: {result['context_tokens_at_turn_20']} tokens)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the SmolLM2 test model)")
    parser.add_argument("--threads", type=int, default=detect_hardware().physical_cores)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--gpu-layers", type=int, default=0, help="layers on the GPU for both loops (999 = all)"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/engine.json")
    args = parser.parse_args()
    if args.model is None:
        from tests.support import smollm2_path

        args.model = smollm2_path()
    result = measure(args.model, args.threads, args.repeats, args.gpu_layers)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
