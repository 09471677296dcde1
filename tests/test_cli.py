"""The terminal front end, run as a real process the way a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assistant.chat.history import HistoryStore
from assistant.paths import app_paths

QUESTION = "What is the capital of France?"


def cli(*args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        input=stdin,
    )


def test_ask_streams_answer_and_saves_it(model_path: Path) -> None:
    result = cli("ask", "--model-path", str(model_path), "--temperature", "0", QUESTION)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout

    listing = cli("history", "list")
    assert listing.returncode == 0
    assert "What is the capital of France?" in listing.stdout

    history = HistoryStore(app_paths().history_db)
    (conversation,) = history.list_conversations()
    messages = history.messages(conversation.id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].status == "complete"
    assert "Paris" in messages[1].text
    assert messages[1].stats["completion_tokens"] > 0
    assert conversation.system_prompt  # the default system prompt from settings


def test_ask_json_and_follow_up_in_same_conversation(model_path: Path) -> None:
    first = cli("ask", "--model-path", str(model_path), "--temperature", "0", "--json", QUESTION)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    for key in ("text", "model", "prompt_tokens", "completion_tokens", "ttft_s", "tokens_per_s"):
        assert key in data
    assert "Paris" in data["text"]

    second = cli(
        "ask",
        "--model-path",
        str(model_path),
        "--temperature",
        "0",
        "--json",
        "--conversation",
        str(data["conversation_id"]),
        "And of Germany?",
    )
    assert second.returncode == 0, second.stderr
    follow_up = json.loads(second.stdout)
    assert follow_up["conversation_id"] == data["conversation_id"]
    assert follow_up["prompt_tokens"] > data["prompt_tokens"]
    messages = HistoryStore(app_paths().history_db).messages(data["conversation_id"])
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]


def test_history_search_export_import(model_path: Path, tmp_path: Path) -> None:
    answer = cli("ask", "--model-path", str(model_path), "--temperature", "0", "--json", QUESTION)
    conversation_id = json.loads(answer.stdout)["conversation_id"]

    found = cli("history", "search", "capital")
    assert found.returncode == 0 and "capital" in found.stdout

    markdown = cli("history", "export", str(conversation_id), "--format", "md")
    assert markdown.returncode == 0 and QUESTION in markdown.stdout

    exported = tmp_path / "chat.json"
    result = cli("history", "export", str(conversation_id), "--format", "json", "-o", str(exported))
    assert result.returncode == 0
    imported = cli("history", "import", str(exported))
    assert imported.returncode == 0, imported.stderr
    assert len(HistoryStore(app_paths().history_db).list_conversations()) == 2

    shown = cli("history", "show", str(conversation_id))
    assert "Paris" in shown.stdout


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    missing = cli("ask", "--model-path", str(tmp_path / "none.gguf"), "hi")
    assert missing.returncode == 1
    assert missing.stderr.strip().count("\n") == 0
    assert "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr

    not_model = tmp_path / "notes.gguf"
    not_model.write_text("hello")
    bad = cli("ask", "--model-path", str(not_model), "hi")
    assert bad.returncode == 1 and "not a GGUF" in bad.stderr

    no_model = cli("ask", "hi")
    assert no_model.returncode == 1 and "No model is installed" in no_model.stderr
    # The command that fixes it, on a line of its own, after the error line.
    assert no_model.stderr.splitlines() == [
        no_model.stderr.splitlines()[0],
        "  Run: offline-assistant models list",
    ]

    unknown = cli("history", "show", "999")
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr


# Generous waits: on a machine whose cores are busy with other work, loading and the first
# words can take minutes; only a hang should fail this.
@pytest.mark.timeout(600)
def test_ctrl_c_keeps_partial_answer(model_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "assistant",
            "ask",
            "--model-path",
            str(model_path),
            "--temperature",
            "0",
            "--max-tokens",
            "4000",
            "Write a very long story about a dragon who learns to cook.",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    received = ""
    deadline = time.monotonic() + 300
    while len(received) < 40 and time.monotonic() < deadline:
        received += process.stdout.read(1)
    assert len(received) >= 40, "no answer within 5 minutes"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr

    history = HistoryStore(app_paths().history_db)
    (conversation,) = history.list_conversations()
    answer = history.messages(conversation.id)[-1]
    assert answer.role == "assistant"
    assert answer.status == "interrupted"
    assert answer.text.startswith(received.strip()[:20])


def test_help() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert "ask" in result.stdout


def test_chat_session(model_path: Path) -> None:
    script = "What is the capital of France?\n/new\nHello\n/exit\n"
    result = cli("chat", "--model-path", str(model_path), "--temperature", "0", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    conversations = HistoryStore(app_paths().history_db).list_conversations()
    assert len(conversations) == 2


def test_unknown_or_missing_model_names_the_fix() -> None:
    not_downloaded = cli("ask", "--model", "qwen3-4b", "hi")
    assert not_downloaded.returncode == 1
    assert "not downloaded yet. Download it first." in not_downloaded.stderr
    assert "  Run: offline-assistant models pull qwen3-4b\n" in not_downloaded.stderr
    typo = cli("ask", "--model", "qwen3-4bb", "hi")
    assert typo.returncode == 1 and "Did you mean qwen3-4b" in typo.stderr


def test_chat_keeps_the_old_model_when_a_switch_fails(model_path: Path, tmp_path: Path) -> None:
    from assistant.models.store import InstalledModel, ModelStore

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(model_path.read_bytes()[: model_path.stat().st_size // 2])
    ModelStore().register(
        InstalledModel(
            id="broken",
            name="Broken",
            path=broken,
            size_bytes=broken.stat().st_size,
            source="import",
            owned=False,
        )
    )
    script = "/model broken\nWhat is the capital of France?\n/exit\n"
    result = cli("chat", "--model-path", str(model_path), "--temperature", "0", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "incomplete" in result.stderr and "Still using" in result.stderr
    assert "Paris" in result.stdout
