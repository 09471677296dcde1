"""llama.cpp's own log, routed into Python logging (``assistant.engine.llama_log``), with the
real llama.cpp reading the tiny model's vocabulary (which logs a few dozen lines)."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from assistant.engine import llama_log

NULL = ctypes.c_void_p(0)


def _read_vocabulary(path: Path) -> None:
    llama = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    llama.close()


class _OtherPrinter:
    """A log callback of someone else's (llama-cpp-python sets its own at import)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.callback = llama_cpp.llama_log_callback(self._on_log)

    def _on_log(self, _level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
        self.lines.append(text.decode("utf-8", errors="replace"))

    def set(self) -> None:
        llama_cpp.llama_log_set(self.callback, NULL)


@pytest.fixture
def other_printer(monkeypatch: pytest.MonkeyPatch) -> Iterator[_OtherPrinter]:
    """llama.cpp printing through another callback, and ``install`` not yet called; ours is
    set back afterwards."""
    printer = _OtherPrinter()
    printer.set()
    monkeypatch.setattr(llama_log, "_installed", False)
    try:
        yield printer
    finally:
        llama_cpp.llama_log_set(llama_log._on_log, NULL)


def test_install_takes_llama_cpp_s_log(
    other_printer: _OtherPrinter, tiny_model_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    llama_log.install()
    with caplog.at_level(logging.DEBUG, logger="assistant.llama_cpp"), llama_log.capture() as lines:
        _read_vocabulary(tiny_model_path)
    assert other_printer.lines == []
    assert any("tiny-llama.gguf" in line for line in lines)
    logged = [r.getMessage() for r in caplog.records if r.name == "assistant.llama_cpp"]
    assert logged and all(message == message.rstrip() for message in logged)


def test_install_takes_it_once_per_process(
    other_printer: _OtherPrinter, tiny_model_path: Path
) -> None:
    llama_log.install()
    other_printer.set()  # someone takes the log back (llama-cpp-python, a test)
    llama_log.install()  # installed already: nothing to do
    with llama_log.capture() as lines:
        _read_vocabulary(tiny_model_path)
    assert lines == []
    assert any("tiny-llama.gguf" in line for line in other_printer.lines)
