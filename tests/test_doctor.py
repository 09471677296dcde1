"""`offline-assistant doctor`, and the app with an engine that cannot run.

A broken llama.cpp is made for real: an empty folder in ``LLAMA_CPP_LIB_PATH`` (the library is
missing), or a ``llama_cpp`` package first on ``PYTHONPATH`` that fails to load its library or
dies with SIGILL as a llama.cpp built for a newer processor does.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant import autostart, doctor
from assistant.engine import diagnose
from assistant.engine.cpu import CpuInfo
from assistant.engine.diagnose import EngineReport
from assistant.paths import app_paths
from tests.support import child_env

QUESTION = "What is the capital of France?"
BROKEN_LIBRARY = """\
raise OSError("libllama.so: cannot open shared object file: No such file or directory")
"""
ILLEGAL_INSTRUCTION = """\
import os, signal
os.kill(os.getpid(), signal.SIGILL)
"""
NEEDS_CUDA = """\
raise RuntimeError("Failed to load shared library 'libllama.so': libcuda.so.1: cannot open "
                   "shared object file: No such file or directory")
"""


@pytest.fixture(autouse=True)
def _forget_engine_checks() -> Iterator[None]:
    """A check that found a broken engine must not follow the next test around."""
    diagnose.forget()
    yield
    diagnose.forget()


def fake_engine(tmp_path: Path, body: str) -> dict[str, str]:
    """The environment of a child whose ``import llama_cpp`` runs ``body``."""
    package = tmp_path / "fake" / "llama_cpp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), env["PYTHONPATH"]])
    return env


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or child_env(),
        stdin=subprocess.DEVNULL,
    )


# --- the doctor on this computer ------------------------------------------------------------


def test_doctor_reports_processor_engine_folders_and_models() -> None:
    result = run("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["problems"] == []
    engine = report["engine"]
    assert engine["usable"] and engine["isolated"]
    assert Path(engine["library"]).is_file()
    assert "CPU" in engine["backends"]
    assert any(device["type"] == "CPU" for device in engine["devices"])
    assert engine["gpu_offload"] in (True, False)
    assert "CPU :" in engine["system_info"]
    if sys.platform.startswith("linux"):
        assert "sse2" in report["cpu"]["features"]
    assert report["folders"]["data"] == str(app_paths().data)
    assert report["folders"]["portable_home"] == os.environ["OFFLINE_ASSISTANT_HOME"]
    assert report["models"]["installed"] == 0
    assert report["app"]["version"]
    assert report["app"]["qt"] not in ("", "unknown")


def test_the_doctor_itself_loads_neither_numpy_nor_the_engine() -> None:
    """On an old processor either can die of an illegal instruction before the report is out:
    the engine's check runs in a child, and the doctor's own process leaves both alone (no
    model state saved here, as on a processor where the engine never ran)."""
    probe = (
        "import sys; from assistant.cli import main; rc = main(['doctor', '--json']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'llama_cpp'}), "
        "file=sys.stderr); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
        env=child_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["engine"]["usable"]
    assert result.stderr.strip().splitlines()[-1] == "[]"


def test_doctor_text_names_each_part() -> None:
    result = run("doctor")
    assert result.returncode == 0, result.stderr
    for heading in ("Processor", "llama.cpp engine", "Folders", "Models", "GPU offload"):
        assert heading in result.stdout
    assert "No problems found." in result.stdout


def test_doctor_counts_installed_models(model_path: Path) -> None:
    assert run("models", "import", str(model_path)).returncode == 0
    report = json.loads(run("doctor", "--json").stdout)
    assert report["models"]["installed"] == 1
    assert report["models"]["default"]


# --- the doctor with a broken engine ----------------------------------------------------------


def test_doctor_names_a_missing_library(tmp_path: Path) -> None:
    env = child_env(LLAMA_CPP_LIB_PATH=str(tmp_path))  # honoured by llama-cpp-python
    result = run("doctor", env=env)
    assert result.returncode == 1
    assert "library is missing" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr
    in_process = run("doctor", "--json", "--in-process", env=env)
    assert in_process.returncode == 1
    data = json.loads(in_process.stdout)
    assert not data["engine"]["usable"] and not data["engine"]["isolated"]
    assert "not found" in data["engine"]["error"]
    assert data["cpu"]["features"]  # the rest of the report is there


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (BROKEN_LIBRARY, "could not be loaded"),
        (ILLEGAL_INSTRUCTION, "illegal instruction"),
        (NEEDS_CUDA, "GPU driver"),
    ],
    ids=["oserror", "sigill", "cuda"],
)
def test_doctor_survives_a_broken_engine(tmp_path: Path, body: str, said: str) -> None:
    result = run("doctor", "--json", env=fake_engine(tmp_path, body))
    assert result.returncode == 1, result.stderr
    data = json.loads(result.stdout)
    assert not data["engine"]["usable"]
    assert any(said in problem for problem in data["problems"]), data["problems"]
    assert data["folders"]["data"] and data["models"]["installed"] == 0


def test_ask_with_a_broken_engine_says_what_is_missing(tmp_path: Path, model_path: Path) -> None:
    env = fake_engine(tmp_path, BROKEN_LIBRARY)
    result = run("ask", "--model-path", str(model_path), QUESTION, env=env)
    assert result.returncode == 1
    assert "could not be loaded" in result.stderr
    assert "something went wrong" not in result.stderr


def test_ask_refuses_an_engine_a_check_found_crashing(tmp_path: Path, model_path: Path) -> None:
    """After `doctor` saw the engine die, `ask` says so instead of dying the same way."""
    env = fake_engine(tmp_path, ILLEGAL_INSTRUCTION)
    assert run("doctor", env=env).returncode == 1
    result = run("ask", "--model-path", str(model_path), QUESTION, env=env)
    assert result.returncode == 1
    assert "illegal instruction" in result.stderr
    assert result.returncode != -4


@pytest.mark.skipif(not shutil.which("qemu-x86_64"), reason="qemu-user")
@pytest.mark.skipif(platform.machine() != "x86_64", reason="not an x86-64 CPU")
def test_doctor_on_an_emulated_old_cpu_reads_what_the_cpu_says() -> None:
    """qemu-user leaves /proc/cpuinfo describing the host and runs the check's child natively;
    the doctor still sees a 2008 Nehalem, and whether this engine was built for more."""
    result = subprocess.run(
        ["qemu-x86_64", "-cpu", "Nehalem", sys.executable, "-m", "assistant", "doctor", "--json"],
        capture_output=True, text=True, timeout=600, env=child_env(), stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.stdout, result.stderr
    report = json.loads(result.stdout)
    shown = report["cpu"]["shown"]
    assert shown["sse4_2"] and not shown["avx"] and not shown["avx2"]
    needed = diagnose.compiled_features(report["engine"]["system_info"])
    if "avx" in needed:  # this virtualenv's llama.cpp is compiled for this machine
        assert result.returncode == 1
        assert "AVX" in report["engine"]["problem"] and not report["engine"]["usable"]
    else:
        assert result.returncode == 0, report["problems"]


# --- the window with a broken engine ----------------------------------------------------------

WINDOW_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication
    from assistant.ui.app import run_app
    from assistant.ui.main_window import MainWindow

    app = QApplication(sys.argv)
    seen = {}

    def look():
        windows = [w for w in app.topLevelWidgets() if isinstance(w, MainWindow)]
        if not windows or not windows[0].banner.isVisible():
            return
        window = windows[0]
        if not window.services.engine_check.problem:
            return
        seen["visible"] = window.isVisible()
        seen["message"] = window.banner._message.text()
        seen["hint"] = window.banner._hint.text()
        seen["buttons"] = [b.text() for b in window.banner._fix_buttons]
        seen["status"] = window.status_label.text()
        window.banner._fix_buttons[0].click()
        seen["details"] = window.engine_details.text
        timer.stop()
        window.services.quit()

    timer = QTimer()
    timer.timeout.connect(look)
    timer.start(100)
    QTimer.singleShot(120_000, app.quit)
    code = run_app()
    print(json.dumps(seen))
    sys.exit(code)
    """
)


@pytest.mark.gui
def test_window_opens_and_says_the_engine_cannot_run(tmp_path: Path, model_path: Path) -> None:
    assert run("models", "import", str(model_path)).returncode == 0  # loaded at start
    env = fake_engine(tmp_path, ILLEGAL_INSTRUCTION)
    env["QT_QPA_PLATFORM"] = "offscreen"
    result = subprocess.run(
        [sys.executable, "-c", WINDOW_SCRIPT],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["visible"]
    assert "illegal instruction" in seen["message"]
    assert "newer processor" in seen["message"]
    assert "Your chats and settings are safe" in seen["hint"]
    assert seen["buttons"] == ["Show details…"]
    assert seen["status"] == "Local models cannot run on this computer."
    assert "Processor" in seen["details"] and "SIGILL" in seen["details"]
    assert "Something went wrong" not in seen["message"]


# --- the parts ----------------------------------------------------------------------------------


def test_engine_built_for_a_newer_processor_is_caught_before_it_runs() -> None:
    info = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | OPENMP = 1 |"
    assert diagnose.compiled_features(info) == ["sse3", "ssse3", "avx", "avx2", "f16c", "fma"]
    nehalem = CpuInfo("old", "x86_64", "test", frozenset({"sse3", "ssse3", "sse4_2"}))
    assert diagnose.missing_features(info, nehalem) == ["avx", "avx2", "f16c", "fma"]
    # Windows cannot ask for FMA or F16C: unknown is not missing.
    windows = CpuInfo(
        "w", "AMD64", "w", frozenset({"sse3", "ssse3", "avx"}), frozenset({"avx2", "avx"})
    )
    assert diagnose.missing_features(info, windows) == ["avx2"]


def test_this_engine_runs_on_this_processor() -> None:
    report = diagnose.inspect_engine()
    assert report.usable, report.problem
    assert report.missing_features == []


def test_check_runs_once_and_is_kept_on_disk(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    report = json.dumps(EngineReport(loaded=True, version="x").to_dict())
    command = [
        sys.executable,
        "-c",
        f"open({str(runs)!r}, 'a').write('.'); print({report!r})",
    ]
    cache = tmp_path / "cache"
    first = diagnose.check_engine(command, cache)
    assert first.usable and first.isolated and first.version == "x"
    assert diagnose.check_engine(command, cache).version == "x"
    assert runs.read_text() == "."  # this process remembers
    diagnose.forget()
    assert diagnose.known_report(cache) is not None  # so does the cache folder
    assert diagnose.check_engine(command, cache).version == "x"
    assert runs.read_text() == "."
    diagnose.check_engine(command, cache, fresh=True)
    assert runs.read_text() == ".."


def test_a_crashing_check_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    command = [sys.executable, "-c", ILLEGAL_INSTRUCTION]
    report = diagnose.check_engine(command, tmp_path)
    assert "illegal instruction" in report.problem
    assert "SIGILL" in report.error
    with pytest.raises(Exception, match="illegal instruction"):
        diagnose.require_engine(tmp_path)


def test_a_failing_section_does_not_stop_the_report() -> None:
    def broken(_context: doctor.DoctorContext) -> doctor.Section:
        raise OSError("unreadable")

    def saved_state(_context: doctor.DoctorContext) -> doctor.Section:
        return doctor.Section("state", "Saved state", [("Model", "none")], {"model": None})

    sections = doctor.collect(app_paths(), EngineReport(loaded=True), extra=[broken, saved_state])
    keys = [section.key for section in sections]
    assert keys[-2:] == ["broken", "state"] and keys[:5] == [
        "app",
        "cpu",
        "engine",
        "folders",
        "models",
    ]
    text = doctor.to_text(sections)
    assert "Could not check broken: OSError: unreadable" in text
    assert "Saved state" in text and "Model: none" in text
    assert doctor.to_json(sections)["state"] == {"model": None}


def test_a_bundle_starts_itself_at_login_without_python_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(autostart.shutil, "which", lambda _name: None)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert autostart.start_command() == [sys.executable, autostart.HIDDEN_FLAG]
