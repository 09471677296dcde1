"""The model's memory of conversations (saved KV states) and drafting answers from the prompt.

The cache's own rules run on plain bytes; everything about the engine runs the real SmolLM2
model and asserts on how many prompt tokens were evaluated, and on greedy output identical to
an engine without saved states: one that reads everything afresh when a state must not be
used, one whose context never left the conversation when a state is restored. (llama.cpp's CPU
kernels round differently for different batch shapes, so reading a prompt in two parts, as any
reuse of the context does, may change the last bits of the logits and, at a near tie, a greedy
token. The reference therefore reads the prompt in the same parts.)
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.engine.base import ChatMessage, GenerationSettings, GenerationStats
from assistant.engine.local import EXACT_DRAFT_POSITIONS, LocalEngine
from assistant.engine.prompt_lookup import PromptLookup
from assistant.engine.state_cache import SUFFIX, StateCache, common_prefix
from assistant.paths import app_paths
from assistant.providers import shared_state_cache, state_cache_folder

GREEDY = GenerationSettings(temperature=0.0, max_tokens=24, repeat_penalty=1.0)
SYSTEM = ChatMessage("system", "You are a helpful assistant.")
DOCUMENT = "Here is an inventory. Read it, then answer questions about it.\n" + "\n".join(
    f"Item {i}: a {['red', 'blue', 'green'][i % 3]} box of notes about topic {i * 7 % 13}."
    for i in range(1, 25)
)
FIRST = [SYSTEM, ChatMessage("user", DOCUMENT + "\nWhat is item 3 about?")]
OTHER = [SYSTEM, ChatMessage("user", "Write one sentence about the sea and the wind at night.")]
N_CTX = 1024


# --- the cache's rules, on plain bytes ------------------------------------------------------


def _tokens(count: int, start: int = 0) -> list[int]:
    return list(range(start, start + count))


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix(np.array([5, 6], dtype=np.int32), [5, 6]) == 2


def test_longest_valid_prefix_wins_and_must_match_exactly(tmp_path: Path) -> None:
    cache = StateCache(None, memory_budget=1 << 20, min_tokens=4)
    cache.put("model-a", _tokens(20), bytearray(b"a" * 100))
    cache.put("model-a", _tokens(10) + _tokens(30, start=500), bytearray(b"b" * 100))

    match = cache.find("model-a", _tokens(25), better_than=0)
    assert match is not None and match.usable == 20 and bytes(match.data[:1]) == b"a"
    # At most all but the last token: sampling needs its logits fresh.
    match = cache.find("model-a", _tokens(20), better_than=0)
    assert match is not None and match.usable == 19
    # Nothing better than what the context already holds; another model; too short a prefix.
    assert cache.find("model-a", _tokens(25), better_than=20) is None
    assert cache.find("model-b", _tokens(25), better_than=0) is None
    assert cache.find("model-a", [7, 8, 9, 10, 11], better_than=0) is None
    stats = cache.stats()
    assert (stats.hits, stats.misses) == (2, 3)


def test_a_long_state_is_not_restored_for_a_short_prefix() -> None:
    cache = StateCache(None, memory_budget=1 << 20, min_tokens=4)
    cache.put("m", _tokens(400), bytearray(400))
    # Sharing 10 of 400 tokens: restoring it all costs more than reading 10 tokens.
    assert cache.find("m", _tokens(10) + [9999] * 5, better_than=0) is None
    assert cache.find("m", [*_tokens(100), 9999], better_than=0) is not None


def test_a_later_turn_replaces_the_earlier_one_but_not_a_shared_preamble() -> None:
    cache = StateCache(None, memory_budget=1 << 20, min_tokens=4)
    cache.put("m", _tokens(10), bytearray(10))  # the system prompt alone
    cache.put("m", _tokens(100), bytearray(100))  # turn 1
    cache.put("m", _tokens(150), bytearray(150))  # turn 2 holds turn 1
    stats = cache.stats()
    assert stats.memory_states == 2
    assert stats.memory_bytes == 160


def test_memory_budget_evicts_least_recently_used() -> None:
    cache = StateCache(None, memory_budget=250, min_tokens=4)
    cache.put("m", _tokens(10, start=0), bytearray(100))
    cache.put("m", _tokens(10, start=100), bytearray(100))
    assert cache.find("m", [*_tokens(10, start=0), 1], better_than=0) is not None  # used
    cache.put("m", _tokens(10, start=200), bytearray(100))
    assert cache.find("m", [*_tokens(10, start=100), 1], better_than=0) is None
    assert cache.find("m", [*_tokens(10, start=0), 1], better_than=0) is not None
    assert cache.stats().memory_bytes == 200
    cache.set_budgets(memory=100)
    assert cache.stats().memory_states == 1


def test_disk_keeps_states_for_another_process_and_evicts_oldest(tmp_path: Path) -> None:
    folder = tmp_path / "states"
    writer = StateCache(folder, memory_budget=0, disk_budget=2500, min_tokens=4)
    for n in range(3):
        writer.put("m", _tokens(10, start=n * 100), bytearray([n]) * 1000)
        assert writer.flush()
    files = sorted(folder.glob("*" + SUFFIX))
    assert len(files) == 2  # the oldest went first

    reader = StateCache(folder, memory_budget=1 << 20, disk_budget=2500, min_tokens=4)
    assert reader.find("m", [*_tokens(10, start=0), 1], better_than=0) is None
    match = reader.find("m", [*_tokens(10, start=200), 1], better_than=0)
    assert match is not None and match.data == bytearray([2]) * 1000
    assert reader.stats().disk_states == 2
    # Hit counts are shared through the folder: a new process sees them.
    reader.flush()
    stats = StateCache(folder, memory_budget=0, min_tokens=4).stats()
    assert (stats.hits, stats.misses) == (1, 1)

    assert reader.clear() > 0
    assert not list(folder.glob("*" + SUFFIX))
    assert StateCache(folder, memory_budget=0).stats().disk_states == 0


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_file_is_discarded_with_a_log_line(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "states"
    writer = StateCache(folder, memory_budget=0, min_tokens=4)
    writer.put("m", _tokens(10), bytearray(b"x" * 1000))
    writer.flush()
    (path,) = folder.glob("*" + SUFFIX)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(raw[:-100])
    else:
        raw[-10] ^= 0xFF
        path.write_bytes(raw)

    reader = StateCache(folder, memory_budget=1 << 20, min_tokens=4)
    with caplog.at_level(logging.WARNING):
        assert reader.find("m", _tokens(11), better_than=0) is None
    assert "Discarding" in caplog.text
    assert not path.exists()


def _follow(lookup: PromptLookup, tokens: list[int]) -> None:
    for token in tokens:
        lookup.push(token)


SOURCE = list(range(10, 40))  # a "paragraph" of distinct tokens


def test_prompt_lookup_drafts_what_followed() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5, 6, 7, 8, 9], batch_cost=0.05)
    _follow(lookup, [0, 2, 3])
    draft = lookup.propose(9)
    assert len(draft) >= 2 and draft == [4, 5, 6, 7, 8, 9][: len(draft)]
    assert lookup.propose(2) == [4, 5]
    _follow(lookup, [50, 51, 52])
    assert lookup.propose(4) == []  # nothing like it before


def test_prompt_lookup_keeps_its_place_across_a_changed_word() -> None:
    # The answer walks the source, changing a token here and there.
    lookup = PromptLookup([1, 2, *SOURCE, 3], batch_cost=0.05)
    _follow(lookup, [1, 2, 10, 11, 12])
    assert lookup.propose(3) == [13, 14, 15]
    _follow(lookup, [13, 99])  # 14 replaced by an unknown token: no n-gram leads back
    _follow(lookup, [15])  # ... but the source resumes right after it
    assert lookup.propose(3) == [16, 17, 18]
    _follow(lookup, [16, 98, 17])  # a token inserted before 17
    assert lookup.propose(2) == [18, 19]
    _follow(lookup, [18, 97, 96, 21])  # two replaced (19, 20)
    assert lookup.propose(2) == [22, 23]


def test_prompt_lookup_prefers_the_occurrence_ahead_of_its_place() -> None:
    # 5 occurs three times; after a miss the pointer resumes at the one after where it was.
    prompt = [5, 60, 61, 70, 71, 72, 5, 62, 63, 73, 74, 75, 5, 64, 65]
    lookup = PromptLookup(prompt, batch_cost=0.05)
    _follow(lookup, [70, 71, 72, 5, 62, 63, 90, 91])  # lost after 63 (expected 73)
    _follow(lookup, [5])
    assert lookup.propose(2) == [64, 65]  # not the 5 at the start
    # A longer n-gram wins over nearness.
    lookup = PromptLookup(prompt, batch_cost=0.05)
    _follow(lookup, [73, 74, 80, 81, 60, 61])
    assert lookup.propose(1) == [70]


def test_prompt_lookup_drafts_as_far_as_it_pays() -> None:
    copying = PromptLookup(SOURCE * 3, batch_cost=0.3)
    _follow(copying, SOURCE * 2)  # every prediction held
    assert len(copying.propose(16)) == 16
    assert copying.draft_length(16) == 16
    copying.batch_cost = 1.2  # a batch costs more than its tokens decoded one by one
    assert copying.draft_length(16) == 0
    copying.batch_cost = 0.3
    assert copying.propose(0) == []

    # An answer that keeps straying from the source: drafting stops by itself...
    straying = PromptLookup(SOURCE, batch_cost=0.5)
    shuffled = random.Random(1)
    _follow(straying, [shuffled.choice(SOURCE) for _ in range(60)])  # source words, any order
    assert straying.draft_length(16) == 0
    assert straying.expected[0] < 0.2  # a fresh guess rarely holds
    # ... and resumes once the answer copies again.
    _follow(straying, SOURCE[:20])
    assert straying.draft_length(8) > 2


# --- the engine, with the real model ----------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(model_path: Path) -> Iterator[LocalEngine]:
    """An engine without saved states that reads every prompt afresh: the reference."""
    engine = LocalEngine(model_path, n_ctx=N_CTX, n_threads=1, prompt_lookup=False)
    yield engine
    engine.close()


def _ask(engine: LocalEngine, messages: list[ChatMessage]) -> tuple[str, GenerationStats]:
    generation = engine.stream_chat(messages, GREEDY)
    text = generation.run()
    assert generation.stats is not None
    return text, generation.stats


def _afresh(engine: LocalEngine, messages: list[ChatMessage]) -> str:
    engine.clear_context()
    text, stats = _ask(engine, messages)
    assert stats.evaluated_prompt_tokens == stats.prompt_tokens
    return text


def _stayed(
    engine: LocalEngine, before: list[ChatMessage], messages: list[ChatMessage]
) -> tuple[str, GenerationStats]:
    """``messages`` answered by an engine whose context still holds ``before`` and its answer."""
    _afresh(engine, before)
    return _ask(engine, messages)


def _counted(answer: tuple[str, GenerationStats]) -> tuple[str, int]:
    return answer[0], answer[1].evaluated_prompt_tokens


def _engine(
    model_path: Path,
    cache: StateCache | None,
    *,
    n_ctx: int = N_CTX,
    prompt_lookup: bool = False,
    threads: int = 1,
) -> LocalEngine:
    """One thread unless a test is about more: the same arithmetic for every engine compared,
    and no thread waiting for a core another process holds (see engine.threads)."""
    return LocalEngine(
        model_path, n_ctx=n_ctx, n_threads=threads, state_cache=cache, prompt_lookup=prompt_lookup
    )


def _cache(folder: Path | None = None) -> StateCache:
    return StateCache(folder, memory_budget=1 << 30)


@pytest.mark.slow
def test_switching_away_and_back_evaluates_only_the_new_tokens(
    model_path: Path, fresh: LocalEngine
) -> None:
    engine = _engine(model_path, _cache())
    try:
        first, _ = _ask(engine, FIRST)
        follow_up = [*FIRST, ChatMessage("assistant", first), ChatMessage("user", "And item 7?")]
        # What the follow-up costs when nobody switches away (the context alone serves it):
        stayed_text, stayed = _stayed(fresh, FIRST, follow_up)
        _ask(engine, OTHER)  # the chat the user switched to

        text, stats = _ask(engine, follow_up)
        assert stats.evaluated_prompt_tokens == stayed.evaluated_prompt_tokens
        assert stats.evaluated_prompt_tokens < 20 < stats.prompt_tokens
        assert text == stayed_text
    finally:
        engine.close()


@pytest.fixture
def switched(model_path: Path) -> Iterator[tuple[LocalEngine, str, int]]:
    """An engine that answered FIRST, then OTHER: FIRST's state is only in its cache. With the
    first answer, and how many tokens the context held after it."""
    engine = _engine(model_path, _cache())
    try:
        first, _ = _ask(engine, FIRST)
        held = len(engine._llama._input_ids)
        _ask(engine, OTHER)
        yield engine, first, held
    finally:
        engine.close()


@pytest.mark.slow
def test_an_edited_question_starts_from_the_saved_document(
    switched: tuple[LocalEngine, str, int], fresh: LocalEngine
) -> None:
    engine, _first, _held = switched
    edited = [SYSTEM, ChatMessage("user", DOCUMENT + "\nWhat is item 4 about?")]
    text, stats = _ask(engine, edited)  # the longest still-valid prefix: the document
    assert 0 < stats.evaluated_prompt_tokens < 20
    assert (text, stats.evaluated_prompt_tokens) == _counted(_stayed(fresh, FIRST, edited))


@pytest.mark.slow
def test_regenerating_reads_only_the_last_prompt_token(
    switched: tuple[LocalEngine, str, int], fresh: LocalEngine
) -> None:
    engine, _first, held = switched
    text, stats = _ask(engine, FIRST)  # regenerate: same prompt, the old answer unused
    assert stats.evaluated_prompt_tokens == 1
    assert stats.prompt_tokens < held
    assert text == _stayed(fresh, FIRST, FIRST)[0]


@pytest.mark.slow
def test_a_changed_system_prompt_reuses_only_what_the_context_shares(
    switched: tuple[LocalEngine, str, int], fresh: LocalEngine
) -> None:
    engine, _first, _held = switched
    _ask(engine, FIRST)  # the context holds FIRST again
    changed = [ChatMessage("system", "You are a terse pirate."), FIRST[1]]
    text, stats = _ask(engine, changed)
    # Only what the context itself shares ("<|im_start|>system\nYou are a") is reused.
    shared = common_prefix(
        engine.fit_prompt(FIRST, GREEDY)[0], engine.fit_prompt(changed, GREEDY)[0]
    )
    assert stats.evaluated_prompt_tokens == stats.prompt_tokens - shared
    assert (text, stats.evaluated_prompt_tokens) == _counted(_stayed(fresh, FIRST, changed))


@pytest.mark.slow
def test_another_model_file_or_context_size_never_uses_a_saved_state(
    model_path: Path, tmp_path: Path
) -> None:
    cache = _cache()
    engine = _engine(model_path, cache)
    try:
        first, _ = _ask(engine, FIRST)
        _ask(engine, OTHER)  # FIRST's state is now only in the cache
    finally:
        engine.close()
    # Another model file (a copy counts: another identity), another context size.
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(model_path, copy)
    for other in (_engine(copy, cache), _engine(model_path, cache, n_ctx=2 * N_CTX)):
        try:
            text, stats = _ask(other, FIRST)
            assert stats.evaluated_prompt_tokens == stats.prompt_tokens
            assert text == first
        finally:
            other.close()


@pytest.mark.slow
def test_a_new_chat_with_the_same_long_system_prompt_starts_from_it(
    model_path: Path, fresh: LocalEngine
) -> None:
    system = ChatMessage("system", "You are the archivist of this inventory.\n" + DOCUMENT)
    first = [system, ChatMessage("user", "What is item 2 about?")]
    question = [system, ChatMessage("user", "Which items are green?")]
    cache = _cache()
    engine = _engine(model_path, cache)
    try:
        _ask(engine, first)
    finally:
        engine.close()
    engine = _engine(model_path, cache)  # a reload: the context starts empty
    try:
        text, stats = _ask(engine, question)
        assert stats.evaluated_prompt_tokens < 20 < stats.prompt_tokens
    finally:
        engine.close()
    # The reference reads the first chat in the same two parts (it saves the preamble too),
    # then answers the question from its own context.
    reference = _engine(model_path, _cache())
    try:
        assert (text, stats.evaluated_prompt_tokens) == _counted(
            _stayed(reference, first, question)
        )
    finally:
        reference.close()


@pytest.mark.slow
def test_a_truncated_state_file_falls_back_to_a_full_read(
    model_path: Path, fresh: LocalEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "states"
    cache = _cache(folder)
    engine = _engine(model_path, cache)
    first, _ = _ask(engine, FIRST)
    engine.close()
    assert cache.flush()
    (path,) = folder.glob("*" + SUFFIX)
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2)

    engine = _engine(model_path, _cache(folder))  # a new process, as it were
    try:
        follow_up = [*FIRST, ChatMessage("assistant", first), ChatMessage("user", "And item 7?")]
        with caplog.at_level(logging.WARNING):
            text, stats = _ask(engine, follow_up)
        assert stats.evaluated_prompt_tokens == stats.prompt_tokens
        assert "Discarding" in caplog.text
        assert text == _afresh(fresh, follow_up)
    finally:
        engine.close()


REWRITE = [
    SYSTEM,
    ChatMessage(
        "user",
        "Fix the typos in this paragraph and reply with the corrected paragraph only:\n\n"
        "Teh quick brown fox jumpd over the lazzy dog. It was a sunny day and the fox was "
        "verry happy to be outside in the feild, where it could run and play all day long with "
        "it's freinds. Later that evenning, the fox went home and slept soundly untill morning.",
    ),
]


@pytest.mark.slow
def test_drafting_from_the_prompt_gives_the_same_text(model_path: Path) -> None:
    """Every answer is read from an empty context: on some processors (a Xeon with AVX-512)
    a prompt read in one long batch and one continued from a kept context already part in
    the last bits, with or without drafts."""
    engine = _engine(model_path, None, prompt_lookup=True)
    engine.batch_cost = 0.1  # draft whatever the pointer expects, however fast this CPU is

    def answer(settings: GenerationSettings) -> str:
        engine.clear_context()
        return engine.stream_chat(REWRITE, settings).run()

    try:
        settings = GenerationSettings(temperature=0.0, max_tokens=80, repeat_penalty=1.0)
        drafted = answer(settings)
        _drafted, accepted = engine.last_drafts
        assert accepted > 10
        measured = engine.measured_batch_cost  # timed as it went, for when it is not fixed
        assert measured is not None and measured > 0
        engine.prompt_lookup = False
        assert answer(settings) == drafted
        assert engine.last_drafts == (0, 0)

        # With sampling, each position is still drawn from the model's own distribution, with
        # the same sampler calls in the same order: the same seed gives the same text.
        sampled = GenerationSettings(temperature=0.8, max_tokens=60, seed=7)
        plain = answer(sampled)
        engine.prompt_lookup = True
        assert answer(sampled) == plain

        # Where a batch costs more than its tokens one by one, drafting never starts.
        engine.batch_cost = 1.5
        assert answer(settings) == drafted
        assert engine.last_drafts == (0, 0)
    finally:
        engine.close()


LONG_REWRITE = [
    SYSTEM,
    ChatMessage(
        "user",
        "Fix the typos in this paragraph and reply with the corrected paragraph only:\n\n"
        "Teh old lighthouse stood on the edge of the cliff for more then a hundred years. Every "
        "night its keeper climbed the narow stairs, lit the great lamp and watched the ships "
        "pass safely thru the dark water. The keeper was a quiet man who liked his books, his "
        "cat and the sound of the waves, and he rarely spoke to anyone in the vilage below. One "
        "winter a terible storm broke the windows and put out the lamp, and the keeper had to "
        "carry a lantern to the top of the tower and hold it there untill the morning came.",
    ),
]


# Two threads pinned on purpose: on a two-core machine whose cores are both busy with other
# work, each of llama.cpp's many waits between its two threads can cost a time slice (about 4 s
# alone, over 300 s seen under two busy loops on one Xeon); only a hang should fail this.
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_drafts_stop_where_batches_and_single_tokens_would_part(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On two threads llama.cpp attends differently for one token and for a batch once 512
    cells are in use: this answer left the plain one at position 257 when drafts went on past
    256. Drafts stop there; the text is the plain text."""
    engine = _engine(model_path, None, prompt_lookup=True, threads=2)
    engine.batch_cost = 0.1
    last_positions: list[int] = []
    decode_drafts = engine._decode_drafts

    def recording(token: int, drafts: list[int]) -> None:
        last_positions.append(engine._llama.n_tokens + len(drafts))
        decode_drafts(token, drafts)

    monkeypatch.setattr(engine, "_decode_drafts", recording)
    try:
        settings = GenerationSettings(temperature=0.0, max_tokens=160, repeat_penalty=1.0)
        drafted = engine.stream_chat(LONG_REWRITE, settings).run()
        assert engine.last_drafts[1] > 0
        assert last_positions and max(last_positions) < EXACT_DRAFT_POSITIONS
        assert engine._llama.n_tokens > EXACT_DRAFT_POSITIONS + 20  # the answer went on past it
        engine.prompt_lookup = False
        engine.clear_context()
        assert engine.stream_chat(LONG_REWRITE, settings).run() == drafted
    finally:
        engine.close()


# --- the shared cache and the terminal ----------------------------------------------------------


def test_the_shared_cache_follows_the_settings() -> None:
    settings = {"model_memory": True, "model_memory_ram_mb": 128, "model_memory_disk_mb": 256}
    cache = shared_state_cache(settings)
    assert cache is not None and cache.folder == state_cache_folder()
    assert cache.memory_budget == 128 << 20 and cache.disk_budget == 256 << 20
    assert shared_state_cache({**settings, "model_memory_ram_mb": 64}) is cache
    assert cache.memory_budget == 64 << 20
    assert shared_state_cache({**settings, "model_memory": False}) is None
    memory_only = shared_state_cache({**settings, "model_memory_disk_mb": 0})
    assert memory_only is not None and memory_only.folder is None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=os.environ.copy(),
    )


@pytest.mark.slow
def test_a_second_process_continues_from_the_saved_state(model_path: Path) -> None:
    common = ("--model-path", str(model_path), "--temperature", "0", "--max-tokens", "16")
    first = _cli("ask", *common, "--json", FIRST[1].content)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["evaluated_prompt_tokens"] == data["prompt_tokens"]
    assert list((app_paths().cache / "model-state").glob("*" + SUFFIX))

    conversation = str(data["conversation_id"])
    second = _cli("ask", *common, "--json", "--conversation", conversation, "And item 7?")
    assert second.returncode == 0, second.stderr
    follow_up = json.loads(second.stdout)
    assert follow_up["prompt_tokens"] > data["prompt_tokens"]
    assert follow_up["evaluated_prompt_tokens"] < 20

    shown = _cli("models", "memory", "--json")
    assert shown.returncode == 0, shown.stderr
    memory = json.loads(shown.stdout)
    assert memory["hits"] == 1 and memory["disk_states"] >= 1 and memory["disk_bytes"] > 0
    doctor = json.loads(_cli("doctor", "--json", "--in-process").stdout)["model_memory"]
    assert doctor["hits"] == 1 and doctor["disk_bytes"] == memory["disk_bytes"]

    cleared = _cli("models", "clear-state")
    assert cleared.returncode == 0 and "freed" in cleared.stdout
    assert json.loads(_cli("models", "memory", "--json").stdout)["disk_states"] == 0
