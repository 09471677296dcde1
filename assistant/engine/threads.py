"""How many threads an answer uses: every physical core while the processor is free, fewer
while other programs keep cores busy.

llama.cpp's threads meet after every step of every layer, and the early ones wait for the last.
A thread whose core another program holds arrives late at every meeting and holds the others
up. So before each answer the engine looks at how busy other programs kept the processor while
it sat idle (since its last answer ended) and leaves them the cores they used.

Measured on two cores (``benchmarks/bench_threads.py``): no cost on a quiet processor, about
12 % faster beside one busy program, within noise beside one per core or another llama.cpp
answering. In a busier mix seen on this machine (two busy loops, background test runs and
another engine at once) one thread answered in 10 s what two took 17-95 s for.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil

MIN_WINDOW_S = 0.25
"""A shorter pause between answers says too little: the last choice stands."""

Meter = Callable[[], tuple[float, float]]
"""CPU seconds used so far by every process on the computer, and by this one."""


def cpu_seconds() -> tuple[float, float]:
    """CPU time used so far by every process (summed over all logical CPUs) and by this one."""
    times = psutil.cpu_times()
    waiting = times.idle + getattr(times, "iowait", 0.0)
    # Linux counts guest time twice (also inside user and nice time): once is enough.
    counted_twice = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    own = _OWN.cpu_times()
    return sum(times) - waiting - counted_twice, own.user + own.system


_OWN = psutil.Process()


class ThreadChooser:
    """The thread count for the next answer, from how busy other programs kept the processor
    while this engine was idle. Call :meth:`pick` as an answer starts and :meth:`rest` as it
    ends (the time in between is this engine's own work, never measured)."""

    def __init__(
        self, cores: int, meter: Meter = cpu_seconds, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cores = max(1, cores)
        self.threads = self.cores
        self.others_busy = 0.0
        """Cores' worth of work other programs did in the last window measured."""
        self._meter = meter
        self._clock = clock
        self._since = self._look()

    def _look(self) -> tuple[float, float, float]:
        everyone, own = self._meter()
        return self._clock(), everyone, own

    def rest(self) -> None:
        """An answer ended: measure other programs from now on."""
        self._since = self._look()

    def pick(self) -> int:
        """Threads for the answer starting now: the cores other programs left free (at least
        one). After a pause shorter than :data:`MIN_WINDOW_S`, the last choice."""
        now, everyone, own = self._look()
        then, everyone_then, own_then = self._since
        wall = now - then
        if wall >= MIN_WINDOW_S:
            others = (everyone - everyone_then) - (own - own_then)
            self.others_busy = max(0.0, others / wall)
            self.threads = max(1, self.cores - round(self.others_busy))
        return self.threads
