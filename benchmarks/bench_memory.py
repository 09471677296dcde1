"""Whether the model's memory of conversations and prompt-lookup drafting pay off.

In one run, on one model and thread count (default: SmolLM2-135M, 2 threads):
  (a) time to first token of a follow-up right after an answer (the context serves it: the
      "cached follow-up"), after switching away to another chat and back with saved states,
      and after switching back without them (what happened before: a full read);
      target: switched back <= 1.5 x the cached follow-up;
  (b) the same follow-up from a new process that finds the state on disk;
      target: <= 2 x the cached follow-up plus the time to read the state file;
  (c) disk bytes of saved state per 1,000 tokens;
  (d) decode tokens/s on a "fix the typos in this paragraph" prompt with and without drafting
      from the prompt; target >= 1.5 x, and the same text at temperature 0.

Usage: python benchmarks/bench_memory.py [--model FILE.gguf] [--threads N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaBatch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.engine.base import ChatMessage, GenerationSettings  # noqa: E402
from assistant.engine.local import LocalEngine  # noqa: E402
from assistant.engine.prompt_lookup import PromptLookup  # noqa: E402
from assistant.engine.state_cache import SUFFIX, StateCache  # noqa: E402
from assistant.models.hardware import detect_hardware  # noqa: E402

N_CTX = 4096
GREEDY = GenerationSettings(temperature=0.0, max_tokens=8, repeat_penalty=1.0)
SYSTEM = ChatMessage("system", "You are a helpful assistant.")
OTHER = [SYSTEM, ChatMessage("user", "Write one sentence about the sea at night.")]
COLOURS = ("red", "blue", "green", "small", "large")


def document(items: int) -> str:
    lines = [f"Here is an inventory of {items} items. Read it, then answer questions."]
    for i in range(1, items + 1):
        lines.append(
            f"Item {i}: a {COLOURS[i % 5]} box holding notes about topic {i * 7 % 23} and "
            f"the history of town number {i * 3 % 17}."
        )
    return "\n".join(lines)


def conversation(engine: LocalEngine, target_tokens: int) -> list[ChatMessage]:
    """A chat whose prompt is about ``target_tokens`` long, answered once."""
    items = 10
    while True:
        messages = [SYSTEM, ChatMessage("user", document(items) + "\nWhat is item 3 about?")]
        if engine.fit_prompt(messages, GREEDY)[0].__len__() >= target_tokens:
            return messages
        items += 10


def follow_up(chat: list[ChatMessage], answer: str, n: int) -> list[ChatMessage]:
    return [*chat, ChatMessage("assistant", answer), ChatMessage("user", f"And item {n}?")]


def ask(engine: LocalEngine, messages: list[ChatMessage]) -> tuple[str, float, int]:
    generation = engine.stream_chat(messages, GREEDY)
    text = generation.run()
    stats = generation.stats
    assert stats is not None and stats.ttft_s is not None
    return text, stats.ttft_s, stats.evaluated_prompt_tokens


def switching(
    model: Path, threads: int, repeats: int, folder: Path, tokens: int
) -> dict[str, object]:
    cache = StateCache(folder, memory_budget=2 << 30)
    engine = LocalEngine(model, n_ctx=N_CTX, n_threads=threads, state_cache=cache)
    chat = conversation(engine, tokens)
    answer, first_ttft, first_evaluated = ask(engine, chat)
    cached, switched, cached_eval, switched_eval = [], [], [], []
    for turn in range(repeats):
        _, ttft, evaluated = ask(engine, follow_up(chat, answer, 7 + turn))
        cached.append(ttft)
        cached_eval.append(evaluated)
        ask(engine, OTHER)
        _, ttft, evaluated = ask(engine, follow_up(chat, answer, 40 + turn))
        switched.append(ttft)
        switched_eval.append(evaluated)
    # Leave the conversation's state on disk for the new process.
    ask(engine, OTHER)
    engine.close()
    cache.flush()

    plain = LocalEngine(model, n_ctx=N_CTX, n_threads=threads)
    ask(plain, chat)
    ask(plain, OTHER)
    _, before, before_eval = ask(plain, follow_up(chat, answer, 9))
    plain.close()
    return {
        "chat": [m.to_dict() for m in chat],
        "answer": answer,
        "prompt_tokens": first_evaluated,
        "first_read_s": first_ttft,
        "cached_follow_up_s": statistics.median(cached),
        "cached_evaluated": statistics.median(cached_eval),
        "switched_back_s": statistics.median(switched),
        "switched_evaluated": statistics.median(switched_eval),
        "switched_back_without_states_s": before,
        "without_states_evaluated": before_eval,
    }


def child(model: Path, threads: int, folder: Path, chat_file: Path) -> int:
    """Run in a new process: continue the conversation from the state on disk."""
    data = json.loads(chat_file.read_text())
    chat = [ChatMessage(m["role"], m["content"]) for m in data["chat"]]
    engine = LocalEngine(
        model, n_ctx=N_CTX, n_threads=threads, state_cache=StateCache(folder, memory_budget=2 << 30)
    )
    _, ttft, evaluated = ask(engine, follow_up(chat, data["answer"], 12))
    engine.close()
    print(json.dumps({"ttft_s": ttft, "evaluated": evaluated}))
    return 0


def new_process(model: Path, threads: int, folder: Path, switched: dict[str, object]) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"chat": switched["chat"], "answer": switched["answer"]}, handle)
    command = [sys.executable, __file__, "--child", str(folder), handle.name]
    command += ["--model", str(model), "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    os.unlink(handle.name)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    files = sorted(folder.glob("*" + SUFFIX), key=lambda p: p.stat().st_size)
    biggest = files[-1]
    started = time.perf_counter()
    size = len(biggest.read_bytes())
    read_s = time.perf_counter() - started
    header_tokens = _state_tokens(biggest)
    return {
        "ttft_s": measured["ttft_s"],
        "evaluated": measured["evaluated"],
        "state_file_bytes": size,
        "state_tokens": header_tokens,
        "state_read_s": read_s,
        "bytes_per_1000_tokens": size / header_tokens * 1000,
    }


def _state_tokens(path: Path) -> int:
    reader = StateCache(path.parent, memory_budget=0)
    reader._scan()
    return max(len(state.tokens) for state, _stat in reader._disk.values())


PARAGRAPH = (
    "Teh old lighthouse stood on the edge of the cliff for more then a hundred years. Every "
    "night its keeper climbed the narow stairs, lit the great lamp and watched the ships pass "
    "safely thru the dark water. The keeper was a quiet man who liked his books, his cat and "
    "the sound of the waves, and he rarely spoke to anyone in the vilage below. One winter a "
    "terible storm broke the windows and put out the lamp, and the keeper had to carry a "
    "lantern to the top of the tower and hold it there untill the morning came."
)
REWRITE = [
    SYSTEM,
    ChatMessage(
        "user",
        "Fix the typos in this paragraph and reply with the corrected paragraph only:\n\n"
        + PARAGRAPH,
    ),
]


STORY = [SYSTEM, ChatMessage("user", "Write a short story about a lighthouse keeper.")]


BATCH_SIZES = (1, 2, 4, 8, 16)


def batch_costs(engine: LocalEngine, repeats: int = 12) -> dict[int, float]:
    """Seconds llama.cpp takes to evaluate a batch of k tokens after the rewrite prompt, with
    logits for every position (as drafts need), median of ``repeats``, sizes interleaved so a
    change of the machine's load touches them all alike."""
    settings = GenerationSettings(temperature=0.0, max_tokens=1, repeat_penalty=1.0)
    engine.clear_context()
    engine.stream_chat(REWRITE, settings).run()
    llama = engine._llama
    past = llama.n_tokens
    batch = LlamaBatch(n_tokens=max(BATCH_SIZES), embd=0, n_seq_max=1, verbose=False)
    tokens = llama._input_ids[: max(BATCH_SIZES)].tolist()
    times: dict[int, list[float]] = {k: [] for k in BATCH_SIZES}
    for _ in range(repeats):
        for k in BATCH_SIZES:
            batch.set_batch(tokens[:k], past, logits_all=True)
            started = time.perf_counter()
            if llama_cpp.llama_decode(llama._ctx.ctx, batch.batch):
                raise RuntimeError("llama_decode failed")
            times[k].append(time.perf_counter() - started)
            llama._ctx.kv_cache_seq_rm(0, past, -1)
    engine.clear_context()
    return {k: statistics.median(v) for k, v in times.items()}


def foreseen(engine: LocalEngine, prompt: list[ChatMessage], settings: GenerationSettings) -> int:
    """How many tokens of the plain answer just given the lookup's pointer expected: the most
    drafts could take."""
    tokens, _dropped, _stops = engine.fit_prompt(prompt, settings)
    llama = engine._llama
    answer = llama._input_ids[len(tokens) : llama.n_tokens].tolist()
    lookup = PromptLookup(tokens)
    for token in answer:
        lookup.push(token)
    return lookup.foreseen


def drafting(model: Path, threads: int, repeats: int) -> dict[str, object]:
    """Decode speed with and without drafts: on a rewrite (where they help) and on an ordinary
    answer (where they must not cost much: they turn themselves off). Also what a batch costs
    here, and the most drafting could gain on these answers at that cost."""
    settings = GenerationSettings(temperature=0.0, max_tokens=160, repeat_penalty=1.0)
    engine = LocalEngine(model, n_ctx=N_CTX, n_threads=threads)
    costs = batch_costs(engine)
    single = costs[1]
    # Least-squares line through the batch times: cost(k) = a + b·k single-token decodes.
    mean_k = statistics.mean(BATCH_SIZES)
    mean_t = statistics.mean(costs.values())
    slope = sum((k - mean_k) * (t - mean_t) for k, t in costs.items()) / sum(
        (k - mean_k) ** 2 for k in BATCH_SIZES
    )
    b = slope / single
    result: dict[str, object] = {
        "batch_cost": {str(k): t / single for k, t in costs.items()},
        "single_token_s": single,
        "per_extra_token": b,
        "intercept": (mean_t - slope * mean_k) / single,
    }
    for name, prompt in (("rewrite", REWRITE), ("story", STORY)):
        rates: dict[bool, list[float]] = {False: [], True: []}
        texts: dict[bool, str] = {}
        accepted = drafted = seen = 0
        for _ in range(repeats):
            for enabled in (False, True):
                engine.prompt_lookup = enabled
                # Read afresh each time: a prompt read in other parts rounds differently in
                # llama.cpp's kernels, which can tip a near tie either way.
                engine.clear_context()
                generation = engine.stream_chat(prompt, settings)
                texts[enabled] = generation.run()
                assert generation.stats is not None and generation.stats.tokens_per_s
                rates[enabled].append(generation.stats.tokens_per_s)
                if enabled:
                    drafted, accepted = engine.last_drafts
                else:
                    seen = foreseen(engine, prompt, settings)
        plain, drafted_rate = statistics.median(rates[False]), statistics.median(rates[True])
        result[name] = {
            "plain_tps": plain,
            "drafted_tps": drafted_rate,
            "ratio": drafted_rate / plain,
            "identical": texts[False] == texts[True],
            "drafted_tokens": drafted,
            "accepted_tokens": accepted,
            "answer_tokens": engine.count_tokens(texts[True]),
            "foreseen_tokens": seen,
            # Every foreseen token drafted and taken, each costing b instead of one decode.
            "ceiling": (answer := engine.count_tokens(texts[False])) / (answer - seen + b * seen),
            "measured_batch_cost": engine.measured_batch_cost,
        }
    engine.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the SmolLM2 test model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=3000, help="length of the conversation")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/memory.json")
    parser.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model is None:
        from tests.support import smollm2_path

        args.model = smollm2_path()
    if args.child:
        return child(args.model, args.threads, *args.child)

    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "model-state"
        switched = switching(args.model, args.threads, args.repeats, folder, args.tokens)
        process = new_process(args.model, args.threads, folder, switched)
    drafts = drafting(args.model, args.threads, args.repeats)
    cached = float(switched["cached_follow_up_s"])  # type: ignore[arg-type]
    hardware = detect_hardware()
    result = {
        "model": args.model.name,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "physical_cores": hardware.physical_cores,
            "system": platform.platform(),
            "llama_cpp_python": llama_cpp.__version__,
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "switch": {k: v for k, v in switched.items() if k not in ("chat", "answer")},
        "switch_ratio": float(switched["switched_back_s"]) / cached,  # type: ignore[arg-type]
        "switch_ratio_before": float(switched["switched_back_without_states_s"]) / cached,  # type: ignore[arg-type]
        "new_process": process,
        "new_process_ratio": process["ttft_s"] / cached,
        "new_process_target_s": 2 * cached + process["state_read_s"],
        "drafting": drafts,
    }
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


def print_table(r: dict) -> None:
    s, p, d = r["switch"], r["new_process"], r["drafting"]
    print(f"model {r['model']}, {r['threads']} threads, median of {r['repeats']}")
    print(f"conversation of {s['prompt_tokens']} tokens, first read {s['first_read_s']:.2f} s")
    rows = [
        ("cached follow-up", s["cached_follow_up_s"], s["cached_evaluated"], ""),
        (
            "switched away and back",
            s["switched_back_s"],
            s["switched_evaluated"],
            f"{r['switch_ratio']:.2f} x (target <= 1.5)",
        ),
        (
            "  same, without saved states",
            s["switched_back_without_states_s"],
            s["without_states_evaluated"],
            f"{r['switch_ratio_before']:.1f} x",
        ),
        (
            "new process, state on disk",
            p["ttft_s"],
            p["evaluated"],
            f"{r['new_process_ratio']:.2f} x (target <= 2 x + read "
            f"{p['state_read_s']:.2f} s = {r['new_process_target_s']:.2f} s)",
        ),
    ]
    print(f"{'time to first token':<32}{'s':>8}{'evaluated':>11}  vs cached")
    for name, seconds, evaluated, note in rows:
        print(f"{name:<32}{seconds:>8.3f}{evaluated:>11}  {note}")
    print(
        f"state on disk: {p['bytes_per_1000_tokens'] / 2**20:.1f} MiB per 1,000 tokens "
        f"({p['state_file_bytes'] / 2**20:.1f} MiB for {p['state_tokens']} tokens)"
    )
    sizes = ", ".join(f"{k}: {c:.2f}" for k, c in d["batch_cost"].items())
    print(
        f"a batch of k tokens (all logits) costs, in single-token decodes "
        f"({d['single_token_s'] * 1000:.1f} ms): "
        f"{sizes}; about {d['intercept']:.2f} + {d['per_extra_token']:.2f} k"
    )
    for name, target in (("rewrite", "target >= 1.5"), ("story", "no target")):
        row = d[name]
        print(
            f"{name} decode: {row['plain_tps']:.1f} -> {row['drafted_tps']:.1f} tokens/s "
            f"({row['ratio']:.2f} x, {target}), identical text: {row['identical']}, "
            f"{row['accepted_tokens']} of {row['answer_tokens']} answer tokens from drafts "
            f"({row['drafted_tokens']} drafted); the pointer foresaw {row['foreseen_tokens']}: "
            f"at most {row['ceiling']:.2f} x at this batch cost"
        )


if __name__ == "__main__":
    sys.exit(main())
