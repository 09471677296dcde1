"""Threads per answer: every core while the processor is free, fewer while others work.

The choice is checked on a meter and clock the test moves, and on this computer with real busy
processes beside it; the engine is checked on the real model (what llama.cpp itself was told).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from assistant.engine import threads
from assistant.engine.base import ChatMessage, GenerationSettings, GenerationStats
from assistant.engine.local import LocalEngine
from assistant.engine.threads import ThreadChooser
from assistant.models.hardware import GIB, Hardware

TWO_CORES = Hardware(
    total_ram=16 * GIB, available_ram=12 * GIB, physical_cores=2, logical_cores=2,
    gpu_offload=False,
)  # fmt: skip
SHORT = GenerationSettings(temperature=0.0, max_tokens=4, repeat_penalty=1.0)
QUESTION = [ChatMessage("user", "What is the capital of France?")]


class Machine:
    """CPU seconds of every process and of this one, and a clock, all moved by the test."""

    def __init__(self) -> None:
        self.now = 100.0
        self.everyone = 0.0
        self.own = 0.0

    def meter(self) -> tuple[float, float]:
        return self.everyone, self.own

    def clock(self) -> float:
        return self.now

    def run(self, seconds: float, *, others: float = 0.0, own: float = 0.0) -> None:
        """``seconds`` pass while other programs keep ``others`` cores busy, this one ``own``."""
        self.now += seconds
        self.everyone += (others + own) * seconds
        self.own += own * seconds


def chooser(cores: int, machine: Machine) -> ThreadChooser:
    return ThreadChooser(cores, meter=machine.meter, clock=machine.clock)


def test_a_free_processor_gets_every_core() -> None:
    machine = Machine()
    pick = chooser(4, machine)
    machine.run(5.0, others=0.3)  # background chatter
    assert pick.pick() == 4
    assert pick.others_busy == pytest.approx(0.3)


def test_cores_other_programs_keep_busy_are_left_to_them() -> None:
    machine = Machine()
    pick = chooser(8, machine)
    machine.run(2.0, others=2.6)
    assert pick.pick() == 5
    machine.run(0.5, own=8.0)  # the answer itself: never measured
    pick.rest()
    machine.run(2.0, others=0.0)
    assert pick.pick() == 8


def test_at_least_one_thread_however_busy() -> None:
    machine = Machine()
    pick = chooser(2, machine)
    machine.run(1.0, others=2.0)  # two busy programs on two cores
    assert pick.pick() == 1
    machine.run(1.0, others=7.0)
    assert pick.pick() == 1


def test_this_process_own_work_is_not_someone_elses() -> None:
    machine = Machine()
    pick = chooser(2, machine)
    machine.run(3.0, own=1.8, others=0.1)  # the window, a download, indexing the history
    assert pick.pick() == 2
    assert pick.others_busy == pytest.approx(0.1)


def test_a_pause_too_short_to_tell_keeps_the_last_choice() -> None:
    machine = Machine()
    pick = chooser(4, machine)
    machine.run(1.0, others=3.0)
    assert pick.pick() == 1
    pick.rest()
    machine.run(threads.MIN_WINDOW_S / 2, others=0.0)  # the next question right away
    assert pick.pick() == 1
    machine.run(threads.MIN_WINDOW_S, others=0.0)  # measured from the rest, long enough now
    assert pick.pick() == 4


def test_a_pause_of_exactly_the_minimum_is_measured() -> None:
    machine = Machine()
    pick = chooser(4, machine)
    assert pick.others_busy == 0.0  # nothing measured yet
    machine.run(threads.MIN_WINDOW_S, others=1.0)
    assert pick.pick() == 3
    assert pick.others_busy == 1.0


def test_a_chooser_never_counts_fewer_than_one_core() -> None:
    machine = Machine()
    assert chooser(0, machine).pick() == 1


@pytest.fixture
def busy() -> Iterator[None]:
    """Two processes that keep two cores busy, as long as the test runs."""
    loops = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        yield
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def test_real_busy_processes_are_seen(busy: None) -> None:
    pick = ThreadChooser(2)
    time.sleep(1.5)
    assert pick.pick() == 1
    assert pick.others_busy > 1.0


def test_this_computers_meter_counts_its_own_work_apart() -> None:
    everyone, own = threads.cpu_seconds()
    spent = time.process_time()
    while time.process_time() - spent < 0.3:  # work in this process
        pass
    everyone_after, own_after = threads.cpu_seconds()
    assert own_after - own >= 0.25
    assert everyone_after - everyone >= 0.25  # everyone includes this process


def _engine(model_path: Path, n_threads: int | None) -> LocalEngine:
    return LocalEngine(model_path, n_ctx=512, n_threads=n_threads, hardware=TWO_CORES)


def test_the_engine_answers_with_the_cores_left_free(model_path: Path, busy: None) -> None:
    engine = _engine(model_path, None)
    heard: list[GenerationStats] = []
    engine.on_stats = heard.append
    try:
        assert engine.max_threads == engine.n_threads == 2
        time.sleep(1.5)  # the user types; two other programs run
        generation = engine.stream_chat(QUESTION, SHORT)
        generation.run()
        assert engine.n_threads == 1
        assert llama_cpp.llama_n_threads(engine._llama._ctx.ctx) == 1
        assert llama_cpp.llama_n_threads_batch(engine._llama._ctx.ctx) == 1
        # The speed predictions learn only from answers that had the processor.
        assert heard == []
    finally:
        engine.close()


def test_a_thread_count_the_user_chose_is_kept_under_load(model_path: Path, busy: None) -> None:
    engine = _engine(model_path, 2)
    heard: list[GenerationStats] = []
    engine.on_stats = heard.append
    try:
        time.sleep(1.5)
        engine.stream_chat(QUESTION, SHORT).run()
        assert engine.n_threads == 2
        assert llama_cpp.llama_n_threads(engine._llama._ctx.ctx) == 2
        assert len(heard) == 1
    finally:
        engine.close()
