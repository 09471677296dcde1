#!/usr/bin/env python3
"""Mutation testing of the core, one module at a time (slow: never part of CI).

    python tools/mutate.py settings          # mutate assistant/settings.py, run its tests
    python tools/mutate.py --report          # the figures of every module run so far
    python tools/mutate.py history --survivors   # each surviving mutant as a diff

Run it with the project's interpreter (the one with the dev extras: mutmut, pytest). Each module
gets its own scratch project under ``build/mutation/<module>/``: a copy of ``assistant/``,
``tests/`` and a ``pyproject.toml`` whose ``[tool.mutmut]`` names that module and only the tests
that exercise it, so mutmut's first pass (which maps tests to functions by running the whole
selection once) stays short, and each mutant then runs only the tests that reach its function.
mutmut imports the mutated copy from ``mutants/`` ahead of any installed or editable
``assistant``; ``PYTHONPATH`` is cleared so the checkout itself is never imported instead, and
children the tests start get the copy's path from ``tests.support.child_env``.

A second run of a module reuses the verdicts of mutants whose function did not change (new
tests are mapped to functions first); ``--retry`` runs the survivors again, after tests were added
to kill them; ``--fresh`` starts that module over. Surviving mutants that cannot be killed are
listed with their reason in ``tests/mutation/equivalent.md``; ``--report`` counts them apart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.md"
# Plain pytest plugins off: test order must not change between mutmut's passes, and nothing is
# written outside the scratch copy.
COMMON_ARGS = ["-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]


@dataclass(frozen=True)
class Target:
    """One unit of mutation: the files mutated and the tests that must notice."""

    sources: list[str]
    tests: list[str]
    # The quick lane where it covers the module; the engine needs the real model.
    markers: str = "not slow"
    extra_args: list[str] = field(default_factory=list)
    # Environment for the tests, e.g. the tiny model standing in for the real one.
    env: dict[str, str] = field(default_factory=dict)


TARGETS: dict[str, Target] = {
    "atomic": Target(["assistant/atomic.py"], ["tests/test_atomic.py"]),
    "settings": Target(["assistant/settings.py"], ["tests/test_settings.py", "tests/test_core.py"]),
    "transfer": Target(["assistant/models/transfer.py"], ["tests/test_transfer.py"]),
    "history": Target(
        ["assistant/chat/history.py", "assistant/chat/migrations.py"],
        # test_hardening.py holds the damage, read-only and recovery paths (its slow tests, which
        # load the model, are left out by the marker).
        [
            "tests/test_history.py",
            "tests/test_history_details.py",
            "tests/test_history_import.py",
            "tests/test_history_clock.py",
            "tests/test_search.py",
            "tests/test_hardening.py",
        ],
    ),
    "downloads": Target(
        ["assistant/models/downloads.py"],
        # The quick tests pull a small runnable GGUF (test_downloads_details.py checks their
        # messages, requests, reports and results in detail); test_downloads.py moves the real
        # model (slow lane, left out by the marker) and adds the TLS, timeout and gated-repo cases.
        [
            "tests/test_downloads_quick.py",
            "tests/test_downloads_details.py",
            "tests/test_downloads.py",
            "tests/test_hardening_downloads.py",
        ],
    ),
    # The cloud client and the hardware diagnosis run in the quick lane against loopback servers
    # and the doctor; the rest of the engine needs the real model, so its run takes hours.
    "cloud": Target(
        ["assistant/engine/cloud.py"], ["tests/test_cloud.py", "tests/test_cloud_wire.py"]
    ),
    "diagnose": Target(
        ["assistant/engine/cpu.py", "assistant/engine/diagnose.py"],
        ["tests/test_doctor.py", "tests/test_diagnose.py"],
    ),
    # The parts of engine/ that run without a model, with the quick lane's tests (the tiny
    # model's included): minutes, where "engine" below takes hours.
    "engine-parts": Target(
        [
            f"assistant/engine/{name}.py"
            for name in ("base", "llama_log", "load_progress", "prompt", "prompt_lookup", "threads")
        ],
        [
            "tests/test_engine.py",
            "tests/test_engine_received.py",
            "tests/test_model_memory.py",
            "tests/test_model_sampling.py",
            "tests/test_load_progress.py",
            "tests/test_threads.py",
            "tests/test_tiny_model.py",
            "tests/test_prompt.py",
            "tests/test_prompt_lookup.py",
            "tests/test_engine_base.py",
            "tests/test_llama_log.py",
        ],
    ),
    # The engine's model-bound parts, run on the tiny random-weight model
    # (OFFLINE_ASSISTANT_TEST_MODEL=tiny; tests that need SmolLM2's own answers are left out):
    # minutes per pass where SmolLM2 took hours.
    "engine": Target(
        [f"assistant/engine/{name}.py" for name in ("local", "state_cache", "kv_state")],
        [
            "tests/test_engine.py",
            "tests/test_engine_received.py",
            "tests/test_model_memory.py",
            "tests/test_model_sampling.py",
            "tests/test_load_progress.py",
            "tests/test_tiny_model.py",
            "tests/test_threads.py",
            "tests/test_engine_tiny.py",
            "tests/test_engine_drafting.py",
            "tests/test_state_cache.py",
        ],
        markers="not real_model",
        # A mutant that loops in the decode loop would otherwise hold its slot for mutmut's
        # CPU-time limit (30 times the tests' time): on the tiny model every test takes
        # seconds, so a minute means it hangs.
        extra_args=["-o", "timeout=60"],
        env={
            "OFFLINE_ASSISTANT_TEST_MODEL": "tiny",
            "OFFLINE_ASSISTANT_TESTS_STUCK_AFTER_S": "90",
            # mutmut forks each mutant's run from a process that has decoded on two threads,
            # and GNU OpenMP's thread pool does not survive a fork: the child's first parallel
            # decode waits forever, using no CPU, so no time limit ends it. One OpenMP thread
            # per process (ggml follows the limit) never starts the pool.
            "OMP_THREAD_LIMIT": "1",
        },
    ),
}

# mutmut's exit code per mutant (mutmut.stats.status_by_exit_code). Any other code means the
# mutant was noticed: a test failed, pytest errored, the run hung past its CPU-time limit or died.
SURVIVED = 0
NO_TESTS = {5, 33}  # no selected test reaches the function
NOT_RUN = {2, 34}  # interrupted, skipped


def _mutmut_section(target: Target) -> str:
    args = list(COMMON_ARGS)
    if target.markers:
        args += ["-m", target.markers]
    args += target.extra_args
    lines = [
        "[tool.mutmut]",
        'source_paths = ["assistant"]',
        f"only_mutate = {json.dumps(target.sources)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(target.tests)}",
        f"pytest_add_cli_args = {json.dumps(args)}",
        # The scratch copy is not a git checkout.
        "use_git_change_detection = false",
    ]
    return "\n".join(lines) + "\n"


def _pyproject_for(target: Target) -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    # Drop any [tool.mutmut] of the checkout: the scratch project has exactly one, ours.
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    return text.rstrip("\n") + "\n\n" + _mutmut_section(target)


def prepare(name: str, fresh: bool) -> Path:
    """Bring the module's scratch project up to date with the checkout; return its path."""
    target = TARGETS[name]
    work = WORK / name
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    for folder in ("assistant", "tests"):
        # copy2 keeps modification times: mutmut re-mutates only files that changed.
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(ROOT / folder, work / folder, dirs_exist_ok=True, ignore=ignore)
    (work / "pyproject.toml").write_text(_pyproject_for(target), encoding="utf-8")
    return work


def _env(name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(TARGETS[name].env)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    return env


def run(name: str, max_children: int, mutants: list[str]) -> int:
    work = WORK / name
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    command += mutants
    if hasattr(os, "nice"):
        command = ["nice", "-n", "19", *command]
    print(f"== {name}: {' '.join(TARGETS[name].sources)}", flush=True)
    return subprocess.call(command, cwd=work, env=_env(name))


def verdicts(name: str) -> dict[str, int | None]:
    """Every mutant of a module with mutmut's exit code, from its ``.meta`` files."""
    found: dict[str, int | None] = {}  # None: not run yet
    for meta in sorted((WORK / name / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        found.update(data.get("exit_code_by_key", {}))
    return found


def _function_of(key: str) -> str:
    """``pkg.mod.xǁClassǁmethod__mutmut_7`` -> ``xǁClassǁmethod`` (as mutmut hashes them)."""
    return key.rsplit(".", 1)[-1].rsplit("__mutmut_", 1)[0]


def snapshot(name: str) -> dict[str, tuple[int | None, str | None]]:
    """Each mutant's verdict, with the hash of its function's source when it was given."""
    found: dict[str, tuple[int | None, str | None]] = {}
    for meta in sorted((WORK / name / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        hashes = data.get("hash_by_function_name", {})
        for key, code in data.get("exit_code_by_key", {}).items():
            found[key] = (code, hashes.get(_function_of(key)))
    return found


def keep_kills(name: str, before: dict[str, tuple[int | None, str | None]]) -> int:
    """Give back the kills mutmut forgot. It forgets every verdict when the selected tests
    change (a test file added to a module's run), so a ``--retry`` would show the earlier
    kills as not run. A kill still holds when tests were only added or tightened and the
    mutant's function is unchanged (same source hash): those are restored. Returns how many."""
    restored = 0
    for meta in sorted((WORK / name / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        hashes = data.get("hash_by_function_name", {})
        codes = data.get("exit_code_by_key", {})
        changed = False
        for key, code in codes.items():
            old_code, old_hash = before.get(key, (None, None))
            same = old_hash is not None and old_hash == hashes.get(_function_of(key))
            if code is None and _killed(old_code) and same:
                codes[key] = old_code
                restored += 1
                changed = True
        if changed:
            meta.write_text(json.dumps(data), encoding="utf-8")
    return restored


def equivalent_names() -> set[str]:
    """Mutant names listed in equivalent.md (each on a line starting with ``- `name```)."""
    if not EQUIVALENT.exists():
        return set()
    return set(re.findall(r"^- `([^`]+)`", EQUIVALENT.read_text(encoding="utf-8"), re.M))


def _killed(code: int | None) -> bool:
    return code is not None and code != SURVIVED and code not in NO_TESTS and code not in NOT_RUN


def report(names: list[str]) -> None:
    """Per module: mutants, killed, listed as equivalent, left; the share killed of all mutants
    and of those that can be killed at all (equivalent ones left out)."""
    equivalent = equivalent_names()
    print(
        f"{'module':<10} {'mutants':>7} {'killed':>7} {'equiv.':>7} {'left':>5} {'killed%':>8}"
        f" {'of killable':>12}"
    )
    for name in names:
        found = verdicts(name)
        if not found:
            print(f"{name:<10} not run")
            continue
        killed = sum(1 for code in found.values() if _killed(code))
        eq = sum(1 for k, c in found.items() if not _killed(c) and k in equivalent)
        left = len(found) - killed - eq
        share = 100.0 * killed / len(found)
        of_killable = 100.0 * killed / max(1, len(found) - eq)
        print(
            f"{name:<10} {len(found):>7} {killed:>7} {eq:>7} {left:>5} {share:>7.1f}%"
            f" {of_killable:>11.1f}%"
        )
        for key, code in sorted(found.items()):
            if not _killed(code) and key not in equivalent:
                kind = (
                    "survived"
                    if code == SURVIVED
                    else "no tests"
                    if code in NO_TESTS
                    else "not run"
                )
                print(f"    {key}: {kind}")


def survivors(name: str) -> list[str]:
    """The module's mutants neither killed nor listed as equivalent."""
    equivalent = equivalent_names()
    return [
        key
        for key, code in sorted(verdicts(name).items())
        if not _killed(code) and key not in equivalent
    ]


def show_survivors(name: str) -> None:
    for key in survivors(name):
        subprocess.call(
            [sys.executable, "-m", "mutmut", "show", key], cwd=WORK / name, env=_env(name)
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"any of: {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier verdicts")
    parser.add_argument("--max-children", type=int, default=1, help="mutants run at once")
    parser.add_argument("--mutant", action="append", default=[], help="re-run these (globs)")
    parser.add_argument(
        "--retry",
        action="store_true",
        help="run again every mutant not killed and not listed as equivalent (after new tests)",
    )
    parser.add_argument("--report", action="store_true", help="print figures, run nothing")
    parser.add_argument("--survivors", action="store_true", help="print surviving diffs")
    args = parser.parse_args(argv)
    names = args.modules or list(TARGETS)
    unknown = [name for name in names if name not in TARGETS]
    if unknown:
        parser.error(f"unknown module {unknown[0]!r}; choose from {', '.join(TARGETS)}")
    if args.survivors:
        for name in names:
            show_survivors(name)
        return 0
    if not args.report:
        for name in names:
            mutants = list(args.mutant)
            before = snapshot(name) if (WORK / name).exists() and not args.fresh else {}
            if args.retry:
                mutants += survivors(name)
                if not mutants:
                    continue
            prepare(name, args.fresh)
            code = run(name, args.max_children, mutants)
            if mutants and before:
                print(f"== {name}: {keep_kills(name, before)} earlier kills kept", flush=True)
            if code != 0:
                return code
    report(names)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
