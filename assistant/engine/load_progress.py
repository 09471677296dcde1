"""How far llama.cpp is in loading a model, and a way to stop the load.

llama.cpp calls a progress callback once per tensor while it reads a model (a few hundred times,
sometimes within a few milliseconds) and aborts the load when the callback returns false.
llama-cpp-python builds the model parameters inside ``Llama.__init__`` and offers no argument
for the callback, so ``open_llama`` uses a subclass that sets it on the parameters as the
constructor creates them.

The callback runs inside a C call: an exception raised there would be printed as "Exception
ignored" and lost, and ctypes would return an arbitrary value to llama.cpp. ``_ProgressRelay``
therefore never lets one out, keeps the C function pointer alive for the whole load, and does
little more than compare two numbers on the calls it does not pass on.

The same subclass turns llama.cpp's weight repacking off where its AMX kernels would run (see
``repacking_is_safe``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp import Llama

from assistant.engine.base import LoadProgress
from assistant.errors import Cancelled

log = logging.getLogger(__name__)

REPORT_INTERVAL_S = 0.1
"""The front end hears of a load's progress at most this often (llama.cpp reports per tensor)."""


class _ProgressRelay:
    """Passes llama.cpp's reports to a Python callable: thinned, increasing, never raising.

    ``cancelled`` is set once the callable asked to stop (or the callback caught a
    ``KeyboardInterrupt``, kept in ``interrupt`` to be raised again after the load).
    """

    def __init__(self, progress: LoadProgress, interval: float = REPORT_INTERVAL_S) -> None:
        self._progress: LoadProgress | None = progress
        self._interval = interval
        self._last_time = -interval
        self._last_fraction = -1.0
        self.cancelled = False
        self.interrupt: BaseException | None = None
        self._failed = False
        # Held here (and by the model parameters) until the load returns: llama.cpp keeps
        # only the raw pointer.
        self.c_callback = llama_cpp.llama_progress_callback(self._on_progress)

    def _on_progress(self, fraction: float, _user_data: ctypes.c_void_p) -> bool:
        try:
            if self.cancelled:
                return False
            if fraction < 1.0 and time.monotonic() - self._last_time < self._interval:
                return True
            return self.report(fraction)
        except BaseException as exc:  # nothing may escape into llama.cpp
            return self._on_error(exc)

    def report(self, fraction: float) -> bool:
        """Hand ``fraction`` on (unless it is no further than the last one); whether to go on."""
        fraction = min(max(float(fraction), 0.0), 1.0)
        progress = self._progress
        if progress is None or fraction <= self._last_fraction:
            return not self.cancelled
        self._last_fraction = fraction
        self._last_time = time.monotonic()
        if self._failed:
            return True
        if progress(fraction) is False:
            self.cancelled = True
        return not self.cancelled

    @property
    def finished(self) -> bool:
        """Whether 1.0 was handed on."""
        return self._last_fraction >= 1.0

    def _on_error(self, exc: BaseException) -> bool:
        with contextlib.suppress(BaseException):
            if isinstance(exc, KeyboardInterrupt):
                # Ctrl+C while the callback ran (a terminal without the CLI's own handler):
                # stop the load cleanly and raise it again once llama.cpp has returned.
                self.interrupt = exc
                self.cancelled = True
                return False
            if not self._failed:
                # A broken progress display must not stop the model from loading.
                self._failed = True
                log.error("The load progress callback failed", exc_info=exc)
        return not self.cancelled

    def detach(self) -> None:
        """Drop the front end's callable: the loaded model keeps the C pointer, not it."""
        self._progress = None


def repacking_is_safe(system_info: str) -> bool:
    """Whether llama.cpp may repack the weights for its faster CPU kernels, judged from its
    system info (``llama_print_system_info``).

    Not where its AMX kernels are built in ("AMX_INT8 = 1": a build for Intel Xeon processors
    from Sapphire Rapids on, which the installers' per-processor variants include): repacking
    then puts Q4_K and Q4_0 weights in AMX buffers, and the matrix product on those crashes the
    process on some of these processors (llama.cpp issues 20824 and 26954, open in the
    llama.cpp of llama-cpp-python 0.3.36). Without repacking the same kernels run on AVX-512,
    somewhat slower at reading a prompt.
    """
    return "AMX_INT8 = 1" not in system_info


@functools.cache
def _repack() -> bool:
    info = llama_cpp.llama_print_system_info().decode("utf-8", errors="replace")
    safe = repacking_is_safe(info)
    if not safe:
        log.info("llama.cpp's AMX kernels are off: they crash on some processors")
    return safe


class _ReportingLlama(Llama):
    """``Llama`` whose model parameters carry a progress callback (when there is a relay) and
    say whether weights may be repacked.

    ``Llama.__init__`` assigns ``self.model_params`` from ``llama_model_default_params()`` and
    then fills the same structure in; this property catches that assignment.
    """

    def __init__(self, relay: _ProgressRelay | None, **options: Any) -> None:
        self._relay = relay
        super().__init__(**options)

    @property
    def model_params(self) -> llama_cpp.llama_model_params:
        return self.__dict__["model_params"]

    @model_params.setter
    def model_params(self, params: llama_cpp.llama_model_params) -> None:
        if self._relay is not None:
            params.progress_callback = self._relay.c_callback
        # A field of recent llama-cpp-python releases (0.3.36 has it); older ones lack it.
        if not _repack() and any(name == "use_extra_bufts" for name, *_ in params._fields_):
            params.use_extra_bufts = False
        self.__dict__["model_params"] = params


def open_llama(progress: LoadProgress | None, **options: Any) -> Llama:
    """``Llama(**options)``, telling ``progress`` how far the load is (see ``LoadProgress``).

    Raises ``Cancelled`` when ``progress`` returned ``False`` (llama.cpp has then freed what it
    had read: nothing stays loaded), and ``KeyboardInterrupt`` when Ctrl+C stopped the load.
    """
    if progress is None:
        return _ReportingLlama(None, **options)
    relay = _ProgressRelay(progress)
    model_name = Path(str(options.get("model_path", ""))).name or "the model"
    try:
        try:
            llama = _ReportingLlama(relay, **options)
        except BaseException:
            _raise_if_stopped(relay, model_name)
            raise
        if not relay.finished and not relay.cancelled:
            relay.report(1.0)  # this llama-cpp-python did not take the callback: say it is done
        if relay.cancelled:
            llama.close()
            _raise_if_stopped(relay, model_name)
        return llama
    finally:
        relay.detach()


def _raise_if_stopped(relay: _ProgressRelay, model_name: str) -> None:
    if relay.interrupt is not None:
        raise relay.interrupt from None
    if relay.cancelled:
        raise Cancelled(f"Loading {model_name} was cancelled.") from None
