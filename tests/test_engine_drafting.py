"""Answers drafted from the prompt (``assistant.engine.prompt_lookup``) inside the engine.

On the tiny random-weight model (``tests.model_files.write_tiny_llama``) in Q8_0, whose
greedy babble repeats itself enough for many drafts to be taken and many to be dropped. What
is pinned:

- drafting never changes the text: greedy and seeded answers are those of plain decoding;
- the engine drafts only where its first batch gave the logits of single-token decoding (a
  quantized model's always do; the f16 tiny model's do not on AVX-512);
- the counts in ``last_drafts`` are those of the batches the engine really decoded;
- a batch never holds a position the answer or the context cannot reach, nor, on several
  threads, a position from ``EXACT_DRAFT_POSITIONS`` on; with layers on a GPU nothing is
  drafted;
- however an answer ends (its length, a cancel, the consumer closing it mid-batch), the context
  holds exactly the tokens ``n_tokens`` counts: no drafted position is left behind;
- what a batch costs is learned from the decodes' timings (here a simulated clock, so the
  figures are exact) and sizes the drafts of this answer and of the next.

One thread everywhere but in the test about threads (see ``tests.conftest.tiny_model_path``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import llama_cpp
import numpy as np
import pytest

from assistant.engine import local
from assistant.engine.base import CancelToken, ChatMessage, GenerationSettings, GenerationStats
from assistant.engine.local import EXACT_DRAFT_POSITIONS, LocalEngine
from assistant.engine.prompt_lookup import BATCH_COST, PromptLookup
from assistant.engine.state_cache import StateCache
from assistant.errors import InsufficientMemoryError
from assistant.models.hardware import detect_hardware

# Cheap batches: the lookup drafts as far as its pointer's record makes worthwhile.
CHEAP = 0.02
PROMPTS = ["Hello", "1 2 3 4 5 6 7 8 9 10", "Tell me about crows."]

MakeEngine = Callable[..., LocalEngine]


def _user(text: str) -> list[ChatMessage]:
    return [ChatMessage("user", text)]


def _greedy(max_tokens: int) -> GenerationSettings:
    return GenerationSettings(temperature=0.0, max_tokens=max_tokens, repeat_penalty=1.0)


@pytest.fixture
def make_engine(tiny_quantized_model_path: Path) -> Iterator[MakeEngine]:
    """Fresh engines (nothing learned about batch costs yet), closed after the test."""
    engines: list[LocalEngine] = []

    def make(**options: Any) -> LocalEngine:
        settings: dict[str, Any] = {"n_ctx": 512, "n_threads": 1, "prompt_lookup": True}
        engine = LocalEngine(tiny_quantized_model_path, **(settings | options))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@dataclasses.dataclass
class Decodes:
    """The decodes of the engine's context, as they happen: ``(n_tokens, tokens)`` for plain
    decodes (prompt parts and single answer tokens), ``(n_tokens, drafts)`` for batches of a
    sampled token and its drafts."""

    singles: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    batches: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    # The engine's check of its first batch against single-token decoding (undone at once,
    # so not counted above): where each began, and what it found.
    checks: list[tuple[int, bool]] = dataclasses.field(default_factory=list)
    checking: bool = False

    def clear(self) -> None:
        self.singles.clear()
        self.batches.clear()

    def batch_ends(self) -> list[int]:
        """The last position each batch wrote (its last draft's)."""
        return [start + drafts for start, drafts in self.batches]

    def answer_decodes(self, stats: GenerationStats) -> int:
        """Decodes of answer tokens (the prompt is read before its last position is held)."""
        singles = [start for start, _count in self.singles if start >= stats.prompt_tokens]
        return len(singles) + len(self.batches)


def _record(engine: LocalEngine, monkeypatch: pytest.MonkeyPatch) -> Decodes:
    seen = Decodes()
    decode, decode_drafts = engine._decode, engine._decode_drafts
    check = engine._batch_is_exact

    def recording_decode(tokens: list[int]) -> None:
        if not seen.checking:
            seen.singles.append((engine._llama.n_tokens, len(tokens)))
        decode(tokens)

    def recording_drafts(token: int, drafts: list[int]) -> None:
        if not seen.checking:
            seen.batches.append((engine._llama.n_tokens, len(drafts)))
        decode_drafts(token, drafts)

    def recording_check(token: int, drafts: list[int]) -> bool:
        start = engine._llama.n_tokens
        seen.checking = True
        try:
            exact = check(token, drafts)
        finally:
            seen.checking = False
        assert engine._llama.n_tokens == start == _held(engine)  # the context as it was
        seen.checks.append((start, exact))
        return exact

    monkeypatch.setattr(engine, "_decode", recording_decode)
    monkeypatch.setattr(engine, "_decode_drafts", recording_drafts)
    monkeypatch.setattr(engine, "_batch_is_exact", recording_check)
    return seen


def _held(engine: LocalEngine) -> int:
    """How many positions the context's KV cache holds (sequence 0, from position 0)."""
    memory = llama_cpp.llama_get_memory(engine._llama._ctx.ctx)
    return int(llama_cpp.llama_memory_seq_pos_max(memory, 0)) + 1


def _answer(
    engine: LocalEngine,
    messages: list[ChatMessage],
    settings: GenerationSettings,
    *,
    drafting: bool,
) -> tuple[str, GenerationStats]:
    """An answer read from an empty context (the same prompt batches every time)."""
    engine.prompt_lookup = drafting
    engine.clear_context()
    generation = engine.stream_chat(messages, settings)
    text = generation.run()
    assert generation.stats is not None
    assert _held(engine) == engine._llama.n_tokens
    return text, generation.stats


# --- the text and the counts ------------------------------------------------------------------


@pytest.mark.parametrize("prompt", PROMPTS)
def test_drafted_answers_are_the_plain_answers(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, prompt: str
) -> None:
    engine = make_engine()
    engine.batch_cost = CHEAP
    decodes = _record(engine, monkeypatch)
    settings = _greedy(120)
    plain, _ = _answer(engine, _user(prompt), settings, drafting=False)
    assert engine.last_drafts == (0, 0)
    assert decodes.batches == []

    decodes.clear()
    drafted, stats = _answer(engine, _user(prompt), settings, drafting=True)
    assert drafted == plain
    assert stats.completion_tokens == 120 and stats.stop_reason == "length"
    drafts, accepted = engine.last_drafts
    # Some drafts taken, several in a row; others dropped.
    assert 0 < accepted < drafts
    assert max(count for _start, count in decodes.batches) >= 3
    # Every drafted token went into a batch; every answer token the context holds was either
    # decoded (alone or at the head of a batch) or an accepted draft.
    assert drafts == sum(count for _start, count in decodes.batches)
    answer_positions = engine._llama.n_tokens - stats.prompt_tokens
    assert answer_positions == stats.completion_tokens
    assert accepted == answer_positions - decodes.answer_decodes(stats)

    # The first batch was checked against single-token decoding, once, where it began.
    assert decodes.checks == [(decodes.batches[0][0], True)]

    # Back to plain decoding: the counts are this answer's, not the last drafted one's.
    _answer(engine, _user(prompt), settings, drafting=False)
    assert engine.last_drafts == (0, 0)
    _answer(engine, _user(prompt), settings, drafting=True)
    assert len(decodes.checks) == 1


# --- where batches and single tokens part -------------------------------------------------------


def test_an_f16_model_drafts_only_where_its_batches_match_single_tokens(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """f16 weights are multiplied by other kernels in a batch than for one token where the
    processor has them (AVX-512): the engine drafts only where its first batch matched."""
    engine = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1, prompt_lookup=True)
    try:
        engine.batch_cost = CHEAP
        decodes = _record(engine, monkeypatch)
        settings = _greedy(120)
        with caplog.at_level("INFO", logger=local.__name__):
            drafted, _ = _answer(engine, _user(PROMPTS[2]), settings, drafting=True)
        assert _answer(engine, _user(PROMPTS[2]), settings, drafting=False)[0] == drafted
        ((_start, exact),) = decodes.checks
        assert engine._can_draft is exact
        off = "tiny-llama.gguf: drafting is off, since a batch's logits differ here from a "
        assert any(r.getMessage().startswith(off) for r in caplog.records) is not exact
        if not exact:
            assert decodes.batches == [] and engine.last_drafts == (0, 0)
    finally:
        engine.close()


def test_where_a_batch_differs_from_single_tokens_nothing_is_drafted_again(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """As if this processor's batch kernels differed: the first batch's logits for its first
    token are not those of the token alone by one bit."""
    engine = make_engine()
    engine.batch_cost = CHEAP
    decodes = _record(engine, monkeypatch)
    settings = _greedy(120)
    plain, _ = _answer(engine, _user(PROMPTS[2]), settings, drafting=False)
    logits_of = llama_cpp.llama_get_logits_ith

    def off_by_a_bit(ctx: Any, index: int) -> Any:
        row = logits_of(ctx, index)
        if decodes.checking and index == 0:
            row[0] = float(np.nextafter(np.float32(row[0]), np.float32(np.inf)))
        return row

    monkeypatch.setattr(llama_cpp, "llama_get_logits_ith", off_by_a_bit)
    decodes.clear()
    with caplog.at_level("INFO", logger=local.__name__):
        drafted, stats = _answer(engine, _user(PROMPTS[2]), settings, drafting=True)
    assert drafted == plain
    assert decodes.checks == [(stats.prompt_tokens + 1, False)]
    assert decodes.batches == [] and engine.last_drafts == (0, 0)
    assert engine._can_draft is False
    said = [r.getMessage() for r in caplog.records if r.name == local.__name__]
    assert said == [
        "tiny-llama-q8_0.gguf: drafting is off, since a batch's logits differ here from a "
        "single token's and drafts could change the answer."
    ]
    # The context holds the plain answer's tokens, and later answers do not draft or check.
    assert engine._llama.n_tokens == stats.prompt_tokens + stats.completion_tokens
    assert _answer(engine, _user(PROMPTS[0]), settings, drafting=True)[0]
    assert len(decodes.checks) == 1 and decodes.batches == []


def test_a_seeded_sampled_answer_is_the_same_drafted(make_engine: MakeEngine) -> None:
    """Each position is drawn from the model's own distribution, with the same sampler calls
    in the same order: the same seed gives the same text."""
    engine = make_engine()
    engine.batch_cost = CHEAP
    settings = GenerationSettings(temperature=0.3, max_tokens=80, seed=7, repeat_penalty=1.0)
    for prompt in PROMPTS:
        plain, _ = _answer(engine, _user(prompt), settings, drafting=False)
        assert _answer(engine, _user(prompt), settings, drafting=True)[0] == plain
        assert engine.last_drafts[1] > 0


# --- where batches may reach --------------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "max_tokens"), [("Hello", 48), ("Tell me about crows.", 64)])
def test_batches_reach_the_answers_last_position_and_no_further(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, prompt: str, max_tokens: int
) -> None:
    """The answer's last token is sampled from the logits of the position before it: drafts
    go up to that position, never past it (where nothing they say could be used)."""
    engine = make_engine()
    engine.batch_cost = CHEAP
    decodes = _record(engine, monkeypatch)
    settings = _greedy(max_tokens)
    drafted, stats = _answer(engine, _user(prompt), settings, drafting=True)
    last = stats.prompt_tokens + max_tokens - 1  # where the answer's last token goes
    assert max(decodes.batch_ends()) == last - 1
    assert _answer(engine, _user(prompt), settings, drafting=False)[0] == drafted


@pytest.mark.parametrize("prompt", PROMPTS)
def test_batches_reach_the_contexts_last_position_but_one(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, prompt: str
) -> None:
    """An answer that runs into the end of the context: batches stop where a last token still
    fits after them, and none runs out of room."""
    n_ctx = 256
    engine = make_engine(n_ctx=n_ctx)
    engine.batch_cost = CHEAP
    decodes = _record(engine, monkeypatch)
    settings = _greedy(1000)
    drafted, stats = _answer(engine, _user(prompt), settings, drafting=True)
    assert stats.stop_reason == "length" and engine._llama.n_tokens == n_ctx
    assert max(decodes.batch_ends()) == n_ctx - 2
    assert _answer(engine, _user(prompt), settings, drafting=False)[0] == drafted


@pytest.mark.parametrize("threads", [1, 2])
def test_on_several_threads_batches_stay_before_the_exact_positions(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, threads: int
) -> None:
    """On one thread a batch gives the logits single tokens would anywhere; on more, only
    before position ``EXACT_DRAFT_POSITIONS`` (see ``LocalEngine._exact_draft_room``)."""
    engine = make_engine(n_threads=threads)
    engine.batch_cost = CHEAP
    decodes = _record(engine, monkeypatch)
    prompt = _user("Hello" + " word" * 215)  # 246 tokens: the answer crosses position 256
    settings = _greedy(24 if threads > 1 else 60)
    drafted, stats = _answer(engine, prompt, settings, drafting=True)
    assert stats.prompt_tokens < EXACT_DRAFT_POSITIONS < engine._llama.n_tokens
    assert engine.last_drafts[1] > 0
    ends = decodes.batch_ends()
    if threads == 1:
        assert max(ends) > EXACT_DRAFT_POSITIONS
        assert engine._exact_draft_room(300) == engine.n_ctx
    else:
        assert max(ends) < EXACT_DRAFT_POSITIONS
        # A batch after n tokens holds the sampled token at position n, its drafts after it.
        assert engine._exact_draft_room(200) == EXACT_DRAFT_POSITIONS - 200 - 1
        assert engine._exact_draft_room(EXACT_DRAFT_POSITIONS - 1) == 0
    assert _answer(engine, prompt, settings, drafting=False)[0] == drafted


def test_nothing_is_drafted_with_layers_on_a_gpu(make_engine: MakeEngine) -> None:
    """Offloaded layers use other kernels for batches and single tokens: no position is safe.
    (llama.cpp without a GPU backend keeps the layers on the CPU; the engine still refuses.)"""
    hardware = dataclasses.replace(detect_hardware(), gpu_offload=True)
    engine = make_engine(n_gpu_layers=1, hardware=hardware)
    engine.batch_cost = CHEAP
    assert engine._exact_draft_room(0) == 0
    drafted, _ = _answer(engine, _user(PROMPTS[0]), _greedy(60), drafting=True)
    assert engine.last_drafts == (0, 0)
    assert _answer(engine, _user(PROMPTS[0]), _greedy(60), drafting=False)[0] == drafted


# --- stopping while drafts are in the context -------------------------------------------------


@pytest.mark.parametrize("how", ["cancel", "close"])
def test_stopping_in_the_middle_of_a_batch_leaves_only_the_counted_tokens(
    make_engine: MakeEngine, how: str
) -> None:
    """Stopped right after an accepted draft with more drafts behind it, the context drops
    them (and the stopped token): it holds what ``n_tokens`` says, as the next answer's reuse
    of the context assumes; and what it holds is saved when it moves on, although its last
    decode was a batch."""
    engine = make_engine()
    engine.batch_cost = CHEAP
    settings = _greedy(120)
    prompt = _user(PROMPTS[2])
    plain, _ = _answer(engine, prompt, settings, drafting=False)

    cache = StateCache(None, memory_budget=1 << 30, min_tokens=4)
    engine.attach_state_cache(cache)
    engine.clear_context()
    engine.prompt_lookup = True
    cancel = CancelToken()
    generation = engine.stream_chat(prompt, settings, cancel)
    stopped_at = None
    for chunk_number, _chunk in enumerate(generation):
        # The token just given is a draft the context holds, with drafts after it.
        if stopped_at is None and chunk_number > 10 and _held(engine) > engine._llama.n_tokens + 1:
            stopped_at = chunk_number
            if how == "close":
                generation.close()
                break
            cancel.cancel()
    assert stopped_at is not None
    assert generation.stats is not None and generation.stats.stop_reason == "cancelled"
    assert plain.startswith(generation.text)
    assert _held(engine) == engine._llama.n_tokens

    held = [int(token) for token in engine._llama.input_ids[: engine._llama.n_tokens]]
    engine.close()  # the context moves on: its state is saved
    match = cache.find(engine.fingerprint, [*held, 0], better_than=0)
    assert match is not None and match.usable == len(held)


# --- a batch that does not fit ------------------------------------------------------------------


def test_a_batch_the_context_cannot_hold_is_a_known_problem(make_engine: MakeEngine) -> None:
    """Answers never ask for it (drafts stop two positions before the context's end), but
    llama.cpp refusing a batch must read as running out of room, not as a bug."""
    engine = make_engine(n_ctx=256)
    _text, stats = _answer(engine, _user(PROMPTS[0]), _greedy(1000), drafting=False)
    assert stats.stop_reason == "length" and engine._llama.n_tokens == 256
    engine._llama._ctx.kv_cache_seq_rm(0, 254, -1)
    engine._llama.n_tokens = 254
    with pytest.raises(InsufficientMemoryError) as raised:
        engine._decode_drafts(int(engine._llama.input_ids[254]), [1, 2])  # 3 tokens, 2 cells
    assert raised.value.message == "The engine ran out of room while writing the answer."
    assert raised.value.hint == "Lower the context size or start a new conversation."
    assert engine._llama.n_tokens == 254


# --- what batches cost --------------------------------------------------------------------------


def test_the_batch_cost_follows_the_timings(make_engine: MakeEngine) -> None:
    engine = make_engine()
    lookup = PromptLookup([])
    assert engine.measured_batch_cost is None
    engine._learn_cost(lookup, 5, 0.030)  # no single token timed yet: nothing to compare with
    engine._learn_cost(lookup, 1, 0.010)
    assert engine.measured_batch_cost is None  # no batch timed yet
    assert lookup.batch_cost == BATCH_COST

    # 4 further tokens cost 0.020 s: 0.005 each, half a single token's decode.
    engine._learn_cost(lookup, 5, 0.030)
    assert engine.measured_batch_cost == pytest.approx(0.5)
    assert lookup.batch_cost == pytest.approx(0.5)
    # 0.010 each: the average of the extra cost moves a fifth of the way, to 0.006.
    engine._learn_cost(lookup, 3, 0.030)
    assert engine.measured_batch_cost == pytest.approx(0.6)
    assert lookup.batch_cost == pytest.approx(0.6)
    # A single token in 0.020 s: its average moves a tenth of the way, to 0.011.
    engine._learn_cost(lookup, 1, 0.020)
    assert engine.measured_batch_cost == pytest.approx(0.006 / 0.011)
    # A batch faster than a single token: its further tokens cost nothing.
    engine._learn_cost(lookup, 4, 0.008)
    assert engine.measured_batch_cost == pytest.approx(0.0048 / 0.011)
    assert lookup.batch_cost == pytest.approx(0.0048 / 0.011)

    # A fixed cost is the lookup's, whatever is measured.
    engine.batch_cost = lookup.batch_cost = 0.3
    engine._learn_cost(lookup, 2, 0.030)
    assert lookup.batch_cost == 0.3
    assert engine.measured_batch_cost == pytest.approx((0.0048 * 0.8 + 0.019 * 0.2) / 0.011)


class SimulatedClock:
    """``time.perf_counter`` for the engine, moving only when it decodes: a token alone takes
    ``single`` seconds, each further token of a batch ``extra``. Timings without the noise of
    a shared CPU, so what the engine learns from them is exact."""

    def __init__(
        self,
        engine: LocalEngine,
        monkeypatch: pytest.MonkeyPatch,
        *,
        single: float,
        extra: float,
    ) -> None:
        self.now = 0.0
        decode, decode_drafts = engine._decode, engine._decode_drafts

        def timed_decode(tokens: list[int]) -> None:
            self.now += single + extra * (len(tokens) - 1)
            decode(tokens)

        def timed_drafts(token: int, drafts: list[int]) -> None:
            self.now += single + extra * len(drafts)
            decode_drafts(token, drafts)

        monkeypatch.setattr(engine, "_decode", timed_decode)
        monkeypatch.setattr(engine, "_decode_drafts", timed_drafts)
        monkeypatch.setattr(local, "time", SimpleNamespace(perf_counter=lambda: self.now))


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[list[float]]:
    """For each answer's lookup, the batch cost it drafted with at each proposal."""
    costs: list[list[float]] = []

    class RecordingLookup(PromptLookup):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.costs: list[float] = []
            costs.append(self.costs)

        def propose(self, limit: int) -> list[int]:
            self.costs.append(self.batch_cost)
            return super().propose(limit)

    monkeypatch.setattr(local, "PromptLookup", RecordingLookup)
    return costs


def test_the_engine_learns_what_batches_cost_as_it_answers(
    make_engine: MakeEngine, monkeypatch: pytest.MonkeyPatch, lookups: list[list[float]]
) -> None:
    engine = make_engine()
    assert engine.batch_cost is None  # measured, not fixed
    SimulatedClock(engine, monkeypatch, single=1 / 1024, extra=1 / 4096)
    settings = _greedy(120)
    prompt = _user(PROMPTS[1])
    first, _ = _answer(engine, prompt, settings, drafting=True)
    assert engine.last_drafts[1] > 0
    assert engine.measured_batch_cost == pytest.approx(0.25)
    # Until batches were timed the lookup assumed its default; from then on, what was measured.
    assert lookups[0][0] == BATCH_COST and lookups[0][-1] == pytest.approx(0.25)

    # The next answer starts from what this one measured.
    second, _ = _answer(engine, prompt, settings, drafting=True)
    assert second == first
    assert lookups[1] and all(cost == pytest.approx(0.25) for cost in lookups[1])

    # A fixed cost sizes the drafts instead; timings are still learned.
    engine.batch_cost = CHEAP
    SimulatedClock(engine, monkeypatch, single=1 / 1024, extra=1 / 2048)
    assert _answer(engine, prompt, settings, drafting=True)[0] == first
    assert all(cost == CHEAP for cost in lookups[2])
    assert 0.25 < (engine.measured_batch_cost or 0) <= 0.5
    assert _answer(engine, prompt, settings, drafting=False)[0] == first
