"""The engine's mechanics on the tiny random-weight model: quick, and exact.

What the engine does with a conversation does not depend on the answers being any good: which
settings reach it, where a chat's preamble ends, what it does with a saved state llama.cpp
refuses, how many prompt tokens it reads. The tiny model (``tests.model_files.write_tiny_llama``:
SmolLM2's tokenizer and template over random weights) runs all of it in milliseconds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import llama_cpp
import pytest

from assistant.disk import format_bytes
from assistant.engine import local
from assistant.engine.base import CancelToken, ChatMessage, GenerationSettings
from assistant.engine.local import LocalEngine
from assistant.engine.prompt import FALLBACK_WARNING
from assistant.engine.state_cache import StateCache
from assistant.errors import ContextOverflowError, InsufficientMemoryError
from assistant.models.hardware import detect_hardware, estimate_memory
from tests.model_files import ENDS_ANSWERS, without_chat_template, write_tiny_llama
from tests.support import gemma_base_path, smollm2_path

GREEDY = GenerationSettings(temperature=0.0, max_tokens=8, repeat_penalty=1.0)
SYSTEM = ChatMessage("system", "You are a helpful assistant who answers in one short line.")
USER = ChatMessage("user", "Name three rivers of Europe and say which one is the longest.")


def _settings(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "context_size": 256,
        "threads": 1,
        "gpu_layers": "off",
        "prompt_lookup": False,
    }
    values.update(changes)
    return values


@pytest.fixture(scope="module")
def tiny(tiny_model_path: Path) -> Iterator[LocalEngine]:
    engine = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1)
    yield engine
    engine.close()


# --- loading from the user's settings ---------------------------------------------------------


def test_settings_reach_the_engine(tiny_model_path: Path) -> None:
    cache = StateCache(None, memory_budget=1 << 20)
    engine = LocalEngine.from_settings(
        tiny_model_path,
        _settings(context_size=768, prompt_lookup=True),
        model_id="my-model",
        state_cache=cache,
    )
    try:
        assert (engine.model_id, engine.model_name, engine.n_ctx) == ("my-model", "my-model", 768)
        assert engine._llama.n_ctx() == 768
        assert engine.prompt_lookup is True
        assert engine.state_cache is cache
        assert (engine.max_threads, engine.n_threads) == (1, 1)
    finally:
        engine.close()


def test_settings_of_an_older_shape_leave_drafting_off(tiny_model_path: Path) -> None:
    old = _settings()
    del old["prompt_lookup"]
    engine = LocalEngine.from_settings(tiny_model_path, old)
    try:
        assert engine.prompt_lookup is False
        assert engine.model_id == tiny_model_path.stem
        assert engine.state_cache is None
    finally:
        engine.close()


# --- where a chat's own text begins -----------------------------------------------------------


def _prefix_tokens(engine: LocalEngine, text: str) -> int:
    return len(engine._llama.tokenize(text.encode(), add_bos=False, special=True))


def test_the_preamble_ends_where_the_first_message_of_the_chat_begins(
    tiny: LocalEngine,
) -> None:
    messages = [SYSTEM, USER]
    tokens, _dropped, _stops = tiny.fit_prompt(messages, GREEDY)
    opening = f"<|im_start|>system\n{SYSTEM.content}<|im_end|>\n<|im_start|>user\n"
    assert tiny._preamble_end(messages, tokens) == _prefix_tokens(tiny, opening)
    # A first message that starts like the stand-in text changes nothing.
    odd = [SYSTEM, ChatMessage("user", "XXL or XL? Which size fits a tall person?")]
    tokens, _dropped, _stops = tiny.fit_prompt(odd, GREEDY)
    assert tiny._preamble_end(odd, tokens) == _prefix_tokens(tiny, opening)
    # Later turns do not move it.
    longer = [*messages, ChatMessage("assistant", "The Danube."), ChatMessage("user", "Why?")]
    tokens, _dropped, _stops = tiny.fit_prompt(longer, GREEDY)
    assert tiny._preamble_end(longer, tokens) == _prefix_tokens(tiny, opening)


def test_without_a_system_prompt_or_a_chat_there_is_no_preamble(tiny: LocalEngine) -> None:
    alone = [USER]
    tokens, _dropped, _stops = tiny.fit_prompt(alone, GREEDY)
    assert tiny._preamble_end(alone, tokens) == 0
    only_system = [SYSTEM]
    tokens, _dropped, _stops = tiny.fit_prompt(only_system, GREEDY)
    assert tiny._preamble_end(only_system, tokens) == 0
    two_systems = [SYSTEM, ChatMessage("system", "Be brief."), USER]
    tokens, _dropped, _stops = tiny.fit_prompt(two_systems, GREEDY)
    opening = (
        f"<|im_start|>system\n{SYSTEM.content}<|im_end|>\n<|im_start|>system\nBe brief."
        "<|im_end|>\n<|im_start|>user\n"
    )
    assert tiny._preamble_end(two_systems, tokens) == _prefix_tokens(tiny, opening)


# --- a saved state llama.cpp refuses ----------------------------------------------------------


def test_a_saved_state_llama_cpp_refuses_is_discarded_and_the_prompt_read_afresh(
    tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = StateCache(None, memory_budget=1 << 24, min_tokens=8)
    engine = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1, state_cache=cache)
    try:
        messages = [SYSTEM, USER]
        tokens, _dropped, _stops = engine.fit_prompt(messages, GREEDY)
        held = len(tokens) - 1
        cache.put(engine.fingerprint, tokens[:held], bytearray(b"not a state" * 40))
        with caplog.at_level(logging.WARNING):
            generation = engine.stream_chat(messages, GREEDY)
            generation.run()
        assert generation.stats is not None
        assert generation.stats.evaluated_prompt_tokens == len(tokens)
        assert (
            f"llama.cpp refused a saved state of {held} tokens; reading afresh." in caplog.messages
        )
        assert any(m.startswith("Discarding saved model state ") for m in caplog.messages)
        assert cache.stats().hits == 1
        # The answer is the one read afresh gives.
        engine.clear_context()
        again = engine.stream_chat(messages, GREEDY)
        assert again.run() == generation.text
    finally:
        engine.close()


# --- what the context keeps from one prompt to the next ---------------------------------------


def _evaluated(engine: LocalEngine, messages: list[ChatMessage]) -> int:
    generation = engine.stream_chat(messages, GREEDY)
    generation.run()
    assert generation.stats is not None
    return generation.stats.evaluated_prompt_tokens


def test_the_same_prompt_again_reads_only_its_last_token(tiny: LocalEngine) -> None:
    tiny.clear_context()
    messages = [SYSTEM, USER]
    tokens, _dropped, _stops = tiny.fit_prompt(messages, GREEDY)
    assert _evaluated(tiny, messages) == len(tokens)
    assert _evaluated(tiny, messages) == 1  # its logits must be fresh for sampling


def test_a_context_sharing_only_the_first_token_keeps_that_one(tiny: LocalEngine) -> None:
    messages = [SYSTEM, USER]
    tokens, _dropped, _stops = tiny.fit_prompt(messages, GREEDY)
    tiny.clear_context()
    tiny._decode([tokens[0], tokens[1] + 1, tokens[2] + 1])
    assert common_prefix_len(tiny, messages) == 1
    assert _evaluated(tiny, messages) == len(tokens) - 1


def _cached_engine(path: Path, min_tokens: int) -> tuple[LocalEngine, StateCache]:
    cache = StateCache(None, memory_budget=1 << 26, min_tokens=min_tokens)
    return LocalEngine(path, n_ctx=512, n_threads=1, state_cache=cache), cache


@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_saved_states_are_looked_up_when_at_least_min_tokens_are_left_to_read(
    tiny_model_path: Path, shift: int
) -> None:
    """The context holds part of the prompt; a lookup is only worth it when what is left to
    read (all but the last token, which is always read) is at least ``min_tokens``."""
    probe = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1)
    first = [SYSTEM, USER]
    second = [*first, ChatMessage("assistant", "The Danube."), ChatMessage("user", "Why?")]
    held = len(probe.fit_prompt(first, GREEDY)[0])
    wanted = len(probe.fit_prompt(second, GREEDY)[0])
    probe.close()
    # Answering the first prompt leaves its tokens and the answer's in the context; the
    # second shares the first prompt's tokens at least.
    engine, cache = _cached_engine(tiny_model_path, min_tokens=4)
    try:
        engine.stream_chat(first, GREEDY).run()
        reuse = common_prefix_len(engine, second)
        assert reuse >= held
        left = wanted - 1 - reuse
        cache.min_tokens = left + shift
        before = cache.stats().misses
        engine.stream_chat(second, GREEDY).run()
        looked_up = cache.stats().misses - before
        assert looked_up == (1 if shift <= 0 else 0)
    finally:
        engine.close()


def common_prefix_len(engine: LocalEngine, messages: list[ChatMessage]) -> int:
    from assistant.engine.state_cache import common_prefix

    tokens = engine.fit_prompt(messages, GREEDY)[0]
    return common_prefix(engine._llama._input_ids, tokens)


@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_the_context_is_saved_when_moving_on_leaves_at_least_min_tokens_behind(
    tiny_model_path: Path, shift: int
) -> None:
    """Moving to another prompt saves what the context held if that many tokens of it
    would otherwise be lost."""
    engine, cache = _cached_engine(tiny_model_path, min_tokens=4)
    try:
        first = [SYSTEM, USER]
        engine.stream_chat(first, GREEDY).run()
        other = [SYSTEM, ChatMessage("user", "Something else entirely, please.")]
        held = engine._llama.n_tokens
        shared = common_prefix_len(engine, other)
        assert 0 < shared < held
        lost = held - shared
        cache.min_tokens = lost + shift
        before = cache.stats().memory_states
        engine.stream_chat(other, GREEDY).run()
        saved = cache.stats().memory_states - before
        assert saved == (1 if shift <= 0 else 0)
    finally:
        engine._unsaved = False  # nothing more to save at close
        engine.close()


# --- llama.cpp's side of a saved state --------------------------------------------------------


def test_bytes_llama_cpp_refuses_leave_an_empty_context(tiny: LocalEngine) -> None:
    from assistant.engine import kv_state

    tiny.clear_context()
    llama = tiny._llama
    tiny._decode(list(range(100, 140)))
    data = kv_state.copy_out(llama)
    assert data is not None and len(data) > 40
    memory = llama_cpp.llama_get_memory(llama._ctx.ctx)

    assert not kv_state.copy_in(llama, bytearray(b"not a state" * 10), 40, 20)
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == -1
    # The right bytes said to hold another number of tokens are refused too.
    assert not kv_state.copy_in(llama, bytearray(data), 30, 20)
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == -1
    # The right bytes: restored, and cut to what is kept.
    assert kv_state.copy_in(llama, bytearray(data), 40, 25)
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == 24
    assert kv_state.copy_in(llama, bytearray(data), 40, 40)
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == 39
    tiny.clear_context()


# --- one answer, start to end -----------------------------------------------------------------


def test_an_answers_stats_name_the_model_and_time_it(tiny: LocalEngine) -> None:
    generation = tiny.stream_chat([SYSTEM, USER], GREEDY)
    generation.run()
    stats = generation.stats
    assert stats is not None
    assert (stats.model, stats.provider, stats.stop_reason) == (tiny.model_id, "local", "length")
    assert stats.completion_tokens == GREEDY.max_tokens
    assert stats.ttft_s is not None and 0 < stats.ttft_s <= stats.total_s
    assert stats.tokens_per_s is not None and stats.tokens_per_s > 0


def test_an_answer_stops_when_the_context_is_full(tiny_model_path: Path) -> None:
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        settings = GenerationSettings(temperature=0.0, max_tokens=10_000, repeat_penalty=1.0)
        tokens, _dropped, _stops = engine.fit_prompt([SYSTEM, USER], settings)
        generation = engine.stream_chat([SYSTEM, USER], settings)
        generation.run()
        assert generation.stats is not None
        assert generation.stats.stop_reason == "length"
        assert generation.stats.completion_tokens == 256 - len(tokens)
        assert engine._llama.n_tokens == 256
    finally:
        engine.close()


def _plain_answer(engine: LocalEngine, settings: GenerationSettings) -> str:
    engine.clear_context()
    return engine.stream_chat([SYSTEM, USER], settings).run()


def test_text_held_back_for_a_stop_string_comes_out_when_the_answer_ends(
    tiny: LocalEngine,
) -> None:
    """The answer's last character could begin a stop string, so it is held back; when the
    answer ends (at its length, or cancelled) it is given out after all."""
    text = _plain_answer(tiny, GREEDY)
    assert text
    held = replace(GREEDY, stop=(text[-1] + "\u0000",))
    assert _plain_answer(tiny, held) == text

    class CancelAfter(CancelToken):
        """Cancelled from the n-th look on: after n - 1 tokens of the answer."""

        def __init__(self, looks: int) -> None:
            super().__init__()
            self.looks = looks

        @property
        def cancelled(self) -> bool:
            self.looks -= 1
            return self.looks < 0

    shorter = _plain_answer(tiny, replace(GREEDY, max_tokens=GREEDY.max_tokens - 1))
    held = replace(GREEDY, stop=(shorter[-1] + "\u0000",))
    prompt_batches = 1  # the prompt is read in one batch: one look before it
    looks = prompt_batches + GREEDY.max_tokens
    tiny.clear_context()
    generation = tiny.stream_chat([SYSTEM, USER], held, CancelAfter(looks - 1))
    assert generation.run() == shorter
    assert generation.stats is not None and generation.stats.stop_reason == "cancelled"
    assert generation.stats.completion_tokens == GREEDY.max_tokens - 1


def test_an_answer_cancelled_while_the_prompt_is_read_says_so(tiny: LocalEngine) -> None:
    tiny.clear_context()
    cancel = CancelToken()
    cancel.cancel()
    generation = tiny.stream_chat([SYSTEM, USER], GREEDY, cancel)
    assert generation.run() == ""
    assert generation.stats is not None
    assert generation.stats.stop_reason == "cancelled"
    assert generation.stats.completion_tokens == 0


# --- a new chat keeps its system prompt's state apart -----------------------------------------

LONG_SYSTEM = ChatMessage(
    "system",
    "You are the assistant of a small library. Answer questions about opening hours, loans, "
    "late fees and the reading room. Keep every answer short, friendly and exact.",
)
QUESTION = ChatMessage("user", "How long can I keep a book?")


def _states(cache: StateCache) -> list[int]:
    """Token counts of the states the cache holds in memory."""
    return sorted(len(state.tokens) for state in cache._memory.values())


def _split_setup(tiny_model_path: Path) -> tuple[LocalEngine, StateCache, list[int], int]:
    engine, cache = _cached_engine(tiny_model_path, min_tokens=4)
    messages = [LONG_SYSTEM, QUESTION]
    tokens, _dropped, _stops = engine.fit_prompt(messages, GREEDY)
    boundary = engine._preamble_end(messages, tokens)
    assert 20 < boundary < len(tokens) - 10
    return engine, cache, tokens, boundary


@pytest.mark.parametrize("shift", [-1, 0, 1])
def test_a_system_prompt_of_at_least_min_tokens_is_saved_on_its_own(
    tiny_model_path: Path, shift: int
) -> None:
    engine, cache, _tokens, boundary = _split_setup(tiny_model_path)
    try:
        cache.min_tokens = boundary + shift
        engine.stream_chat([LONG_SYSTEM, QUESTION], GREEDY).run()
        # Only the system prompt's state so far: the whole chat's is saved when the context
        # moves on.
        assert _states(cache) == ([boundary] if shift <= 0 else [])
    finally:
        engine._unsaved = False
        engine.close()


def test_a_context_holding_part_of_the_system_prompt_saves_it_whole(
    tiny_model_path: Path,
) -> None:
    engine, cache, tokens, boundary = _split_setup(tiny_model_path)
    try:
        engine._decode(tokens[:10])  # as if a shorter prompt had been read
        engine._unsaved = False
        engine.stream_chat([LONG_SYSTEM, QUESTION], GREEDY).run()
        assert _states(cache) == [boundary]
    finally:
        engine._unsaved = False
        engine.close()


def test_with_exactly_min_tokens_left_to_read_nothing_is_split(tiny_model_path: Path) -> None:
    engine, cache, tokens, boundary = _split_setup(tiny_model_path)
    try:
        held = len(tokens) - boundary + 2  # left to read: boundary - 2 tokens, all preamble
        assert held < boundary
        engine._decode(tokens[:held])
        engine._unsaved = False
        cache.min_tokens = len(tokens) - held
        engine.stream_chat([LONG_SYSTEM, QUESTION], GREEDY).run()
        assert _states(cache) == []
    finally:
        engine._unsaved = False
        engine.close()


def test_a_context_holding_the_whole_system_prompt_saves_nothing_new_on_the_way(
    tiny_model_path: Path,
) -> None:
    engine, cache, tokens, boundary = _split_setup(tiny_model_path)
    try:
        engine._decode(tokens[: boundary + 2])
        engine._unsaved = False
        engine.stream_chat([LONG_SYSTEM, QUESTION], GREEDY).run()
        assert _states(cache) == []
    finally:
        engine._unsaved = False
        engine.close()


def test_text_held_back_comes_out_when_the_model_ends_its_answer(tiny_model_path: Path) -> None:
    path = write_tiny_llama(
        tiny_model_path.with_name("ending.gguf"), smollm2_path(), end_lift=ENDS_ANSWERS
    )
    engine = LocalEngine(path, n_ctx=512, n_threads=1)
    try:
        for question in ("Hi", "Tell me a word.", "List three colours.", "Unrelated"):
            messages = [SYSTEM, ChatMessage("user", question)]
            engine.clear_context()
            plain = engine.stream_chat(messages, GREEDY)
            text = plain.run()
            if plain.stats is not None and plain.stats.stop_reason == "stop" and text:
                break
        else:
            raise AssertionError("no answer the model ended itself")
        engine.clear_context()
        held = engine.stream_chat(messages, replace(GREEDY, stop=(text[-1] + "\u0000",)))
        assert held.run() == text
        assert held.stats is not None and held.stats.stop_reason == "stop"
    finally:
        engine.close()


def test_a_base_models_answer_starts_without_the_space_after_its_cue(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    """After "Assistant:", a model without a chat template starts with a space (or several):
    the answer shown and saved starts at its first word."""
    base = without_chat_template(tiny_model_path, tmp_path / "base.gguf")
    engine = LocalEngine(base, n_ctx=512, n_threads=1)
    try:
        assert engine.uses_fallback_template
        starts = []
        for question in ("Hi", "Tell me a word.", "List three colours.", "Unrelated"):
            engine.clear_context()
            pieces: list[str] = []
            engine.stream_chat([SYSTEM, ChatMessage("user", question)], GREEDY).run(pieces.append)
            assert pieces and pieces[0].strip()
            starts.append(pieces[0][:1])
            # Only the start is trimmed: the spaces between words stay.
            assert " " in "".join(pieces).strip()
        assert not any(start.isspace() for start in starts)
    finally:
        engine.close()


def test_control_tokens_the_model_writes_are_not_shown(tiny: LocalEngine) -> None:
    # <|im_start|> is a control token: it has no text of its own.
    assert tiny._token_bytes(1) == b""
    hello = tiny._llama.tokenize(b"Hello", add_bos=False, special=False)
    assert b"".join(tiny._token_bytes(t) for t in hello) == b"Hello"
    assert tiny._token_bytes(hello[0]) is tiny._token_bytes(hello[0])  # kept, not made again


def test_a_token_longer_than_the_first_buffer_is_read_whole(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "PIECE_BUFFER", 2)  # every longer piece takes the second call
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        text = "Hello wonderful world"
        tokens = engine._llama.tokenize(text.encode(), add_bos=False, special=False)
        pieces = [engine._token_bytes(t) for t in tokens]
        assert max(len(piece) for piece in pieces) > 2
        assert b"".join(pieces) == text.encode()
        assert engine._token_bytes(1) == b""
    finally:
        engine.close()


def test_a_failed_decode_ends_the_answer_as_an_error_and_empties_the_context(
    tiny: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp refusing a batch (no room left) mid-answer: the answer ends as an error, and
    the context, whose contents are then unknown, is neither kept nor saved."""
    tiny.clear_context()
    decode = tiny._decode
    calls: list[int] = []

    def failing_third(tokens: list[int]) -> None:
        calls.append(len(tokens))
        if len(calls) == 3:
            raise InsufficientMemoryError("no room", hint="")
        decode(tokens)

    monkeypatch.setattr(tiny, "_decode", failing_third)
    generation = tiny.stream_chat([SYSTEM, USER], GREEDY)
    with pytest.raises(InsufficientMemoryError):
        generation.run()
    assert generation.stats is not None and generation.stats.stop_reason == "error"
    assert (tiny._llama.n_tokens, tiny._unsaved) == (0, False)
    monkeypatch.undo()
    tokens, _dropped, _stops = tiny.fit_prompt([SYSTEM, USER], GREEDY)
    assert _evaluated(tiny, [SYSTEM, USER]) == len(tokens)  # read afresh


# --- what makes a saved state usable by another engine ----------------------------------------


def _same_time(path: Path, like: Path) -> None:
    stat = like.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_the_fingerprint_reads_the_files_first_mib_its_size_and_time(
    tiny: LocalEngine, tmp_path: Path
) -> None:
    from assistant.engine.kv_state import context_fingerprint

    data = bytearray(os.urandom(3 << 20))
    original = tmp_path / "a.gguf"
    original.write_bytes(data)

    def variant(name: str, at: int | None = None, size: int | None = None) -> Path:
        changed = bytearray(data if size is None else data[:size])
        if at is not None:
            changed[at] ^= 0xFF
        path = tmp_path / name
        path.write_bytes(changed)
        _same_time(path, original)
        return path

    def fingerprint(path: Path, layers: int = 0) -> str:
        return context_fingerprint(tiny._llama, path, layers)

    base = fingerprint(original)
    assert fingerprint(variant("same.gguf")) == base  # same bytes, size and time
    assert fingerprint(variant("late.gguf", at=(1 << 20) + 5)) == base  # past the first MiB
    assert fingerprint(variant("last.gguf", at=(1 << 20) - 1)) != base  # within it
    assert fingerprint(variant("first.gguf", at=0)) != base
    assert fingerprint(variant("shorter.gguf", size=(3 << 20) - 1)) != base
    touched = variant("touched.gguf")
    os.utime(touched, ns=(0, original.stat().st_mtime_ns + 1))
    assert fingerprint(touched) != base
    assert fingerprint(original, layers=1) != base  # offloaded layers lay the cache out apart
    assert len(base) == 64 and int(base, 16) >= 0


def test_the_fingerprint_changes_with_the_context_size(tiny_model_path: Path) -> None:
    small = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    large = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1)
    again = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        assert small.fingerprint != large.fingerprint
        assert small.fingerprint == again.fingerprint
    finally:
        for engine in (small, large, again):
            engine.close()


# --- the model's own sampling and its special tokens ------------------------------------------


def test_the_catalogs_recommendation_for_the_file_reaches_the_engine(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.models import catalog as catalog_module
    from tests.test_model_sampling import ENTRY

    entry = ENTRY.replace('"tiny.gguf"', f'"{tiny_model_path.name}"').replace(
        "size_bytes = 1000", f"size_bytes = {tiny_model_path.stat().st_size}"
    )
    known = catalog_module.parse_catalog(
        entry + "[models.sampling]\ntemperature = 0.3\n", "models.toml"
    )
    monkeypatch.setattr(catalog_module, "_packaged_catalog", lambda: known)
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        assert engine.sampling is not None and engine.sampling.temperature == 0.3
    finally:
        engine.close()


def test_a_broken_catalog_leaves_the_files_own_sampling(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.models import catalog as catalog_module

    def broken() -> catalog_module.Catalog:
        raise catalog_module.CatalogError("models.toml: not TOML")

    monkeypatch.setattr(catalog_module, "_packaged_catalog", broken)
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        assert engine.sampling is None  # the tiny file recommends nothing
    finally:
        engine.close()


def test_a_special_tokens_text_is_its_own_and_no_token_has_none(tiny: LocalEngine) -> None:
    model = tiny._llama._model
    assert local._token_text(model, 0) == "<|endoftext|>"
    assert local._token_text(model, 1) == "<|im_start|>"
    assert local._token_text(model, -1) == ""


# --- a new engine -----------------------------------------------------------------------------


def test_a_new_engine_has_drafted_nothing_and_caps_its_context_at_the_trained_one(
    tiny_model_path: Path,
) -> None:
    engine = LocalEngine(tiny_model_path, n_ctx=4096, n_threads=1)  # trained on 2048
    try:
        assert engine.last_drafts == (0, 0) and engine.prompt_lookup is False
        assert engine.measured_batch_cost is None
        assert engine.n_ctx == 2048 and engine._llama.n_ctx() == 2048
    finally:
        engine.close()


def test_automatic_gpu_layers_on_a_computer_without_offload_still_draft(
    tiny_model_path: Path,
) -> None:
    engine = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1, n_gpu_layers=-1)
    try:
        assert engine._gpu_layers == 0
        assert engine._exact_draft_room(10) == engine.n_ctx
        plain = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1)
        try:
            assert engine.fingerprint == plain.fingerprint  # the same cache layout
        finally:
            plain.close()
    finally:
        engine.close()


def test_a_sliding_window_model_never_drafts() -> None:
    """Gemma 3 keeps a sliding-window cache, which cannot drop single positions: drafting is
    off for it, whatever the settings say (the tiny llama drafts)."""
    engine = LocalEngine(gemma_base_path(), n_ctx=256, n_threads=1, prompt_lookup=True)
    try:
        assert engine._can_draft is False
    finally:
        engine.close()


# --- fitting a conversation into the context ------------------------------------------------------


def _turns(count: int, words: int = 12) -> list[ChatMessage]:
    """``count`` exchanges of different lengths, ending with a user's message."""
    messages = []
    for number in range(count):
        messages.append(ChatMessage("user", f"question {number} " + "word " * (words + number)))
        messages.append(ChatMessage("assistant", f"answer {number} " + "reply " * words))
    messages.append(ChatMessage("user", "and the last question?"))
    return messages


def _budget(engine: LocalEngine, monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """Leave ``budget`` tokens for the prompt (the rest is the answer's reserve)."""
    monkeypatch.setattr(engine, "answer_reserve", lambda _settings: engine.n_ctx - budget)


def _fewest_drops(
    engine: LocalEngine, messages: list[ChatMessage], budget: int
) -> tuple[list[int], list[ChatMessage]] | None:
    """What fitting must give, found by trying every cut: the kept part starts at a user's
    message or at the last message, after at least one message that is not a system prompt,
    and system prompts before it stay."""
    for start, message in enumerate(messages):
        if message.role != "user" and start != len(messages) - 1:
            continue
        before = messages[:start]
        if not any(m.role != "system" for m in before):
            continue
        kept = [m for m in before if m.role == "system"] + messages[start:]
        tokens, _stops = engine._tokenize_chat(kept)
        if len(tokens) <= budget:
            return tokens, [m for m in before if m.role != "system"]
    return None


@pytest.mark.parametrize("system", [True, False])
def test_fitting_drops_the_fewest_oldest_exchanges_at_every_budget(
    tiny: LocalEngine, monkeypatch: pytest.MonkeyPatch, system: bool
) -> None:
    messages = _turns(7)
    if system:
        messages.insert(0, ChatMessage("system", "You are terse."))
    whole = len(tiny._tokenize_chat(messages)[0])
    for budget in range(whole - 1, 10, -1):
        _budget(tiny, monkeypatch, budget)
        expected = _fewest_drops(tiny, messages, budget)
        if expected is None:
            with pytest.raises(ContextOverflowError):
                tiny.fit_prompt(messages, GREEDY)
            break
        tokens, dropped, _stops = tiny.fit_prompt(messages, GREEDY)
        assert (tokens, dropped) == expected, budget
    else:
        pytest.fail("no budget was too small for the last message")


def test_fitting_keeps_a_last_message_that_is_not_the_users(
    tiny: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = _turns(2, words=30)[:-1]  # ends with the assistant's answer
    last = [messages[-1]]
    _budget(tiny, monkeypatch, len(tiny._tokenize_chat(last)[0]))
    tokens, dropped, _stops = tiny.fit_prompt(messages, GREEDY)
    assert tokens == tiny._tokenize_chat(last)[0]
    assert dropped == messages[:-1]


def test_a_prompt_of_exactly_the_budget_fits_as_it_is(tiny: LocalEngine) -> None:
    """The budget is the context less the answer's reserve (its max_tokens, between 16 and a
    quarter of the context): a prompt of exactly that many tokens is not cut."""
    messages = [ChatMessage("user", "word " * 400)]
    length = len(tiny._tokenize_chat(messages)[0])
    reserve = tiny.n_ctx - length
    assert 16 <= reserve <= tiny.n_ctx // 4
    refuse = replace(GREEDY, overflow="refuse", max_tokens=reserve)
    assert tiny.fit_prompt(messages, refuse)[:2] == (tiny._tokenize_chat(messages)[0], [])
    with pytest.raises(ContextOverflowError) as raised:
        tiny.fit_prompt(messages, replace(refuse, max_tokens=reserve + 1))
    assert raised.value.message == (
        f"This conversation is {length:,} tokens long, but the model's context window holds "
        "512 tokens, including room for the answer."
    )
    assert raised.value.hint == (
        "Start a new conversation, raise the context size in Settings, or let the app drop "
        "the oldest turns."
    )


def test_a_message_too_long_alone_says_so(tiny: LocalEngine) -> None:
    messages = [*_turns(1), ChatMessage("user", "word " * 600)]
    alone = len(tiny._tokenize_chat(messages[-1:])[0])
    with pytest.raises(ContextOverflowError) as raised:
        tiny.fit_prompt(messages, GREEDY)
    assert raised.value.message == (
        f"Your message alone is {alone:,} tokens long, more than the model's context window "
        "of 512 tokens can take with room for an answer."
    )
    assert raised.value.hint == "Shorten the message or raise the context size in Settings."


def test_the_answers_reserve_is_its_length_within_16_and_a_quarter_of_the_context(
    tiny_model_path: Path,
) -> None:
    engine = LocalEngine(tiny_model_path, n_ctx=510, n_threads=1)
    try:
        reserve = engine.answer_reserve
        assert reserve(replace(GREEDY, max_tokens=1)) == 16
        assert reserve(replace(GREEDY, max_tokens=100)) == 100
        quarter = reserve(replace(GREEDY, max_tokens=1000))
        assert quarter == 127 and isinstance(quarter, int)
    finally:
        engine.close()


def test_an_empty_or_closed_engines_chat_is_refused(tiny_model_path: Path) -> None:
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    with pytest.raises(ValueError) as empty:
        engine.fit_prompt([], GREEDY)
    assert str(empty.value) == "a chat needs at least one message"
    engine.close()
    with pytest.raises(RuntimeError) as closed:
        engine.fit_prompt([ChatMessage("user", "Hi")], GREEDY)
    assert str(closed.value) == "this engine was closed; load the model again"


# --- limits and what the log says -----------------------------------------------------------------


def test_a_model_that_needs_more_memory_than_the_computer_has_is_refused(
    tiny_model_path: Path,
) -> None:
    probe = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1)
    info = probe.info
    probe.close()
    needed = estimate_memory(
        info.file_size, 512, layers=info.layers, kv_heads=info.kv_heads, head_dim=info.head_dim
    ).total
    hardware = replace(detect_hardware(), total_ram=needed)
    LocalEngine(tiny_model_path, n_ctx=512, n_threads=1, hardware=hardware).close()  # just fits
    with pytest.raises(InsufficientMemoryError) as raised:
        LocalEngine(
            tiny_model_path,
            n_ctx=512,
            n_threads=1,
            hardware=replace(hardware, total_ram=needed - 1),
        )
    assert raised.value.message == (
        f"Tiny llama (seed 0) needs about {format_bytes(needed)} of memory with a 512-token "
        f"context, but this computer has {format_bytes(needed - 1)}."
    )
    assert raised.value.hint == "Pick a smaller model or lower the context size in Settings."


def test_a_prompt_the_context_cannot_hold_is_a_known_problem(tiny_model_path: Path) -> None:
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        engine._decode([1] * 250)
        with pytest.raises(InsufficientMemoryError) as raised:
            engine._decode([1] * 10)
        assert raised.value.message == "The engine ran out of room while reading the conversation."
        assert raised.value.hint == "Lower the context size or start a new conversation."
        assert engine._llama.n_tokens == 250
    finally:
        engine.close()


class _BusyMachine:
    """A thread chooser that finds 1.5 cores taken by other programs."""

    others_busy = 1.5

    def __init__(self) -> None:
        self.rested = 0

    def pick(self) -> int:
        return 1

    def rest(self) -> None:
        self.rested += 1


def test_answering_on_fewer_threads_says_why(
    tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hardware = replace(detect_hardware(), physical_cores=2)
    engine = LocalEngine(tiny_model_path, n_ctx=256, hardware=hardware)
    busy = _BusyMachine()
    engine._threads = busy  # type: ignore[assignment]
    try:
        with caplog.at_level(logging.INFO, logger=local.__name__):
            engine.stream_chat([ChatMessage("user", "Hi")], GREEDY).run()
        said = [r.getMessage() for r in caplog.records if r.name == local.__name__]
        assert said == ["Other programs keep 1.5 cores busy: answering with 1 of 2 threads."]
        assert engine.n_threads == 1 and engine.max_threads == 2 and busy.rested == 1
    finally:
        engine.close()


def test_a_base_models_fallback_template_is_logged(
    tiny_model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = without_chat_template(tiny_model_path, tmp_path / "base.gguf")
    with caplog.at_level(logging.INFO, logger=local.__name__):
        engine = LocalEngine(path, n_ctx=256, n_threads=1)
    engine.close()
    said = [r.getMessage() for r in caplog.records if r.name == local.__name__]
    assert said == [f"base.gguf: {FALLBACK_WARNING}"]


def test_a_state_llama_cpp_does_not_give_is_logged_and_not_saved(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = StateCache(None, memory_budget=1 << 24, min_tokens=4)
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1, state_cache=cache)
    puts: list[int] = []
    put = cache.put
    monkeypatch.setattr(
        cache, "put", lambda f, tokens, data: (puts.append(len(tokens)), put(f, tokens, data))
    )
    try:
        engine.stream_chat([ChatMessage("user", "Hello there")], GREEDY).run()
        engine._save_state()
        engine._save_state()  # nothing new since: not saved twice
        assert len(puts) == 1 and not engine._unsaved
        engine._decode([1, 2])
        monkeypatch.setattr(local.kv_state, "copy_out", lambda _llama: None)
        with caplog.at_level(logging.WARNING, logger=local.__name__):
            engine._save_state()
        said = [r.getMessage() for r in caplog.records if r.name == local.__name__]
        assert said == [f"llama.cpp returned no state for {engine._llama.n_tokens} tokens."]
        assert len(puts) == 1 and engine._unsaved
    finally:
        monkeypatch.undo()
        engine.close()


# --- an answer's figures --------------------------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 2, 12])
def test_an_answers_times_add_up(tiny: LocalEngine, max_tokens: int) -> None:
    """The time to the first token and the decode speed after it make up the whole; one token
    alone has no speed."""
    settings = replace(GREEDY, max_tokens=max_tokens)
    generation = tiny.stream_chat([ChatMessage("user", "Count with me")], settings)
    generation.run()
    stats = generation.stats
    assert stats is not None and stats.completion_tokens == max_tokens
    assert stats.ttft_s is not None and 0 < stats.ttft_s < stats.total_s < 60
    if max_tokens == 1:
        assert stats.tokens_per_s is None
        return
    assert stats.tokens_per_s is not None
    decoding = (max_tokens - 1) / stats.tokens_per_s
    assert stats.ttft_s + decoding == pytest.approx(stats.total_s, rel=1e-9)


def test_the_stats_observer_hears_each_answer_and_its_failure_is_only_logged(
    tiny: LocalEngine, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[Any] = []
    tiny.on_stats = heard.append
    generation = tiny.stream_chat([ChatMessage("user", "Hi")], GREEDY)
    generation.run()
    assert heard == [generation.stats] and heard[0] is generation.stats

    def broken(_stats: Any) -> None:
        raise RuntimeError("the observer broke")

    tiny.on_stats = broken
    with caplog.at_level(logging.ERROR, logger=local.__name__):
        text = tiny.stream_chat([ChatMessage("user", "Hi")], GREEDY).run()
    assert text == generation.text
    said = [r.getMessage() for r in caplog.records if r.name == local.__name__]
    assert said == ["The answer's stats observer failed"]


def test_one_core_means_one_thread(tiny_model_path: Path) -> None:
    hardware = replace(detect_hardware(), physical_cores=1)
    engine = LocalEngine(tiny_model_path, n_ctx=256, hardware=hardware)
    try:
        assert engine.max_threads == engine.n_threads == 1
    finally:
        engine.close()


def test_loading_and_answering_write_nothing_to_the_terminal(
    tiny_model_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """llama-cpp-python, verbose, prints the model's metadata and timings: the CLI's and the
    app's own output would drown in them."""
    capfd.readouterr()
    engine = LocalEngine(tiny_model_path, n_ctx=256, n_threads=1)
    try:
        engine.stream_chat([ChatMessage("user", "Hi")], GREEDY).run()
    finally:
        engine.close()
    assert capfd.readouterr() == ("", "")


def test_a_prompt_without_template_tokens_starts_with_the_models_bos() -> None:
    """A transcript (no special tokens of its own) gets the BOS the model asks for; a rendered
    chat template writes its own."""
    engine = LocalEngine(gemma_base_path(), n_ctx=256, n_threads=1)
    try:
        tokens, _stops = engine._tokenize_chat([ChatMessage("user", "Hi")])
        assert tokens[0] == engine._llama.token_bos()
        assert tokens.count(engine._llama.token_bos()) == 1
    finally:
        engine.close()


def test_an_answer_on_a_clock_that_stands_still_has_no_speed(
    tiny: LocalEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local.time, "perf_counter", lambda: 5.0)
    generation = tiny.stream_chat([ChatMessage("user", "Hi")], GREEDY)
    generation.run()
    monkeypatch.undo()
    stats = generation.stats
    assert stats is not None and stats.completion_tokens == GREEDY.max_tokens
    assert stats.total_s == 0 and stats.ttft_s == 0 and stats.tokens_per_s is None
