"""Can llama.cpp run on this computer, and what does it see?

Three ways of asking, from the safest:

- :func:`check_engine` loads llama.cpp in a *child process* (the program itself, run with
  ``doctor --engine-probe``) and reads its report. A llama.cpp compiled for a newer processor
  dies with "illegal instruction" as soon as it is loaded, and a broken GPU driver can crash
  the same way; in a child that is a sentence, not the end of the app. The answer is kept per
  process and on disk, keyed by the engine's files and this CPU, so it costs one start of the
  program once per install.
- :func:`inspect_engine` loads it in this process, catching every exception (the child's job).
- :func:`require_engine` is what loading a model calls first: it raises
  ``EngineUnavailableError`` when a check found the engine unusable, or when importing it fails,
  or when it was built for instructions this CPU lacks.

The processor's side (:func:`cpu_info`) is in ``engine.cpu``.
Nothing here imports llama.cpp at module level.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import util as import_util
from pathlib import Path
from typing import Any

from assistant import __version__
from assistant.atomic import atomic_write_text
from assistant.engine.cpu import CpuInfo, cpu_info
from assistant.errors import EngineUnavailableError

log = logging.getLogger(__name__)

CACHE_FILE = "engine-check.json"
PROBE_TIMEOUT_S = 120.0  # a cold start under an emulator or an antivirus scan is slow
# What llama.cpp's system info calls an instruction set, as the kernel names it in
# /proc/cpuinfo. Only these can make the engine die with "illegal instruction".
SYSTEM_INFO_FEATURES = {
    "SSE3": "sse3",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX_VNNI": "avx_vnni",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
_GPU_WORDS = ("cuda", "cublas", "nvcuda", "hip", "rocm", "vulkan", "metal", "opencl", "sycl")
_REINSTALL_HINT = (
    "Reinstall the app (or llama-cpp-python), or use a build made for this computer. Your "
    "chats and settings are safe."
)


# --- llama.cpp -----------------------------------------------------------------------------


@dataclass
class EngineReport:
    """What llama.cpp is here and whether it can run. ``problem`` is empty when it can."""

    loaded: bool = False
    problem: str = ""
    hint: str = ""
    error: str = ""  # what the failure said (an exception, a crash), for the details
    version: str = ""
    library: str = ""  # the llama library file it loaded
    system_info: str = ""
    backends: list[str] = field(default_factory=list)
    devices: list[dict[str, str]] = field(default_factory=list)  # name, description, type
    gpu_offload: bool | None = None
    missing_features: list[str] = field(default_factory=list)
    cpu_kernels: str = ""  # the CPU variant ggml loaded (libggml-cpu-haswell.so), if one
    isolated: bool = False  # checked in a child process

    @property
    def usable(self) -> bool:
        return self.loaded and not self.problem

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineReport:
        """The report ``data`` holds (as :meth:`to_dict` wrote it); TypeError when it is not
        one (a damaged cache file, a child that printed something else)."""
        if not isinstance(data, dict):
            raise TypeError(f"an engine report is a JSON object, not {type(data).__name__}")
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})

    def error_for_user(self) -> EngineUnavailableError:
        return EngineUnavailableError(self.problem, hint=self.hint)


def inspect_engine(cpu: CpuInfo | None = None) -> EngineReport:
    """Load llama.cpp in this process and report on it; every failure becomes the report's
    ``problem``. (A crash cannot be caught: :func:`check_engine` runs this in a child.)"""
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as bindings
    except Exception as exc:
        return _import_failure(exc)
    report = EngineReport(loaded=True, version=str(getattr(llama_cpp, "__version__", "")))
    library = getattr(bindings, "_lib", None)
    report.library = str(getattr(library, "_name", "") or "")
    try:
        report.system_info = bindings.llama_print_system_info().decode(errors="replace").strip()
        report.gpu_offload = bool(bindings.llama_supports_gpu_offload())
    except Exception as exc:  # an older or odd build: say so, do not fail the report
        report.error = f"{type(exc).__name__}: {exc}"
    registry_read = False
    if library is not None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            report.backends, report.devices = _registry(library)
            registry_read = True
    report.cpu_kernels = _loaded_cpu_kernels()
    if registry_read and not report.devices:
        # A build with loadable backends (the installers') where no CPU variant loaded.
        report.problem = "llama.cpp found no processor kernels that run on this computer."
        report.hint = _REINSTALL_HINT
    return judge_cpu(report, cpu or cpu_info())


def judge_cpu(report: EngineReport, cpu: CpuInfo) -> EngineReport:
    """Mark ``report`` unusable when its engine was compiled for instructions ``cpu`` lacks.
    Also applied to a child's report: the child may have run on another processor than this
    process (an emulator that does not follow ``exec``)."""
    report.missing_features = missing_features(report.system_info, cpu)
    if report.missing_features:
        names = ", ".join(name.upper() for name in report.missing_features)
        report.problem = (
            f"This llama.cpp was built for processors with {names}, which this one lacks; "
            "it would stop with an illegal instruction, so local models cannot run."
        )
        report.hint = (
            "Install the app's own build (it runs on any x86-64 processor), or rebuild "
            "llama-cpp-python on this computer. Your chats and settings are safe."
        )
    return report


def _import_failure(exc: BaseException) -> EngineReport:
    text = f"{type(exc).__name__}: {exc}"
    report = EngineReport(error=text, hint=_REINSTALL_HINT)
    lowered = str(exc).lower()
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith("llama_cpp"):
        report.problem = "The llama.cpp engine (llama-cpp-python) is not installed."
    elif isinstance(exc, FileNotFoundError) or "not found" in lowered:
        report.problem = "The llama.cpp engine's library is missing, so local models cannot run."
    elif any(word in lowered for word in _GPU_WORDS):
        report.problem = (
            "This llama.cpp needs a GPU driver or runtime that is not installed here, so local "
            "models cannot run."
        )
        report.hint = (
            "Install or update the graphics driver (CUDA, ROCm or Vulkan, as the build needs), "
            "or use the app's own build, which runs on the processor alone."
        )
    else:
        report.problem = "The llama.cpp engine could not be loaded, so local models cannot run."
    return report


def _registry(library: Any) -> tuple[list[str], list[dict[str, str]]]:
    """ggml's backend registry (CPU, CUDA, Metal, Vulkan…) and its devices, through the
    symbols libllama re-exports from ggml (llama-cpp-python binds none of them)."""
    size, pointer, text = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p
    signatures = {
        "ggml_backend_reg_count": ([], size),
        "ggml_backend_reg_get": ([size], pointer),
        "ggml_backend_reg_name": ([pointer], text),
        "ggml_backend_dev_count": ([], size),
        "ggml_backend_dev_get": ([size], pointer),
        "ggml_backend_dev_name": ([pointer], text),
        "ggml_backend_dev_description": ([pointer], text),
        "ggml_backend_dev_type": ([pointer], ctypes.c_int),
    }
    fn = {}
    for name, (argtypes, restype) in signatures.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, restype
        fn[name] = function
    backends = [
        (fn["ggml_backend_reg_name"](fn["ggml_backend_reg_get"](i)) or b"?").decode()
        for i in range(fn["ggml_backend_reg_count"]())
    ]
    kinds = {
        0: "CPU",
        1: "GPU",
        2: "integrated GPU",
        3: "accelerator",
    }  # enum ggml_backend_dev_type
    devices = []
    for i in range(fn["ggml_backend_dev_count"]()):
        device = fn["ggml_backend_dev_get"](i)
        devices.append(
            {
                "name": (fn["ggml_backend_dev_name"](device) or b"?").decode(errors="replace"),
                "description": (fn["ggml_backend_dev_description"](device) or b"").decode(
                    errors="replace"
                ),
                "type": kinds.get(fn["ggml_backend_dev_type"](device), "other"),
            }
        )
    return backends, devices


_MAPS = Path("/proc/self/maps")  # the files this process has mapped (Linux)


def _loaded_cpu_kernels() -> str:
    """The CPU variant of a build with several (``GGML_CPU_ALL_VARIANTS``, as the installers
    ship): the one file of them this process has mapped. Linux only; empty elsewhere."""
    try:
        maps = _MAPS.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    for line in maps.splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.startswith("libggml-cpu-"):
            return name
    return ""


def compiled_features(system_info: str) -> list[str]:
    """The instruction sets llama.cpp's CPU kernels use (``AVX2 = 1`` in its system info),
    as /proc/cpuinfo names them."""
    found = []
    for name, value in re.findall(r"([A-Z0-9_]+) = (\d+)", system_info):
        feature = SYSTEM_INFO_FEATURES.get(name)
        if feature and value != "0" and feature not in found:
            found.append(feature)
    return found


def missing_features(system_info: str, cpu: CpuInfo) -> list[str]:
    """Instruction sets the engine was compiled for that this processor is known to lack."""
    return [f for f in compiled_features(system_info) if cpu.has(f) is False]


# --- checking in a child process -------------------------------------------------------------

_lock = threading.Lock()
_known: tuple[str, EngineReport] | None = None  # the current key and its report, this process


def cache_key(cpu: CpuInfo | None = None) -> str:
    """What the answer depends on: this app, this Python, the llama.cpp files, where they
    would be loaded from, and the processor. Computed without importing llama.cpp."""
    cpu = cpu or cpu_info()
    parts = [__version__, sys.executable, os.environ.get("LLAMA_CPP_LIB_PATH", "")]
    try:
        spec = import_util.find_spec("llama_cpp")
    except (ImportError, ValueError):
        spec = None
    folders = []
    if spec is not None:
        parts.append(str(spec.origin))
        folders = [Path(p) / "lib" for p in spec.submodule_search_locations or []]
    if os.environ.get("LLAMA_CPP_LIB_PATH"):
        folders.append(Path(os.environ["LLAMA_CPP_LIB_PATH"]))
    for folder in folders:
        with contextlib.suppress(OSError):
            for entry in sorted(folder.iterdir()):
                stat = entry.stat()
                parts.append(f"{entry.name}:{stat.st_size}:{stat.st_mtime_ns}")
    parts.append(" ".join(sorted(cpu.features or ())))
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def known_report(cache_dir: Path | None = None) -> EngineReport | None:
    """The last answer of a check for the engine as it is now (this process, else the disk
    cache in ``cache_dir``), or None when it has not been checked."""
    key = cache_key()
    with _lock:
        return _lookup(key, cache_dir)


def _lookup(key: str, cache_dir: Path | None) -> EngineReport | None:
    if _known is not None and _known[0] == key:
        return _known[1]
    if cache_dir is None:
        return None
    try:
        saved = json.loads((cache_dir / CACHE_FILE).read_text(encoding="utf-8"))
        if isinstance(saved, dict) and saved.get("key") == key:
            return EngineReport.from_dict(saved["report"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def check_engine(
    command: Sequence[str],
    cache_dir: Path | None = None,
    timeout: float = PROBE_TIMEOUT_S,
    *,
    fresh: bool = False,
) -> EngineReport:
    """Whether the engine can run, found by running ``command`` (which loads llama.cpp and
    prints :meth:`EngineReport.to_dict` as JSON on its last line; the app's own is
    ``program_command() + ["doctor", "--engine-probe"]``) unless the answer is known.
    ``fresh`` checks again even when the answer is known. Blocks while the child runs: call it
    off the UI thread. Never raises."""
    global _known
    key = cache_key()
    with _lock:  # two callers at start (the window and the model thread) share one child
        found = None if fresh else _lookup(key, cache_dir)
        if found is not None:
            return found
        report, lasting = _run_probe(command, timeout)
        if lasting:
            _known = (key, report)
            if cache_dir is not None:
                _save(cache_dir, key, report)
        return report


def _run_probe(command: Sequence[str], timeout: float) -> tuple[EngineReport, bool]:
    """The child's report, and whether it says something lasting (not a timeout)."""
    try:
        done = subprocess.run(
            list(command),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
            # A console program started from the windowed app would flash a console window.
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except subprocess.TimeoutExpired:
        return (
            EngineReport(
                problem="Checking the llama.cpp engine took too long.",
                hint="Try again; if it keeps happening, restart the computer.",
                error=f"no answer within {timeout:.0f} s",
                isolated=True,
            ),
            False,
        )
    except OSError as exc:
        return EngineReport(problem="", error=f"could not start the check: {exc}"), False
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            report = EngineReport.from_dict(json.loads(lines[-1]))
        except (ValueError, TypeError):
            report = None
        if report is not None:
            report.isolated = True
            return judge_cpu(report, cpu_info()), True
    return _crash_report(done.returncode, done.stderr), done.returncode != 0


def _crash_report(code: int, stderr: str) -> EngineReport:
    tail = "\n".join(stderr.strip().splitlines()[-8:])
    number = -code if code < 0 else code - 128 if code > 128 else 0
    # A shell-less child is killed with a negative code; qemu-user and some wrappers exit 128+N.
    name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else ""
    said = f"exit status {code} {name}".strip()
    report = EngineReport(isolated=True, error=f"{said}\n{tail}".strip())
    if name == "SIGILL":
        report.problem = (
            "The llama.cpp engine stopped with an illegal instruction: it was built for a "
            "newer processor than this one, so local models cannot run."
        )
        report.hint = (
            "Install the app's own build (it runs on any x86-64 processor), or rebuild "
            "llama-cpp-python on this computer. Your chats and settings are safe."
        )
    elif name:
        report.problem = f"The llama.cpp engine crashed while starting ({name})."
        report.hint = (
            "A graphics driver is the usual cause: update it, or use a build that runs on the "
            "processor alone. Your chats and settings are safe."
        )
    else:
        report.problem = "The llama.cpp engine could not be checked."
        report.hint = _REINSTALL_HINT
    return report


def _save(cache_dir: Path, key: str, report: EngineReport) -> None:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            cache_dir / CACHE_FILE, json.dumps({"key": key, "report": report.to_dict()})
        )
    except OSError as exc:  # only a cache: the next start checks again
        log.info("Could not keep the engine check in %s: %s", cache_dir, exc)


def require_engine(cache_dir: Path | None = None) -> None:
    """Raise ``EngineUnavailableError`` when llama.cpp cannot run here: as a check found it
    (see :func:`known_report`), else as loading it in this process shows. Call it before
    touching ``llama_cpp``."""
    global _known
    key = cache_key()
    with _lock:
        report = _lookup(key, cache_dir)
        if report is None:
            report = inspect_engine()
            _known = (key, report)
    if report.problem:
        raise report.error_for_user()


def forget() -> None:
    """Drop this process's answer (tests; after the engine was replaced)."""
    global _known
    with _lock:
        _known = None
