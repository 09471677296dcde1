"""Load progress from llama.cpp, and cancelling a load: with the real SmolLM2 model (slow),
with the tiny stand-in model (quick: ``open_llama`` itself), and the relay alone."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import llama_cpp
import pytest
from llama_cpp import Llama

from assistant.engine import load_progress
from assistant.engine.base import ChatMessage, GenerationSettings, load_percent
from assistant.engine.load_progress import _ProgressRelay, open_llama
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


# --- open_llama on the tiny model: what the caller is told ------------------------------------


def _open(path: Path, progress: Callable[[float], bool] | None, **options: Any) -> Llama:
    return open_llama(
        progress, model_path=str(path), n_ctx=256, n_threads=1, verbose=False, **options
    )


def _recording(answer: Callable[[float], bool]) -> tuple[list[float], Callable[[float], bool]]:
    reports: list[float] = []

    def progress(fraction: float) -> bool:
        reports.append(fraction)
        return answer(fraction)

    return reports, progress


def test_open_llama_reports_the_start_and_the_end(tiny_model_path: Path) -> None:
    reports, progress = _recording(lambda _f: True)
    llama = _open(tiny_model_path, progress)
    try:
        assert isinstance(llama, Llama)
        assert llama.tokenize(b"Hello", add_bos=False) == [19556]  # SmolLM2's "Hello"
    finally:
        llama.close()
    # llama.cpp's first report always passes; later ones are thinned to ~10 a second.
    assert reports[0] == 0.0 and reports[-1] == 1.0
    assert reports == sorted(set(reports))


def test_open_llama_without_progress_sets_no_callback(tiny_model_path: Path) -> None:
    llama = _open(tiny_model_path, None)
    try:
        assert isinstance(llama, Llama)
        assert not llama.model_params.progress_callback  # a null pointer: llama.cpp calls none
        assert llama.n_vocab() == 49152
    finally:
        llama.close()


@pytest.mark.parametrize(
    ("system_info", "safe"),
    [
        ("CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | REPACK = 1 | ", True),
        ("CPU : AVX512 = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | REPACK = 1 | ", False),
        ("CPU : NEON = 1 | ARM_FMA = 1 | REPACK = 1 | ", True),
    ],
)
def test_repacking_is_off_where_amx_kernels_are_built_in(system_info: str, safe: bool) -> None:
    assert load_progress.repacking_is_safe(system_info) is safe


@pytest.mark.parametrize("with_progress", [False, True])
def test_the_model_is_loaded_with_repacking_as_this_llama_cpp_allows(
    tiny_model_path: Path, with_progress: bool
) -> None:
    info = llama_cpp.llama_print_system_info().decode()
    llama = _open(tiny_model_path, (lambda _f: True) if with_progress else None)
    try:
        assert llama.model_params.use_extra_bufts is load_progress.repacking_is_safe(info)
        assert bool(llama.model_params.progress_callback) is with_progress
    finally:
        llama.close()


@pytest.mark.parametrize("stop_at", [0.0, 1.0])
def test_open_llama_cancelled_names_the_file(tiny_model_path: Path, stop_at: float) -> None:
    reports, progress = _recording(lambda fraction: fraction < stop_at)
    with pytest.raises(Cancelled) as caught:
        _open(tiny_model_path, progress)
    assert str(caught.value) == "Loading tiny-llama.gguf was cancelled."
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert reports[0] == 0.0 and reports[-1] == stop_at  # not asked again after "no"
    llama = _open(tiny_model_path, lambda _f: True)  # nothing stays half-loaded
    llama.close()


def test_open_llama_says_done_when_llama_cpp_reported_nothing(tiny_model_path: Path) -> None:
    # A vocabulary-only load reads no tensors: llama.cpp never calls the callback.
    reports, progress = _recording(lambda _f: True)
    llama = _open(tiny_model_path, progress, vocab_only=True)
    try:
        assert llama.n_vocab() == 49152
    finally:
        llama.close()
    assert reports == [1.0]


def test_open_llama_cancelled_at_the_end_it_announced_itself(tiny_model_path: Path) -> None:
    reports, progress = _recording(lambda _f: False)
    with pytest.raises(Cancelled) as caught:
        _open(tiny_model_path, progress, vocab_only=True)
    assert str(caught.value) == "Loading tiny-llama.gguf was cancelled."
    assert reports == [1.0]


def test_open_llama_raises_ctrl_c_from_the_callback_after_the_load(tiny_model_path: Path) -> None:
    interrupt = KeyboardInterrupt()
    reports: list[float] = []

    def interrupted(fraction: float) -> bool:
        reports.append(fraction)
        raise interrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        _open(tiny_model_path, interrupted)
    assert caught.value is interrupt
    assert reports == [0.0]


def test_open_llama_lets_a_failed_load_through(tiny_model_path: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.gguf"
    reports, progress = _recording(lambda _f: True)
    with pytest.raises(ValueError, match="Model path does not exist"):
        _open(missing, progress)
    assert reports == []


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


def test_a_fresh_relay_has_neither_cancelled_nor_been_interrupted() -> None:
    relay = _ProgressRelay(lambda _f: True)
    assert relay.cancelled is False
    assert relay.interrupt is None
    assert not relay.finished


class _Clock:
    """``time`` as load_progress sees it, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_the_relay_hands_on_one_report_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(load_progress, "time", SimpleNamespace(monotonic=clock.monotonic))
    seen, progress = _recording(lambda _f: True)
    relay = _ProgressRelay(progress, interval=0.5)
    steps = [(0.0, 0.1), (0.25, 0.2), (0.49, 0.3), (0.5, 0.4), (0.75, 0.5), (1.0, 0.6), (1.1, 1.0)]
    for now, fraction in steps:
        clock.now = now
        assert relay._on_progress(fraction, NULL) is True  # thinned or not: go on loading
    # The first report at once, even at the clock's origin; then one each full interval; and
    # the end whenever it comes.
    assert seen == [0.1, 0.4, 0.6, 1.0]


def test_a_failing_callable_is_logged_once_and_not_called_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failure = RuntimeError("the progress bar is gone")
    calls: list[float] = []

    def broken(fraction: float) -> bool:
        calls.append(fraction)
        raise failure

    relay = _ProgressRelay(broken, interval=0.0)
    with caplog.at_level(logging.ERROR, logger="assistant.engine.load_progress"):
        assert [relay._on_progress(f, NULL) for f in (0.2, 0.5, 1.0)] == [True, True, True]
    assert calls == [0.2]
    assert relay.finished and not relay.cancelled
    [record] = caplog.records
    assert (record.name, record.levelno) == ("assistant.engine.load_progress", logging.ERROR)
    assert record.getMessage() == "The load progress callback failed"
    assert record.exc_info is not None and record.exc_info[1] is failure


def test_ctrl_c_in_the_callable_stops_the_load_and_is_kept() -> None:
    interrupt = KeyboardInterrupt()
    calls: list[float] = []

    def interrupted(fraction: float) -> bool:
        calls.append(fraction)
        raise interrupt

    relay = _ProgressRelay(interrupted, interval=0.0)
    assert relay._on_progress(0.2, NULL) is False
    assert relay.interrupt is interrupt
    assert relay.cancelled is True
    assert relay._on_progress(0.5, NULL) is False
    assert calls == [0.2]


def test_a_detached_relay_reports_to_nobody() -> None:
    relay = _ProgressRelay(lambda _f: False, interval=0.0)
    relay.detach()
    assert relay.report(0.5) is True
    assert relay._on_progress(1.0, NULL) is True
    assert not relay.cancelled


def test_not_even_a_failing_log_lets_an_exception_out(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_record: logging.LogRecord) -> bool:
        raise OSError("the log disk is gone")

    def broken(_fraction: float) -> bool:
        raise RuntimeError("the progress bar is gone")

    monkeypatch.setattr(load_progress.log, "filters", [refuse])
    relay = _ProgressRelay(broken, interval=0.0)
    assert relay._on_progress(0.5, NULL) is True
    assert relay._on_progress(1.0, NULL) is True
    assert relay.finished and not relay.cancelled


def test_a_build_with_amx_kernels_loads_without_repacking_and_says_so(
    tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    amx = b"CPU : AVX512 = 1 | AMX_INT8 = 1 | REPACK = 1 | "
    monkeypatch.setattr(llama_cpp, "llama_print_system_info", lambda: amx)
    load_progress._repack.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger=load_progress.__name__):
            for progress in (None, lambda _f: True):
                llama = _open(tiny_model_path, progress)
                try:
                    assert llama.model_params.use_extra_bufts is False
                finally:
                    llama.close()
        said = [r.getMessage() for r in caplog.records if r.name == load_progress.__name__]
        assert said == ["llama.cpp's AMX kernels are off: they crash on some processors"]
    finally:
        load_progress._repack.cache_clear()
