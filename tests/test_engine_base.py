"""The provider interface's own parts (``assistant.engine.base``): an answer in progress, its
statistics, the cancel flag and how a model's recommended sampling is merged in."""

from __future__ import annotations

from collections.abc import Iterator

from assistant.engine.base import (
    CancelToken,
    Generation,
    GenerationSettings,
    GenerationStats,
    SamplingPreset,
)


def test_a_cancel_token_starts_clear_and_stays_set() -> None:
    token = CancelToken()
    assert token.cancelled is False
    token.cancel()
    token.cancel()
    assert token.cancelled is True


def test_generation_run_passes_each_chunk_on_and_returns_the_text() -> None:
    received: list[str] = []
    generation = Generation(iter(["Hel", "lo", "!"]))
    assert generation.run(received.append) == "Hello!"
    assert received == ["Hel", "lo", "!"]
    assert generation.text == "Hello!"


def test_closing_a_generation_finishes_its_producer_at_once() -> None:
    events: list[str] = []

    def produce() -> Iterator[str]:
        try:
            yield "one"
            yield "two"
        finally:
            events.append("finished")

    generation = Generation(produce())
    assert next(iter(generation)) == "one"
    generation.close()
    assert events == ["finished"]
    assert generation.text == "one"


def test_closing_a_generation_over_a_plain_iterator_does_nothing() -> None:
    generation = Generation(iter(["a", "b"]))  # a list iterator has no close()
    generation.close()
    assert generation.run() == "ab"


def test_stats_as_a_dict() -> None:
    stats = GenerationStats(model="tiny", provider="local", prompt_tokens=12, completion_tokens=3)
    assert stats.to_dict() == {
        "model": "tiny",
        "provider": "local",
        "prompt_tokens": 12,
        "evaluated_prompt_tokens": 0,
        "completion_tokens": 3,
        "ttft_s": None,
        "total_s": 0.0,
        "tokens_per_s": None,
        "stop_reason": "stop",
        "dropped_messages": 0,
    }


PRESET = SamplingPreset(temperature=0.2, top_k=20, source="the model file")


def test_settings_left_to_the_model_take_its_recommendation() -> None:
    settings = GenerationSettings(follow_model=frozenset({"temperature", "min_p"}))
    merged = settings.merged(PRESET)
    assert merged == GenerationSettings(
        temperature=0.2, follow_model=frozenset({"temperature", "min_p"})
    )


def test_without_a_recommendation_to_take_the_settings_are_kept_as_they_are() -> None:
    following = GenerationSettings(follow_model=frozenset({"temperature"}))
    assert following.merged(None) is following  # a provider without a recommendation
    assert following.merged(SamplingPreset()) is following  # one that recommends nothing
    assert following.merged(SamplingPreset(top_k=5)) is following  # nothing left to it
    literal = GenerationSettings()
    assert literal.merged(PRESET) is literal
