"""The tiny stand-in model (``tests.model_files.write_tiny_llama``) runs in the app's own engine.

SmolLM2's tokenizer and chat template over a random two-block network: the answers are
babble, but they stream, repeat at temperature 0 and vary by seed when sampling, which is
what engine tests about caching, drafting and stopping need, at a fraction of the real
model's cost. None of these tests uses the real model's fixtures, so none is ``slow``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from assistant.engine.base import ChatMessage, GenerationSettings
from assistant.engine.local import LocalEngine
from assistant.models.gguf_file import read_gguf_info
from tests.model_files import ENDS_ANSWERS, write_tiny_llama
from tests.support import smollm2_path

GREEDY = GenerationSettings(temperature=0.0, max_tokens=32, repeat_penalty=1.0)
SAMPLED = GenerationSettings(temperature=1.0, max_tokens=32, repeat_penalty=1.0)
SYSTEM = ChatMessage("system", "You are a helpful assistant.")
FRANCE = ChatMessage("user", "What is the capital of France?")
# SmolLM2's special tokens: <|im_start|> and <|im_end|>.
IM_START, IM_END = 1, 2


@pytest.fixture(scope="module")
def tiny_engine(tiny_model_path: Path) -> Iterator[LocalEngine]:
    loaded = LocalEngine(tiny_model_path, n_ctx=512, n_threads=1)
    yield loaded
    loaded.close()


def test_header_is_smollm2s_tokenizer_over_a_tiny_network(tiny_model_path: Path) -> None:
    tiny = read_gguf_info(tiny_model_path)
    real = read_gguf_info(smollm2_path())
    assert tiny.architecture == "llama"
    assert tiny.layers == 2
    assert tiny.chat_template == real.chat_template
    assert tiny.vocab_size == real.vocab_size
    assert (
        tiny.metadata["tokenizer.ggml.eos_token_id"] == real.metadata["tokenizer.ggml.eos_token_id"]
    )
    assert tiny.file_size < real.file_size // 10


def test_streams_an_answer_in_the_chat_template(tiny_engine: LocalEngine) -> None:
    assert not tiny_engine.uses_fallback_template
    tokens, dropped, stops = tiny_engine.fit_prompt([SYSTEM, FRANCE], GREEDY)
    # <|im_start|>system ...<|im_end|> <|im_start|>user ...<|im_end|> <|im_start|>assistant
    assert (tokens.count(IM_START), tokens.count(IM_END)) == (3, 2)
    assert dropped == []
    assert "<|im_end|>" in stops

    generation = tiny_engine.stream_chat([SYSTEM, FRANCE], GREEDY)
    chunks = list(generation)
    assert len(chunks) == GREEDY.max_tokens
    assert "".join(chunks) == generation.text
    stats = generation.stats
    assert stats is not None
    # Random weights never choose <|im_end|>: every answer runs to its limit.
    assert stats.stop_reason == "length"
    assert stats.completion_tokens == GREEDY.max_tokens
    assert stats.prompt_tokens == len(tokens)


def test_greedy_answer_is_the_same_every_time(tiny_engine: LocalEngine) -> None:
    first = tiny_engine.stream_chat([SYSTEM, FRANCE], GREEDY).run()
    again = tiny_engine.stream_chat([SYSTEM, FRANCE], GREEDY).run()  # from the KV cache
    tiny_engine.clear_context()
    fresh = tiny_engine.stream_chat([SYSTEM, FRANCE], GREEDY).run()
    assert first == again == fresh


def test_greedy_answer_does_not_repeat_one_token(tiny_engine: LocalEngine) -> None:
    chunks = list(tiny_engine.stream_chat([SYSTEM, FRANCE], GREEDY))
    assert len(set(chunks)) > len(chunks) // 4


def test_sampled_answer_follows_the_seed(tiny_engine: LocalEngine) -> None:
    def answer(seed: int) -> str:
        settings = replace(SAMPLED, seed=seed)
        return tiny_engine.stream_chat([SYSTEM, FRANCE], settings).run()

    assert answer(1) == answer(1)
    assert answer(1) != answer(2)


def test_follow_up_turn_evaluates_only_new_tokens(tiny_engine: LocalEngine) -> None:
    tiny_engine.clear_context()
    first = tiny_engine.stream_chat([SYSTEM, FRANCE], GREEDY)
    first.run()
    # A written answer, not the babble: random tokens often tokenize differently once turned
    # into text (" feasible" + "rals" reads back as " feas" "ib" "ler" "als"), and the
    # context would then be read again from there, as it should be.
    answer, question = ChatMessage("assistant", "Paris."), ChatMessage("user", "And of Germany?")
    follow_up = tiny_engine.stream_chat([SYSTEM, FRANCE, answer, question], GREEDY)
    follow_up.run()
    assert first.stats is not None and follow_up.stats is not None
    assert first.stats.evaluated_prompt_tokens == first.stats.prompt_tokens
    new_tokens = tiny_engine.count_tokens(answer.content) + tiny_engine.count_tokens(
        question.content
    )
    assert follow_up.stats.evaluated_prompt_tokens <= new_tokens + 12
    assert follow_up.stats.prompt_tokens > first.stats.prompt_tokens + new_tokens


def test_with_an_end_lift_some_answers_end_by_themselves(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    path = write_tiny_llama(
        tmp_path_factory.mktemp("ending") / "tiny.gguf", smollm2_path(), end_lift=ENDS_ANSWERS
    )
    questions = ["Hi", "Tell me a word.", "List three colours.", "Unrelated", "And of Germany?"]
    ending = LocalEngine(path, n_ctx=512, n_threads=1)
    try:
        answers = [
            ending.stream_chat([SYSTEM, ChatMessage("user", question)], GREEDY)
            for question in questions
        ]
        for answer in answers:
            answer.run()
    finally:
        ending.close()
    stats = [answer.stats for answer in answers if answer.stats is not None]
    assert {stat.stop_reason for stat in stats} == {"stop", "length"}
    for answer in answers:
        assert "<|im_end|>" not in answer.text
    assert all(
        stat.completion_tokens < GREEDY.max_tokens for stat in stats if stat.stop_reason == "stop"
    )


def test_logits_are_finite(tiny_model_path: Path) -> None:
    llama = llama_cpp.Llama(
        model_path=str(tiny_model_path), n_ctx=256, n_threads=1, logits_all=True, verbose=False
    )
    try:
        tokens = llama.tokenize(b"The quick brown fox jumps over the lazy dog. " * 4)
        llama.eval(tokens)
        scores = llama.scores[: len(tokens)]
    finally:
        llama.close()
    assert np.isfinite(scores).all()
    assert scores.std() > 0.1


def test_same_seed_writes_the_same_file_and_another_seed_another(tmp_path: Path) -> None:
    source = smollm2_path()
    first = write_tiny_llama(tmp_path / "a.gguf", source, seed=3)
    again = write_tiny_llama(tmp_path / "b.gguf", source, seed=3)
    other = write_tiny_llama(tmp_path / "c.gguf", source, seed=4)
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert first.stat().st_size == other.stat().st_size
