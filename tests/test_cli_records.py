"""What the terminal front end leaves behind and tells the user, run as a real process.

A ``kill -9`` mid-answer must leave the answer so far in the history (the "honest record"
promise), and an answer that had to leave old turns out must say so.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from assistant.chat.history import HistoryStore
from assistant.paths import app_paths
from assistant.settings import Settings
from tests.support import child_env

# SmolLM2 at temperature 0 writes this story to the 3000-token limit (20 s or more); it gave up
# counting to 1000 after 137 tokens, which a fast processor streams in about a second, so the
# answer could end (saved complete) between the first save while streaming and the kill.
LONG_ANSWER = "Write a very long story about a lighthouse keeper, at least 3000 words."


def _assistant_rows(db: Path) -> list[tuple[str, str]]:
    """The assistant rows as another process sees them right now: (status, text)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT status, text FROM messages WHERE role = 'assistant' ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is still being created
        return []
    finally:
        conn.close()
    return [(str(status), str(text)) for status, text in rows]


def test_kill_9_mid_answer_leaves_the_answer_so_far_saved(model_path: Path) -> None:
    db = app_paths().history_db
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
            "3000",
            LONG_ANSWER,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(),
    )
    try:
        deadline = time.monotonic() + 240
        rows: list[tuple[str, str]] = []
        # Wait until the answer in progress has been written once, while it still streams.
        while time.monotonic() < deadline and process.poll() is None:
            rows = _assistant_rows(db)
            if rows and rows[-1][1]:
                break
            time.sleep(0.05)
        assert process.poll() is None, (
            "the answer ended before any of it was saved while streaming: "
            f"rows={rows!r}, stderr={process.stderr.read().decode() if process.stderr else ''}"
        )
        assert rows and rows[-1][1], "no text saved within four minutes"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert process.stdout is not None
        printed = process.stdout.read().decode("utf-8", errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL

    with HistoryStore(db) as history:
        (conversation,) = history.list_conversations()
        saved = history.messages(conversation.id)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[0].text == LONG_ANSWER and saved[0].status == "complete"
    answer = saved[1]
    assert answer.status == "interrupted"
    assert answer.text and printed.startswith(answer.text)  # what the user had seen, or less
    assert answer.model == model_path.stem


def test_cli_says_when_old_messages_were_left_out(model_path: Path) -> None:
    paths = app_paths().ensure()
    settings = Settings.load(paths.settings_file)
    settings.set("context_size", 512)
    settings.save()
    with HistoryStore(paths.history_db) as history:
        conversation = history.create_conversation(system_prompt="You are a helpful assistant.")
        for i in range(12):
            history.add_message(conversation.id, "user", f"Question {i}: " + "rivers " * 20)
            history.add_message(conversation.id, "assistant", "Rivers flow to the sea. " * 8)

    result = subprocess.run(
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
            "16",
            "--conversation",
            str(conversation.id),
            "What is the capital of France?",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=child_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "oldest message(s) left out to fit the model's context window" in result.stderr
    count = int(result.stderr.split("note: ")[1].split()[0])
    assert count >= 2 and count % 2 == 0  # whole exchanges
