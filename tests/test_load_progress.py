"""Load progress from llama.cpp, and cancelling a load, with the real SmolLM2 model."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest

from assistant.engine.base import ChatMessage, GenerationSettings, load_percent
from assistant.engine.load_progress import _ProgressRelay
from assistant.engine.local import LocalEngine
from assistant.errors import Cancelled
from assistant.providers import load_gguf, reporting_load_progress
from assistant.settings import Settings

GREEDY = GenerationSettings(temperature=0.0, max_tokens=8, repeat_penalty=1.0)
HELLO = [ChatMessage("user", "Say hello.")]
NULL = ctypes.c_void_p(0)


def _load(path: Path, progress: object = None) -> LocalEngine:
    return LocalEngine(path, n_ctx=512, n_threads=1, progress=progress)  # type: ignore[arg-type]


def test_progress_increases_to_one_hundred_percent(model_path: Path) -> None:
    reports: list[float] = []

    def progress(fraction: float) -> bool:
        reports.append(fraction)
        return True

    engine = _load(model_path, progress)
    try:
        assert reports, "llama.cpp reported no progress"
        assert reports[-1] == 1.0
        assert reports.count(1.0) == 1
        assert all(0.0 <= f <= 1.0 for f in reports)
        assert reports == sorted(reports) and len(set(reports)) == len(reports)
        assert engine.stream_chat(HELLO, GREEDY).run()  # the model loaded whole
    finally:
        engine.close()


def test_cancelling_after_the_first_report_stops_the_load(model_path: Path) -> None:
    reports: list[float] = []

    def cancel_at_once(fraction: float) -> bool:
        reports.append(fraction)
        return False

    with pytest.raises(Cancelled, match="cancelled"):
        _load(model_path, cancel_at_once)
    assert len(reports) == 1  # llama.cpp stopped at the first "no"

    # Nothing stays half-loaded: the next load works and answers.
    engine = _load(model_path, lambda _fraction: True)
    try:
        assert engine.stream_chat(HELLO, GREEDY).run()
    finally:
        engine.close()


def test_cancelling_at_one_hundred_percent_still_cancels(model_path: Path) -> None:
    def cancel_when_done(fraction: float) -> bool:
        return fraction < 1.0

    with pytest.raises(Cancelled):
        _load(model_path, cancel_when_done)


def test_a_failing_progress_display_does_not_stop_the_load(
    model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[float] = []

    def broken(fraction: float) -> bool:
        calls.append(fraction)
        raise RuntimeError("the progress bar is gone")

    engine = _load(model_path, broken)
    try:
        assert engine.stream_chat(HELLO, GREEDY).run()
    finally:
        engine.close()
    assert len(calls) == 1  # not called again once it failed
    assert "load progress callback failed" in caplog.text


def test_ctrl_c_in_the_callback_stops_the_load_and_is_raised_after(model_path: Path) -> None:
    def interrupted(_fraction: float) -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _load(model_path, interrupted)
    engine = _load(model_path)  # and the next load works
    engine.close()


def _settings(tmp_path: Path) -> Settings:
    return Settings(tmp_path / "settings.json", {"threads": 1})


def test_progress_reaches_the_engine_through_the_provider_seam(
    model_path: Path, tmp_path: Path
) -> None:
    reports: list[float] = []

    def progress(fraction: float) -> bool:
        reports.append(fraction)
        return True

    settings = _settings(tmp_path)
    with reporting_load_progress(progress):
        engine = load_gguf(model_path, settings, "smollm2")
    engine.close()
    assert reports[-1] == 1.0
    outside = load_gguf(model_path, settings, "smollm2")  # the block ended: nobody is told
    outside.close()
    assert reports.count(1.0) == 1


def test_cancelled_through_the_provider_seam(model_path: Path, tmp_path: Path) -> None:
    with reporting_load_progress(lambda _f: False), pytest.raises(Cancelled):
        load_gguf(model_path, _settings(tmp_path), "smollm2")


# --- the relay alone: what llama.cpp's callback hands on ---------------------------------------


def test_the_relay_hands_on_increasing_fractions_only() -> None:
    seen: list[float] = []
    relay = _ProgressRelay(lambda f: seen.append(f) is None, interval=0.0)
    for fraction in (0.0, 0.3, 0.2, 0.3, 0.9, 1.0, 1.0, 1.5):
        assert relay._on_progress(fraction, NULL) is True
    assert seen == [0.0, 0.3, 0.9, 1.0]
    assert relay.finished


def test_the_relay_thins_reports_but_always_hands_on_the_end() -> None:
    seen: list[float] = []
    relay = _ProgressRelay(lambda f: seen.append(f) is None, interval=3600.0)
    for step in range(101):
        relay._on_progress(step / 100, NULL)
    assert seen == [0.0, 1.0]


def test_the_relay_says_stop_for_good_once_cancelled() -> None:
    answers = iter([True, False])
    relay = _ProgressRelay(lambda _f: next(answers), interval=0.0)
    assert relay._on_progress(0.1, NULL) is True
    assert relay._on_progress(0.2, NULL) is False
    assert relay._on_progress(0.3, NULL) is False  # never asks again
    assert relay.cancelled


def test_the_relay_lets_no_exception_out() -> None:
    def broken(_fraction: float) -> bool:
        raise ValueError("boom")

    relay = _ProgressRelay(broken, interval=0.0)
    assert relay._on_progress(0.5, NULL) is True
    assert relay._on_progress(0.7, NULL) is True
    assert not relay.cancelled


def test_the_relay_forgets_its_callable_after_the_load() -> None:
    seen: list[float] = []
    relay = _ProgressRelay(lambda f: seen.append(f) is None, interval=0.0)
    relay.detach()
    assert relay._on_progress(0.5, NULL) is True
    assert seen == []


def test_a_load_shows_100_percent_only_when_complete() -> None:
    assert [load_percent(f) for f in (0.0, 0.004, 0.421, 0.996, 1.0)] == [0, 0, 42, 99, 100]
