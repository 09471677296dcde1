"""Load progress in the terminal (only on a terminal) and Ctrl+C during a load, with the real
models: SmolLM2 and, where a load must take a moment, Gemma 3 270M."""

from __future__ import annotations

import io
import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.cli import EXIT_INTERRUPTED, main
from assistant.cli.load_meter import LoadMeter
from assistant.engine import load_progress
from assistant.models.store import ModelStore
from tests.support import gemma_base_path

QUESTION = "What is the capital of France?"


# --- the meter alone -----------------------------------------------------------------------------


def test_the_meter_writes_one_line_and_erases_it() -> None:
    stream = io.StringIO()
    meter = LoadMeter("smollm2", stream, show=True)
    meter.start()
    assert meter(0.0) is True and meter(0.421) is True and meter(1.0) is True
    meter.clear()
    written = stream.getvalue()
    assert written.split("\r\x1b[K") == [
        "",
        "Loading smollm2…",
        "Loading smollm2… 0 %",
        "Loading smollm2… 42 %",
        "Loading smollm2… 100 %",
        "",
    ]
    assert "\n" not in written


def test_a_hidden_meter_writes_nothing_but_still_stops_the_load() -> None:
    stream = io.StringIO()
    meter = LoadMeter("smollm2", stream, show=False)
    meter.start()
    assert meter(0.5) is True
    meter.interrupt()
    assert meter(0.6) is False
    meter.clear()
    assert stream.getvalue() == ""


# --- the real command, on a terminal and off it --------------------------------------------------


def _run_with_stderr_on_a_terminal(*args: str, interrupt: bool = False) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe); with ``interrupt``, press
    Ctrl+C once the load has begun. Returns the exit code, stdout and the terminal's text."""
    main_fd, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant", *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    os.close(terminal)
    seen = b""
    interrupted = False
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
        if interrupt and not interrupted and b"Loading" in seen:
            process.send_signal(signal.SIGINT)
            interrupted = True
    os.close(main_fd)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    process.stdout.close()
    return process.wait(timeout=120), out, seen.decode(errors="replace")


def test_ask_shows_load_progress_on_a_terminal(model_path: Path) -> None:
    code, out, terminal = _run_with_stderr_on_a_terminal(
        "ask", "--model-path", str(model_path), "--temperature", "0", QUESTION
    )
    assert code == 0, terminal
    assert "Paris" in out
    assert "Loading SmolLM2-135M-Instruct.Q4_1… 100 %" in terminal
    assert "Loading" not in out


def test_ask_json_on_a_terminal_prints_no_meter(model_path: Path) -> None:
    code, out, terminal = _run_with_stderr_on_a_terminal(
        "ask", "--model-path", str(model_path), "--temperature", "0", "--json", QUESTION
    )
    assert code == 0, terminal
    assert "Paris" in json.loads(out)["text"]
    assert "Loading" not in terminal


def test_no_meter_when_stderr_is_not_a_terminal(model_path: Path) -> None:
    # A short, greedy answer: the meter is the point, and a loaded machine writes slowly.
    short = ["--temperature", "0", "--max-tokens", "16"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "assistant",
            "ask",
            "--model-path",
            str(model_path),
            *short,
            QUESTION,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Loading" not in result.stderr and "\x1b" not in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_a_load_ends_cleanly() -> None:
    # Gemma 3 270M takes about a second to load here: Ctrl+C lands inside the load.
    code, out, terminal = _run_with_stderr_on_a_terminal(
        "ask", "--model-path", str(gemma_base_path()), QUESTION, interrupt=True
    )
    assert code == EXIT_INTERRUPTED
    assert "Loading gemma-3-270m-q4_k_m was cancelled." in terminal
    assert "Traceback" not in terminal and "Exception ignored" not in terminal
    assert out == ""


# --- Ctrl+C at a known moment: raised from inside llama.cpp's first progress report -----------


@pytest.fixture
def ctrl_c_in_load() -> Iterator[list[int]]:
    """Press Ctrl+C (a real SIGINT to this process) at the first progress report of the loads
    whose numbers (1 = the first load) are in the returned list."""
    which: list[int] = [1]
    relays: list[object] = []
    original = load_progress._ProgressRelay.report

    def report(self: load_progress._ProgressRelay, fraction: float) -> bool:
        if self not in relays:
            relays.append(self)
            if len(relays) in which:
                signal.raise_signal(signal.SIGINT)
        return original(self, fraction)

    load_progress._ProgressRelay.report = report  # type: ignore[method-assign]
    try:
        yield which
    finally:
        load_progress._ProgressRelay.report = original  # type: ignore[method-assign]


def test_ctrl_c_cancels_ask_with_a_message_and_exit_code(
    model_path: Path, ctrl_c_in_load: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["ask", "--model-path", str(model_path), "--max-tokens", "16", QUESTION])
    captured = capsys.readouterr()
    assert code == EXIT_INTERRUPTED
    assert captured.err.strip() == "Loading SmolLM2-135M-Instruct.Q4_1 was cancelled."
    assert captured.out == ""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # given back

    # The next load in the same process works.
    ctrl_c_in_load.clear()
    assert main(["ask", "--model-path", str(model_path), "--temperature", "0", QUESTION]) == 0
    assert "Paris" in capsys.readouterr().out


def test_ctrl_c_while_switching_models_in_chat_keeps_the_old_one(
    model_path: Path,
    ctrl_c_in_load: list[int],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model_id = ModelStore().import_file(model_path).id
    ctrl_c_in_load[:] = [2]  # the switch, not the first load
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"/model {model_id}\n{QUESTION}\n/exit\n"))
    code = main(["chat", "--model-path", str(model_path), "--temperature", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (
        f"Loading {model_id} was cancelled. Still using SmolLM2-135M-Instruct.Q4_1." in captured.err
    )
    assert "Paris" in captured.out  # the chat went on with the old model
