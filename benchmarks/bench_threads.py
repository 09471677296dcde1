"""What other programs' work costs an answer, with every core and with the cores left free.

In one run, on one model: the same answer (a ~420-token prompt read afresh, 24 tokens
written) by an engine pinned to every physical core and by one that picks its threads
(``assistant.engine.threads``): on a quiet processor, beside one busy process, beside one
busy process per physical core (plain Python loops at normal priority), and beside another
process answering with llama.cpp on every core. Reported: median seconds per answer, their
ratio to the pinned engine on the quiet processor, and picking's speed against pinning's.
Targets (picking as fast as pinning, at least): 0.95 on a quiet processor, 1.05 beside one
busy process, 0.85 beside one per core, 1.0 beside another llama.cpp.

Usage: python benchmarks/bench_threads.py [--model FILE.gguf] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from assistant.engine.base import ChatMessage, GenerationSettings  # noqa: E402
from assistant.engine.local import LocalEngine  # noqa: E402
from assistant.models.hardware import detect_hardware  # noqa: E402

DOCUMENT = "Here is an inventory. Read it, then answer questions about it.\n" + "\n".join(
    f"Item {i}: a {['red', 'blue', 'green'][i % 3]} box of notes about topic {i * 7 % 13}."
    for i in range(1, 25)
)
CHAT = [
    ChatMessage("system", "You are a helpful assistant."),
    ChatMessage("user", DOCUMENT + "\nWhat is item 3 about?"),
]
SETTINGS = GenerationSettings(temperature=0.0, max_tokens=24, repeat_penalty=1.0)
PAUSE_S = 1.0  # the user reading and typing between answers: what the engine measures


def answer_times(engine: LocalEngine, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        engine.clear_context()
        time.sleep(PAUSE_S)
        started = time.perf_counter()
        engine.stream_chat(CHAT, SETTINGS).run()
        times.append(time.perf_counter() - started)
    return times


# Another program running llama.cpp on every core (another assistant, a second instance).
OTHER_LLAMA = """
import sys, llama_cpp
llama = llama_cpp.Llama(sys.argv[1], n_ctx=512, n_threads={cores}, verbose=False)
while True:
    llama.reset()
    llama.create_completion("Once upon a time", max_tokens=64, temperature=0.0)
"""


def busy_processes(count: int, model: Path, llama: int = 0) -> list[subprocess.Popen[bytes]]:
    """``count`` busy Python loops, and ``llama`` processes answering on every core."""
    cores = detect_hardware().physical_cores
    commands = [[sys.executable, "-c", "while True: pass"]] * count
    commands += [[sys.executable, "-c", OTHER_LLAMA.format(cores=cores), str(model)]] * llama
    started = [subprocess.Popen(c, stdin=subprocess.DEVNULL) for c in commands]
    if llama:
        time.sleep(3.0)  # loaded and answering
    return started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a GGUF (default: the test model)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.model is None:
        from tests.support import smollm2_path

        args.model = smollm2_path()
    cores = detect_hardware().physical_cores
    pinned = LocalEngine(args.model, n_ctx=1024, n_threads=cores)
    picking = LocalEngine(args.model, n_ctx=1024)
    loads = {
        "quiet": (0, 0),
        "1 busy": (1, 0),
        f"{cores} busy": (cores, 0),
        "other llama.cpp": (0, 1),
    }
    results: dict[str, dict[str, float]] = {}
    try:
        for load, (count, llama) in loads.items():
            loops = busy_processes(count, args.model, llama)
            try:
                for name, engine in (("pinned", pinned), ("picking", picking)):
                    seconds = statistics.median(answer_times(engine, args.repeats))
                    results[f"{load} {name}"] = {"seconds": seconds, "threads": engine.n_threads}
            finally:
                for loop in loops:
                    loop.kill()
                    loop.wait()
    finally:
        pinned.close()
        picking.close()
    base = results["quiet pinned"]["seconds"]
    print(f"{args.model.name}, {cores} physical cores, {args.repeats} answers each")
    for key, row in results.items():
        ratio = row["seconds"] / base
        print(f"  {key:<24} {row['seconds']:7.2f} s  {ratio:5.2f}x  threads {row['threads']}")
    ok = True
    targets = {"quiet": 0.95, "1 busy": 1.05, f"{cores} busy": 0.85, "other llama.cpp": 1.0}
    for load, target in targets.items():
        gain = results[f"{load} pinned"]["seconds"] / results[f"{load} picking"]["seconds"]
        ok = ok and gain >= target
        print(f"{load}: picking is {gain:.2f}x as fast as pinning (target >= {target:.2f})")
    print(json.dumps(results))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
