"""Download benchmark: our verified, resumable pull against a plain HTTP GET, and resume cost.

The fake Hub (``tests/hub_server.py``) serves the real SmolLM2 GGUF from its own process.

1. Throughput, twice: on the unthrottled loopback (CPU-bound: it measures our overhead) and with
   the server throttled to a network speed (``--net-rate-mbps``, 100 MB/s). Plain = a streaming
   GET of the same CDN URL into a file, no checks. Pull = ``Downloader.pull``: HEAD, ranged GET,
   sha256 while writing, fsync, GGUF header check, install into the Hub cache, register.
   "transfer" times the pull from just before its GET to the last byte written and hashed;
   "end to end" includes the per-file fixed costs. Best and median of ``--runs``, alternating
   which goes first. Target: transfer >= 0.9x the plain GET.
2. Resume after ``kill -9`` at 50 %: a ``python -m assistant models pull`` process is killed when
   half the file is on disk (server throttled, as a real network is, so the kill lands near
   50 %), a new one finishes it; bytes the server sent twice, as a share of the file.
   Target: <= 1 %.

Run: ``.venv/bin/python -m benchmarks.bench_download``. Prints a table and writes
``benchmarks/results/bench_download-<time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPO = "bench/smol"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _serve(conn: Any, model: str) -> None:
    """The fake Hub, in its own process like a real server (and off the client's GIL)."""
    sys.path.insert(0, str(ROOT))
    from tests.hub_server import FakeHub

    hub = FakeHub().start()
    entry = hub.add_file(REPO, FILENAME, Path(model))
    conn.send((hub.url, hub.cdn_url, entry.sha256))
    while True:
        command, argument = conn.recv()
        if command == "rate":
            hub.faults.rate_bps = argument
            conn.send(None)
        elif command == "clear":
            hub.clear_log()
            conn.send(None)
        elif command == "served":
            conn.send((hub.bytes_served(), [r.range for r in hub.file_gets()]))
        else:
            hub.stop()
            conn.send(None)
            return


class HubProcess:
    def __init__(self, model: Path) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, str(model)), daemon=True)
        self._process.start()
        self.url, self.cdn_url, self.sha256 = self._conn.recv()

    def ask(self, command: str, argument: Any = None) -> Any:
        self._conn.send((command, argument))
        return self._conn.recv()

    def close(self) -> None:
        self.ask("stop")
        self._process.join(10)


def plain_get(client: Any, url: str, target: Path) -> float:
    """Seconds from sending the GET to the last byte written (a warm client, like ours)."""
    start = time.perf_counter()
    with client.stream("GET", url) as response:
        response.raise_for_status()
        with target.open("wb") as sink:
            for chunk in response.iter_raw():
                sink.write(chunk)
    return time.perf_counter() - start


def our_pull(home: Path) -> tuple[float, float]:
    """Seconds for the whole pull, and for its transfer phase alone (first request to last
    byte written and hashed)."""
    from assistant.models.downloads import Downloader, DownloadProgress
    from assistant.models.hardware import Hardware
    from assistant.models.store import ModelStore
    from assistant.paths import app_paths

    os.environ["OFFLINE_ASSISTANT_HOME"] = str(home / "app")
    os.environ["HF_HOME"] = str(home / "hf")
    hw = Hardware(
        total_ram=16 << 30,
        available_ram=12 << 30,
        physical_cores=2,
        logical_cores=2,
        gpu_offload=False,
    )
    downloader = Downloader(ModelStore(app_paths().ensure()), hardware=hw, token=lambda: None)
    marks: dict[str, float] = {}

    def on_progress(progress: DownloadProgress) -> None:
        # The transfer phase: from just before the GET to the last byte written and hashed.
        if progress.phase == "downloading" and progress.done == 0:
            marks.setdefault("start", time.perf_counter())
        elif progress.phase == "verifying":
            marks.setdefault("end", time.perf_counter())

    start = time.perf_counter()
    result = downloader.pull(REPO, FILENAME, on_progress=on_progress)
    elapsed = time.perf_counter() - start
    assert result.fetched_bytes == result.model.size_bytes
    return elapsed, marks["end"] - marks["start"]


def kill_and_resume(hub: HubProcess, home: Path, size: int, rate: float) -> dict[str, Any]:
    from assistant.models.hub_cache import HubCache

    env = {
        **os.environ,
        "OFFLINE_ASSISTANT_HOME": str(home / "app"),
        "HF_HOME": str(home / "hf"),
        "HF_ENDPOINT": hub.url,
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "PYTHONPATH": str(ROOT),
    }
    partial = HubCache(home / "hf" / "hub").partial_path(REPO, hub.sha256)
    command = [sys.executable, "-m", "assistant", "models", "pull", REPO, "--file", FILENAME]
    hub.ask("clear")
    hub.ask("rate", rate)
    first = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    while not (partial.exists() and partial.stat().st_size >= size // 2):
        if first.poll() is not None:
            raise RuntimeError("the first pull ended before it could be killed")
        time.sleep(0.002)
    first.send_signal(signal.SIGKILL)
    first.wait()
    on_disk = partial.stat().st_size
    hub.ask("rate", None)
    served_first, _ = hub.ask("served")
    subprocess.run(
        command, env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    served_total, ranges = hub.ask("served")
    return {
        "killed_at_fraction": on_disk / size,
        "served_to_killed_process": served_first,
        "kept_on_disk": on_disk,
        "resume_range": ranges[-1],
        "refetched_bytes": served_total - size,
        "refetched_fraction": (served_total - size) / size,
        "throttle_bps": rate,
    }


def measure(client: Any, url: str, scratch: Path, runs: int, size: int) -> dict[str, Any]:
    """Alternate plain GETs and pulls; best and median throughput of each, in MB/s."""
    scratch.mkdir(parents=True, exist_ok=True)
    plain, total, transfer = [], [], []
    for run in range(runs):
        # Alternate who goes first, and start each from clean page cache: the previous run's
        # dirty pages being written back would otherwise slow whichever comes next.
        for who in ("plain", "pull") if run % 2 == 0 else ("pull", "plain"):
            os.sync()
            if who == "plain":
                target = scratch / f"plain-{run}"
                plain.append(plain_get(client, url, target))
                target.unlink()
            else:
                total_s, transfer_s = our_pull(scratch / f"ours-{run}")
                total.append(total_s)
                transfer.append(transfer_s)

    def mbps(seconds: list[float]) -> dict[str, float]:
        return {
            "best": size / min(seconds) / 1e6,
            "median": size / statistics.median(seconds) / 1e6,
        }

    result: dict[str, Any] = {
        "plain": mbps(plain),
        "transfer": mbps(transfer),
        "end_to_end": mbps(total),
    }
    result["seconds"] = {"plain": plain, "transfer": transfer, "end_to_end": total}
    result["fixed_cost_ms"] = (min(total) - min(transfer)) * 1000
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="runs on the unthrottled loopback")
    parser.add_argument(
        "--net-rate-mbps",
        type=float,
        default=100.0,
        help="server throttle for the network-speed runs, MB/s",
    )
    parser.add_argument("--net-runs", type=int, default=3)
    parser.add_argument(
        "--kill-rate-mbps", type=float, default=50.0, help="server throttle for the kill test, MB/s"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    import httpx2

    from tests.support import smollm2_path

    model = smollm2_path()
    size = model.stat().st_size
    hub = HubProcess(model)
    try:
        with tempfile.TemporaryDirectory() as scratch_dir:
            scratch = Path(scratch_dir)
            os.environ["HF_ENDPOINT"] = hub.url
            url = f"{hub.cdn_url}/blobs/{hub.sha256}"
            client = httpx2.Client()
            plain_get(client, url, scratch / "warm-up")
            loopback = measure(client, url, scratch / "loopback", args.runs, size)
            hub.ask("rate", args.net_rate_mbps * 1e6)
            network = measure(client, url, scratch / "network", args.net_runs, size)
            hub.ask("rate", None)
            kill = kill_and_resume(hub, scratch / "kill", size, args.kill_rate_mbps * 1e6)
    finally:
        hub.close()

    def ratio(scenario: dict[str, Any], phase: str) -> float:
        return float(scenario[phase]["best"] / scenario["plain"]["best"])

    rows: list[tuple[str, str, str]] = [("file", f"{FILENAME} ({size / 1e6:.1f} MB)", "")]
    for label, scenario in (
        ("loopback, unthrottled", loopback),
        (f"network at {args.net_rate_mbps:.0f} MB/s", network),
    ):
        rows += [
            (label, "best / median MB/s", "pull vs plain GET (best)"),
            ("  plain GET", "{best:.0f} / {median:.0f}".format(**scenario["plain"]), ""),
            (
                "  pull, transfer",
                "{best:.0f} / {median:.0f}".format(**scenario["transfer"]),
                f"{ratio(scenario, 'transfer'):.2f}x  (GET to last byte written and hashed)",
            ),
            (
                "  pull, end to end",
                "{best:.0f} / {median:.0f}".format(**scenario["end_to_end"]),
                f"{ratio(scenario, 'end_to_end'):.2f}x  (+{scenario['fixed_cost_ms']:.0f} ms: "
                "HEAD, fsync, GGUF check, install, register)",
            ),
        ]
    rows += [
        (
            "kill -9 at",
            f"{kill['killed_at_fraction'] * 100:.1f} %",
            f"resumed with Range: {kill['resume_range']}",
        ),
        (
            "re-fetched after kill",
            f"{kill['refetched_bytes'] / 1e3:.0f} KB ({kill['refetched_fraction'] * 100:.3f} %)",
            "PASS" if kill["refetched_fraction"] <= 0.01 else "FAIL (target <= 1 %)",
        ),
    ]
    width = max(len(name) for name, _, _ in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<22} {note}")
    transfer_ok = ratio(loopback, "transfer") >= 0.9
    print(
        f"\nthroughput target (transfer >= 0.9x plain GET on loopback): "
        f"{'PASS' if transfer_ok else 'FAIL'}; load average {os.getloadavg()[0]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )

    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"bench_download-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps(
            {
                "file_bytes": size,
                "loopback": loopback,
                "network": network,
                "network_rate_bps": args.net_rate_mbps * 1e6,
                "kill": kill,
                "cpu_count": os.cpu_count(),
                "load_average": os.getloadavg()[0],
            },
            indent=2,
        )
    )
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if transfer_ok and kill["refetched_fraction"] <= 0.01 else 1


if __name__ == "__main__":
    sys.exit(main())
