"""What llama.cpp really received from the engine, with the real SmolLM2-135M model.

The visible answer can look right while the engine sends the model the wrong thing: a prompt
without its system message, greedy sampling whatever the temperature, the wrong thread count,
a generation that runs on past its stop string with the extra text merely hidden. These tests
read the other side: the tokens held in llama.cpp's context, its context and model parameters,
the number of tokens it generated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import llama_cpp
import pytest

from assistant.engine.base import ChatMessage, Generation, GenerationSettings
from assistant.engine.local import LocalEngine
from assistant.errors import ContextOverflowError
from assistant.models.hardware import Hardware, detect_hardware
from assistant.paths import app_paths
from assistant.settings import Settings

GREEDY = GenerationSettings(temperature=0.0, max_tokens=32, repeat_penalty=1.0)
# A system prompt no default template would add on its own (SmolLM2's template adds one when
# a chat has none, so "a system prompt is there" alone would prove nothing).
SYSTEM = ChatMessage("system", "You are Zorblax, a helpful pirate who answers briefly.")
FRANCE = ChatMessage("user", "What is the capital of France?")
CTX = 512


@pytest.fixture(scope="module")
def engine(model_path: Path) -> Iterator[LocalEngine]:
    # One thread: on a busy shared machine, two llama.cpp threads wait for each other at every
    # token and decoding gets many times slower (33 s against 2 s for the same test here).
    loaded = LocalEngine(model_path, n_ctx=CTX, n_threads=1)
    yield loaded
    loaded.close()


def evaluated_prompt(engine: LocalEngine, generation: Generation) -> str:
    """The prompt text the model read for ``generation``: the first ``prompt_tokens`` tokens
    of llama.cpp's context, turned back into text."""
    assert generation.stats is not None
    held = list(engine._llama.input_ids[: generation.stats.prompt_tokens])
    return engine._llama.detokenize(held, special=True).decode("utf-8", errors="replace")


def history(turns: int) -> list[ChatMessage]:
    messages = [SYSTEM]
    for i in range(turns):
        messages.append(ChatMessage("user", f"Question {i}: " + "tell me about rivers " * 8))
        messages.append(ChatMessage("assistant", "Rivers flow to the sea. " * 8))
    messages.append(FRANCE)
    return messages


# --- the prompt -----------------------------------------------------------------------------


def test_drop_oldest_keeps_the_system_prompt_in_what_the_model_reads(engine: LocalEngine) -> None:
    messages = history(12)
    generation = engine.stream_chat(messages, GREEDY)
    generation.run()
    assert generation.dropped, "the history is longer than the context: turns must go"

    read = evaluated_prompt(engine, generation)
    assert read.count(SYSTEM.content) == 1
    assert read.index(SYSTEM.content) < read.index("Question")  # still first
    assert "Question 0:" not in read  # the oldest turn went
    kept = [m for m in messages[1:] if m not in generation.dropped]
    assert read.count("Question ") == sum(m.role == "user" for m in kept) - 1
    assert read.rstrip().endswith("assistant") and FRANCE.content in read


def test_room_for_the_answer_is_kept_free(engine: LocalEngine) -> None:
    """A prompt that fits the context only if the answer gets no room is refused (or cut)."""
    settings = replace(GREEDY, max_tokens=100)
    reserve = engine.answer_reserve(settings)
    assert reserve == 100
    messages = [SYSTEM, FRANCE]
    # Grow the chat until it fits the bare context but not the context minus the answer's room.
    while len(engine._tokenize_chat(messages)[0]) <= CTX - reserve:
        messages[-1:] = [ChatMessage("user", "Tell me about rivers."), *messages[-1:]]
        messages[-1:] = [ChatMessage("assistant", "Rivers flow to the sea."), *messages[-1:]]
    length = len(engine._tokenize_chat(messages)[0])
    assert CTX - reserve < length < CTX

    with pytest.raises(ContextOverflowError):
        engine.stream_chat(messages, replace(settings, overflow="refuse"))
    tokens, dropped, _stops = engine.fit_prompt(messages, settings)
    assert dropped
    assert len(tokens) + settings.max_tokens <= CTX


# --- sampling ---------------------------------------------------------------------------------


def test_temperature_above_zero_samples_and_zero_is_greedy(engine: LocalEngine) -> None:
    messages = [SYSTEM, ChatMessage("user", "Tell me a short story.")]
    warm = {
        engine.stream_chat(
            messages, GenerationSettings(temperature=1.2, seed=s, max_tokens=12)
        ).run()
        for s in range(1, 6)
    }
    assert len(warm) >= 2, "five seeds at temperature 1.2 all gave the same text"
    cold = {
        engine.stream_chat(
            messages, GenerationSettings(temperature=0.0, seed=s, max_tokens=12)
        ).run()
        for s in range(1, 4)
    }
    assert len(cold) == 1


def test_generation_stops_at_a_stop_string(engine: LocalEngine) -> None:
    """The model stops generating at a stop string; hiding the rest of the text is not enough."""
    messages = [SYSTEM, ChatMessage("user", "Describe Paris, the capital of France, in detail.")]
    settings = replace(GREEDY, max_tokens=80)
    free = engine.stream_chat(messages, settings)
    full_text = free.run()
    assert free.stats is not None
    total = free.stats.completion_tokens
    # A word from the first third of the free answer becomes the stop string.
    words = [w for w in full_text.split() if w.isalpha() and len(w) > 3]
    stop = next(w for w in words if 0 < full_text.index(w) < len(full_text) // 3)
    before = full_text[: full_text.index(stop)]

    stopped = engine.stream_chat(messages, replace(settings, stop=(stop,)))
    text = stopped.run()

    assert text == before
    assert stopped.stats is not None and stopped.stats.stop_reason == "stop"
    # The stop string ends within a token or two of where it starts.
    assert stopped.stats.completion_tokens <= engine.count_tokens(before + stop) + 2
    assert stopped.stats.completion_tokens < total - 5


# --- what llama.cpp was given at load time ---------------------------------------------------


def _settings(**values: object) -> Settings:
    settings = Settings.load(app_paths().ensure().settings_file)
    settings.set("context_size", CTX)
    for key, value in values.items():
        settings.set(key, value)
    return settings


def test_threads_setting_reaches_llama_cpp(model_path: Path) -> None:
    cores = detect_hardware().physical_cores
    wanted = cores + 1  # never what the engine would pick on its own
    engine = LocalEngine.from_settings(model_path, _settings(threads=wanted))
    try:
        assert llama_cpp.llama_n_threads(engine._llama._ctx.ctx) == wanted
        assert llama_cpp.llama_n_threads_batch(engine._llama._ctx.ctx) == wanted
    finally:
        engine.close()
    default = LocalEngine.from_settings(model_path, _settings(threads=0))
    try:
        assert llama_cpp.llama_n_threads(default._llama._ctx.ctx) == cores
    finally:
        default.close()


def _offloading_hardware() -> Hardware:
    """This machine, as if its llama.cpp build could offload to a GPU. A CPU-only build takes
    the layer count and ignores it, which is all these tests need: what was asked of it."""
    return replace(detect_hardware(), gpu_offload=True)


@pytest.mark.parametrize(
    ("choice", "offload", "expected"),
    [
        ("auto", True, "all"),
        ("7", True, 7),
        ("off", True, 0),
        ("auto", False, 0),  # a build that cannot offload is never asked to
        ("7", False, 0),
    ],
)
def test_gpu_layers_setting_reaches_llama_cpp(
    model_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    choice: str,
    offload: bool,
    expected: int | str,
) -> None:
    hardware = _offloading_hardware() if offload else replace(detect_hardware(), gpu_offload=False)
    monkeypatch.setattr("assistant.engine.local.detect_hardware", lambda: hardware)
    engine = LocalEngine.from_settings(model_path, _settings(gpu_layers=choice))
    try:
        layers = engine._llama.model_params.n_gpu_layers
        if expected == "all":
            assert layers >= engine.info.layers  # every layer: llama.cpp clamps the count
        else:
            assert layers == expected
    finally:
        engine.close()
