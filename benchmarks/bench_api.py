"""What the local API costs a client on top of the engine, and how it shares the model.

In one run, on one model and thread count, the API as ``offline-assistant serve`` runs it (an
``EngineQueue`` behind the uvicorn server on 127.0.0.1) against ``LocalEngine`` called
directly, runs alternating so that a busy machine slows both alike:
  (a) decode tokens/s as a streaming client sees them (first to last text chunk), greedy, the
      same answer both ways;                                  target >= 0.95 of direct
  (b) time to first token: request sent to first text chunk;  target <= direct + 10 ms
  (c) eight clients at once: total tokens/s over all of them, and the longest wait for a
      first token (they are answered in turn, so the last waits for seven answers).

Usage: python benchmarks/bench_api.py [--model FILE.gguf] [--threads N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.api.engine_queue import EngineQueue  # noqa: E402
from assistant.api.server import ApiServer  # noqa: E402
from assistant.engine.base import ChatMessage, GenerationSettings  # noqa: E402
from assistant.engine.local import LocalEngine  # noqa: E402
from assistant.models.hardware import detect_hardware  # noqa: E402
from assistant.models.store import ModelStore  # noqa: E402
from assistant.paths import app_paths  # noqa: E402
from assistant.settings import Settings  # noqa: E402

TOKEN = "bench"
SYSTEM = "You are a helpful assistant."
STORY = "Write a long story about a lighthouse keeper and a storm."
QUESTION = "What is the capital of France?"
GREEDY = GenerationSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=256)


def direct_run(engine: LocalEngine, question: str, max_tokens: int) -> dict[str, float]:
    """Time to first chunk and decode rate of the engine, as its caller sees them."""
    messages = [ChatMessage("system", SYSTEM), ChatMessage("user", question)]
    settings = GenerationSettings(temperature=0.0, repeat_penalty=1.0, max_tokens=max_tokens)
    sent = time.perf_counter()
    first = last = 0.0
    generation = engine.stream_chat(messages, settings)
    for _chunk in generation:
        last = time.perf_counter()
        first = first or last
    tokens = generation.stats.completion_tokens if generation.stats else 0
    return _timings(sent, first, last, tokens)


def api_run(client: httpx2.Client, url: str, question: str, max_tokens: int) -> dict[str, float]:
    """The same through the API, as a streaming client sees it (raw SSE, no SDK overhead)."""
    body = {
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
        "temperature": 0,
        "repeat_penalty": 1.0,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    first = last = 0.0
    tokens = 0
    with client.stream("POST", url + "/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            if data["choices"] and data["choices"][0]["delta"].get("content"):
                last = time.perf_counter()
                first = first or last
            if data.get("usage"):
                tokens = data["usage"]["completion_tokens"]
    return _timings(sent, first, last, tokens)


def _timings(sent: float, first: float, last: float, tokens: int) -> dict[str, float]:
    # The first chunk holds the first token: the rest came in (last - first).
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return {"ttft_s": first - sent, "decode_tps": rate, "tokens": tokens}


def concurrent(url: str, clients: int, max_tokens: int) -> dict[str, float]:
    """``clients`` streaming at once: total tokens/s and the longest wait for a first token."""
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def one(number: int) -> None:
        with httpx2.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as client:
            timing = api_run(client, url, f"Count from {number} to {number + 20}.", max_tokens)
        with lock:
            results.append(timing)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    total = sum(r["tokens"] for r in results)
    return {
        "clients": clients,
        "answered": len(results),
        "total_tokens": total,
        "wall_s": wall,
        "total_tps": total / wall,
        "longest_wait_s": max(r["ttft_s"] for r in results),
    }


def measure(model: Path, threads: int, repeats: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="bench-api-"))
    os.environ["OFFLINE_ASSISTANT_HOME"] = str(home)
    paths = app_paths().ensure()
    store = ModelStore(paths)
    model_id = store.import_file(model).id
    settings = Settings(paths.settings_file)
    settings.set("threads", threads)

    queue = EngineQueue(store, settings, GREEDY)
    queue.preload(model_id)
    queue.wait_loaded()
    server = ApiServer(queue, token=TOKEN, port=0)
    server.start()
    engine = LocalEngine.from_settings(store.resolve(model_id), settings, model_id=model_id)
    client = httpx2.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
    try:
        # Warm both (first-use costs: page faults, the HTTP connection, caches).
        direct_run(engine, QUESTION, 8)
        api_run(client, server.base_url, QUESTION, 8)
        runs: dict[str, dict[str, list[float]]] = {
            "direct": {"decode": [], "ttft": []},
            "api": {"decode": [], "ttft": []},
        }
        tokens: dict[str, float] = {}
        for _ in range(repeats):
            for name, run in (
                ("direct", lambda q, n: direct_run(engine, q, n)),
                ("api", lambda q, n: api_run(client, server.base_url, q, n)),
            ):
                story = run(STORY, GREEDY.max_tokens)
                runs[name]["decode"].append(story["decode_tps"])
                tokens[name] = story["tokens"]
                runs[name]["ttft"].append(run(QUESTION, 1)["ttft_s"])
        engine.close()  # the eight clients get the machine to themselves
        eight = concurrent(server.base_url, 8, 64)
    finally:
        client.close()
        server.stop()
        queue.close()

    direct_decode = statistics.median(runs["direct"]["decode"])
    api_decode = statistics.median(runs["api"]["decode"])
    direct_ttft = statistics.median(runs["direct"]["ttft"])
    api_ttft = statistics.median(runs["api"]["ttft"])
    return {
        "model": model.name,
        "threads": threads,
        "repeats": repeats,
        "answer_tokens": tokens,
        "decode_tps": {
            "api": api_decode,
            "direct": direct_decode,
            "ratio": api_decode / direct_decode,
            "met": api_decode / direct_decode >= 0.95,
        },
        "ttft_s": {
            "api": api_ttft,
            "direct": direct_ttft,
            "added_ms": (api_ttft - direct_ttft) * 1000,
            "met": (api_ttft - direct_ttft) <= 0.010,
        },
        "eight_clients": eight,
    }


def print_table(result: dict[str, Any]) -> None:
    decode, ttft, eight = result["decode_tps"], result["ttft_s"], result["eight_clients"]
    print(
        f"model {result['model']}, {result['threads']} threads, median of {result['repeats']}, "
        f"answer tokens {result['answer_tokens']}"
    )
    print(f"{'measure':<26}{'api':>10}{'direct':>10}{'vs direct':>12}{'target':>10}  met")
    print(
        f"{'decode tokens/s':<26}{decode['api']:>10.1f}{decode['direct']:>10.1f}"
        f"{decode['ratio']:>12.3f}{'>= 0.95':>10}  {'yes' if decode['met'] else 'NO'}"
    )
    print(
        f"{'time to first token (ms)':<26}{ttft['api'] * 1000:>10.1f}"
        f"{ttft['direct'] * 1000:>10.1f}{ttft['added_ms']:>+10.1f}ms{'<= +10':>10}"
        f"  {'yes' if ttft['met'] else 'NO'}"
    )
    print(
        f"eight clients at once: {eight['answered']}/{eight['clients']} answered, "
        f"{eight['total_tokens']} tokens in {eight['wall_s']:.1f} s = "
        f"{eight['total_tps']:.1f} tokens/s in all, longest wait for a first token "
        f"{eight['longest_wait_s']:.2f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="GGUF file (default: the SmolLM2 test model)")
    parser.add_argument("--threads", type=int, default=detect_hardware().physical_cores)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/api.json")
    args = parser.parse_args()
    if args.model is None:
        from tests.support import smollm2_path

        args.model = smollm2_path()
    result = measure(args.model, args.threads, args.repeats)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
