"""The parts behind `offline-assistant doctor`, each held to what it must say.

``test_doctor.py`` runs the doctor as a user does; here each reader and judge is run in this
process, on this computer's own ``/proc/cpuinfo``, CPUID, llama.cpp and ggml registry, and on
what other processors and systems report (texts as they print them), so a changed word, flag
or exit code shows.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import platform
import re
import shutil
import signal
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from assistant.engine import cpu, diagnose
from assistant.engine.cpu import CpuInfo
from assistant.engine.diagnose import EngineReport
from assistant.errors import EngineUnavailableError

X86 = platform.machine().lower() in ("x86_64", "amd64")
LINUX = sys.platform.startswith("linux")
OLD_CPU = CpuInfo("old", "x86_64", "test", frozenset({"sse3", "ssse3", "sse4_2"}))
REINSTALL = (
    "Reinstall the app (or llama-cpp-python), or use a build made for this computer. Your "
    "chats and settings are safe."
)
OWN_BUILD = (
    "Install the app's own build (it runs on any x86-64 processor), or rebuild "
    "llama-cpp-python on this computer. Your chats and settings are safe."
)


@pytest.fixture(autouse=True)
def _forget_engine_checks() -> Iterator[None]:
    diagnose.forget()
    yield
    diagnose.forget()


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --- the processor: Linux ---------------------------------------------------------------------

XEON = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
flags\t\t: fpu sse2 pni ssse3 sse4_2 popcnt avx avx2 fma lm

processor\t: 1
model name\t: Another Name
flags\t\t: fpu
"""
RASPBERRY_PI = """\
processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid asimddp
CPU implementer\t: 0x41
"""


def test_cpuinfo_gives_the_first_model_and_flags_with_sse3_by_its_name() -> None:
    info = cpu.read_cpuinfo(XEON, "x86_64")
    assert info == CpuInfo(
        "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz",
        "x86_64",
        "/proc/cpuinfo",
        frozenset(
            ["fpu", "sse2", "pni", "sse3", "ssse3", "sse4_2", "popcnt", "avx", "avx2", "fma", "lm"]
        ),
    )
    assert info.has("sse3") is True and info.has("avx512f") is False


def test_a_model_name_may_hold_a_colon() -> None:
    text = "model name\t: Engineering Sample: rev 2\nflags\t: fpu\n"
    assert cpu.read_cpuinfo(text, "x86_64").model == "Engineering Sample: rev 2"


def test_cpuinfo_of_an_arm_board_names_neon_and_dot_product() -> None:
    info = cpu.read_cpuinfo(RASPBERRY_PI, "aarch64")
    assert info.model == "aarch64"  # no model line: the machine's name
    assert info.features is not None
    assert {"neon", "dotprod", "asimd", "fp"} <= info.features
    plain = cpu.read_cpuinfo("Processor\t: ARMv7 rev 5 (v7l)\nFeatures\t: half vfp\n", "armv7l")
    assert plain.model == "ARMv7 rev 5 (v7l)"
    assert plain.features == frozenset({"half", "vfp"})
    loongson = cpu.read_cpuinfo("cpu model\t\t: Loongson-3A5000\nflags : cpucfg lsx\n", "la64")
    assert loongson.model == "Loongson-3A5000"


def test_cpuinfo_without_flags_cannot_tell_what_is_missing() -> None:
    info = cpu.read_cpuinfo("processor\t: 0\nmodel name\t: Mystery\n", "riscv64")
    assert info == CpuInfo("Mystery", "riscv64", "/proc/cpuinfo", None)
    assert info.has("avx") is None


def test_what_the_processor_says_wins_over_cpuinfo_for_the_bits_it_was_asked() -> None:
    # Under qemu-user /proc/cpuinfo describes the host (AVX2), CPUID the emulated processor.
    text = "model name : Host\nflags : fpu pni ssse3 avx avx2 avx512f lm\n"
    said = {"sse3", "ssse3", "popcnt", "avx", "fma"}
    info = cpu.read_cpuinfo(text, "x86_64", said)
    # avx2 and avx512f: CPUID says no. popcnt: CPUID says yes, and it needs no kernel
    # support. fma: CPUID says yes, but the kernel does not list it, so it is not usable.
    # fpu, pni and lm: not asked of CPUID, kept as the kernel says.
    assert info.features == frozenset({"fpu", "pni", "sse3", "ssse3", "popcnt", "avx", "lm"})


def test_each_reader_answers_only_on_its_own_system() -> None:
    machine = platform.machine()
    readers = {"linux": cpu._linux_cpu, "darwin": cpu._macos_cpu, "win32": cpu._windows_cpu}
    for system, reader in readers.items():
        if sys.platform.startswith(system):
            continue
        assert reader(machine) is None, system


@pytest.mark.skipif(not LINUX, reason="reads /proc, needs Linux")
def test_this_computer_is_read_from_cpuinfo_and_cpuid() -> None:
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    machine = platform.machine()
    said = cpu._cpuid_features() if X86 else None
    info = cpu.cpu_info()
    assert info == cpu.read_cpuinfo(text, machine, said)
    assert info.source == "/proc/cpuinfo" and info.machine == machine
    assert info.model != machine or "model name" not in text
    if X86:
        assert info.features is not None and "sse2" in info.features


@pytest.mark.skipif(not (LINUX and X86), reason="not an x86-64 CPU with /proc (needs Linux)")
def test_cpuid_agrees_with_the_kernel_on_this_processor() -> None:
    """Outside an emulator, the bits CPUID sets are the ones the kernel lists (a hypervisor
    masks both alike)."""
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split())
    flags = {"sse3" if flag == "pni" else flag for flag in flags} & set(cpu._CPUID_BITS)
    said = cpu._cpuid_features()
    assert said is not None
    assert "sse3" in said and "cx16" in said  # every x86-64 since 2006 has both
    assert said == flags


@pytest.mark.skipif(not LINUX, reason="reads /proc, needs Linux")
def test_only_an_x86_processor_is_asked_through_cpuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """What CPUID says replaces the kernel's list for the bits asked (as under an emulator
    whose processor has none of them); other processors are never asked."""
    asked: list[str] = []

    def says_nothing() -> set[str]:
        asked.append("cpuid")
        return set()

    monkeypatch.setattr(cpu, "_cpuid_features", says_nothing)
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    for machine in ("x86_64", "AMD64"):
        info = cpu._linux_cpu(machine)
        assert info is not None and info.features is not None
        assert info.features == cpu.read_cpuinfo(text, machine, set()).features
        assert not info.features & {"sse3", "ssse3", "cx16", "sse4_2", "popcnt"}
    assert asked == ["cpuid", "cpuid"]
    assert cpu._linux_cpu("aarch64") == cpu.read_cpuinfo(text, "aarch64")
    assert asked == ["cpuid", "cpuid"]


def test_on_macos_the_processor_is_read_from_sysctl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "sys", SimpleNamespace(platform="darwin"))
    monkeypatch.setattr(cpu, "_sysctl", lambda name: INTEL_MAC.get(name, ""))
    machine = platform.machine() or "unknown"
    assert cpu._linux_cpu(machine) is None
    assert cpu.cpu_info() == cpu.read_sysctl(machine, lambda name: INTEL_MAC.get(name, ""))
    apple = cpu._macos_cpu("arm64")
    assert apple == CpuInfo(INTEL_MAC["machdep.cpu.brand_string"], "arm64", "sysctl", NEON)


def test_on_windows_each_feature_is_asked_of_the_system(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []

    def present(number: int) -> int:
        asked.append(number)
        return int(number in (13, 38))  # SSE3 and SSE4.2

    kernel32 = SimpleNamespace(IsProcessorFeaturePresent=present)
    monkeypatch.setattr(cpu, "sys", SimpleNamespace(platform="win32"))
    monkeypatch.setattr(cpu, "os", SimpleNamespace(name="nt"))
    monkeypatch.setattr(cpu, "ctypes", SimpleNamespace(windll=SimpleNamespace(kernel32=kernel32)))
    machine = platform.machine() or "unknown"
    assert cpu.cpu_info() == CpuInfo(
        platform.processor() or machine,
        machine,
        "IsProcessorFeaturePresent",
        frozenset({"sse3", "sse4_2", "popcnt"}),
        frozenset(cpu._WINDOWS_FEATURES) | {"popcnt"},
    )
    assert sorted(asked) == sorted(cpu._WINDOWS_FEATURES.values())


def test_a_machine_without_a_name_is_called_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu.platform, "machine", lambda: "")
    assert cpu.cpu_info().machine == "unknown"


def test_a_failing_reader_leaves_a_name_and_no_features(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unreadable(_machine: str) -> CpuInfo | None:
        raise PermissionError("/proc/cpuinfo: permission denied")

    for name in ("_linux_cpu", "_macos_cpu", "_windows_cpu"):
        monkeypatch.setattr(cpu, name, unreadable)
    with caplog.at_level(logging.DEBUG, logger="assistant.engine.cpu"):
        info = cpu.cpu_info()
    machine = platform.machine() or "unknown"
    assert info == CpuInfo(platform.processor() or machine, machine, "none", None)
    said = "CPU probe unreadable failed: /proc/cpuinfo: permission denied"
    assert caplog.messages == [said, said, said]


# --- the processor: macOS and Windows, as they report it -------------------------------------

INTEL_MAC = {
    "machdep.cpu.brand_string": "Intel(R) Core(TM) i7-8750H CPU @ 2.20GHz",
    "machdep.cpu.features": "FPU SSE2 SSE3 SSSE3 FMA CX16 SSE4.1 SSE4.2 POPCNT AVX1.0 F16C",
    "machdep.cpu.leaf7_features": "BMI1 AVX2 BMI2 AVX512F AVX512VNNI",
}


def test_an_intel_mac_spells_its_features_its_own_way() -> None:
    info = cpu.read_sysctl("x86_64", lambda name: INTEL_MAC.get(name, ""))
    assert info.model == "Intel(R) Core(TM) i7-8750H CPU @ 2.20GHz"
    assert info.source == "sysctl" and info.machine == "x86_64"
    assert info.features == frozenset(
        [
            "fpu",
            "sse2",
            "sse3",
            "ssse3",
            "fma",
            "cx16",
            "sse4_1",
            "sse4_2",
            "popcnt",
            "avx",
            "f16c",
            "bmi1",
            "avx2",
            "bmi2",
            "avx512f",
            "avx512_vnni",
        ]
    )


NEON = frozenset({"neon"})


def test_apple_silicon_has_neon_and_says_whether_it_has_dot_product() -> None:
    m1 = {"machdep.cpu.brand_string": "Apple M1", "hw.optional.arm.FEAT_DotProd": "1"}
    info = cpu.read_sysctl("arm64", lambda name: m1.get(name, ""))
    assert info == CpuInfo("Apple M1", "arm64", "sysctl", frozenset({"neon", "dotprod"}))
    older = cpu.read_sysctl("arm64", lambda name: "0" if name.startswith("hw.") else "")
    assert older == CpuInfo("arm64", "arm64", "sysctl", NEON)


def test_sysctl_is_asked_for_one_value_and_an_unknown_name_is_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = tmp_path / "asked"
    program = tmp_path / "sysctl"
    program.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> {asked}\n'
        'if [ "$2" = machdep.cpu.brand_string ]; then echo "  Apple M2  "; exit 0; fi\n'
        "echo \"sysctl: unknown oid '$2'\"\n"
        "exit 1\n"
    )
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert cpu._sysctl("machdep.cpu.brand_string") == "Apple M2"
    assert cpu._sysctl("hw.optional.arm.FEAT_DotProd") == ""
    assert asked.read_text().splitlines() == [
        "-n machdep.cpu.brand_string",
        "-n hw.optional.arm.FEAT_DotProd",
    ]


def test_windows_names_what_it_can_ask_and_infers_popcnt() -> None:
    haswell = {13, 14, 36, 37, 38, 39, 40}  # PF_SSE3_INSTRUCTIONS_AVAILABLE … PF_AVX2_…
    info = cpu.read_processor_features("AMD64", "", lambda number: int(number in haswell))
    assert info.model == info.machine == "AMD64"
    assert info.source == "IsProcessorFeaturePresent"
    assert info.features == frozenset(
        {"sse3", "cx16", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "popcnt"}
    )
    assert info.has("avx512f") is False and info.has("popcnt") is True
    assert info.has("fma") is None  # Windows cannot be asked: unknown, not missing
    old = cpu.read_processor_features("AMD64", "Intel64 Family 6", lambda number: number == 13)
    assert old.model == "Intel64 Family 6"
    assert old.features == frozenset({"sse3"}) and old.has("popcnt") is False
    arm = cpu.read_processor_features("ARM64", "Snapdragon", lambda number: number in (19, 43))
    assert arm.features == frozenset({"neon", "dotprod"})


# --- what llama.cpp was compiled for, judged against the processor ---------------------------


def test_compiled_features_read_only_the_instruction_sets_that_are_on() -> None:
    info = (
        "CPU : SSE3 = 1 | AVX = 1 | AVX = 1 | AVX2 = 0 | AVX512 = 1 | AVX512_VNNI = 2 | "
        "OPENMP = 1 | LLAMAFILE = 1 | AMX_INT8 = 0 | BMI2 = 1 |"
    )
    assert diagnose.compiled_features(info) == ["sse3", "avx", "avx512f", "avx512_vnni", "bmi2"]


def test_an_engine_built_for_more_is_judged_unusable_in_words() -> None:
    report = EngineReport(loaded=True, system_info="CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 |")
    judged = diagnose.judge_cpu(report, OLD_CPU)
    assert judged is report and not report.usable
    assert report.missing_features == ["avx", "avx2"]
    assert report.problem == (
        "This llama.cpp was built for processors with AVX, AVX2, which this one lacks; it "
        "would stop with an illegal instruction, so local models cannot run."
    )
    assert report.hint == OWN_BUILD
    error = report.error_for_user()
    assert isinstance(error, EngineUnavailableError)
    assert str(error) == report.problem and error.hint == OWN_BUILD
    fits = EngineReport(loaded=True, system_info="CPU : SSE3 = 1 |")
    assert diagnose.judge_cpu(fits, OLD_CPU).usable and fits.problem == fits.hint == ""


# --- llama.cpp in this process ----------------------------------------------------------------


def test_this_engine_is_described_in_full() -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    report = diagnose.inspect_engine()
    assert report.loaded and not report.isolated
    assert report.version == llama_cpp.__version__
    assert report.library == str(bindings._lib._name)
    assert Path(report.library).is_file()
    assert report.system_info == bindings.llama_print_system_info().decode().strip()
    assert report.system_info.startswith("CPU :")
    assert report.gpu_offload is bool(bindings.llama_supports_gpu_offload())
    assert report.error == "" and report.cpu_kernels == ""
    assert "CPU" in report.backends
    processor = next(device for device in report.devices if device["type"] == "CPU")
    assert processor["name"] == "CPU" and processor["description"]


def test_an_engine_too_new_for_the_processor_given_is_refused() -> None:
    report = diagnose.inspect_engine(CpuInfo("old", "x86_64", "test", frozenset()))
    needed = diagnose.compiled_features(report.system_info)
    assert report.missing_features == needed
    if needed:  # this build uses SSE3 or more
        assert not report.usable and report.hint == OWN_BUILD


def test_a_build_whose_processor_kernels_did_not_load_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(diagnose, "_registry", lambda _library: (["CPU"], []))
    report = diagnose.inspect_engine()
    assert report.backends == ["CPU"] and report.devices == []
    assert report.problem == "llama.cpp found no processor kernels that run on this computer."
    assert report.hint == REINSTALL


@pytest.mark.parametrize(
    "error",
    [
        AttributeError("undefined symbol: ggml_backend_reg_count"),
        OSError("cannot read"),
        ValueError("bad pointer"),
    ],
    ids=["old-build", "os", "value"],
)
def test_an_unreadable_registry_is_not_a_problem(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    def missing(_library: object) -> tuple[list[str], list[dict[str, str]]]:
        raise error

    monkeypatch.setattr(diagnose, "_registry", missing)
    report = diagnose.inspect_engine()
    assert report.backends == [] and report.devices == []
    assert report.usable, report.problem


def test_an_engine_that_is_not_installed_is_named_in_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now fails
    report = diagnose.inspect_engine()
    assert report.problem == "The llama.cpp engine (llama-cpp-python) is not installed."
    assert report.error.startswith("ModuleNotFoundError: ")


def test_a_build_without_system_info_still_gets_a_report(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp.llama_cpp as bindings

    def missing() -> bytes:
        raise AttributeError("llama_print_system_info")

    monkeypatch.setattr(bindings, "llama_print_system_info", missing)
    report = diagnose.inspect_engine()
    assert report.error == "AttributeError: llama_print_system_info"
    assert report.system_info == "" and report.usable


def test_a_build_without_version_or_library_name_still_gets_a_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import llama_cpp
    import llama_cpp.llama_cpp as bindings

    monkeypatch.delattr(llama_cpp, "__version__")
    monkeypatch.delattr(bindings, "_lib")
    report = diagnose.inspect_engine()
    assert report.version == "" and report.library == ""
    assert report.backends == [] and report.usable
    monkeypatch.setattr(bindings, "_lib", object(), raising=False)  # a library with no name
    assert diagnose.inspect_engine().library == ""


class CFunction:
    """A C function as ctypes hands it out: callable, with settable argument and result types."""

    def __init__(self, body: Callable[..., object]) -> None:
        self.body = body
        self.argtypes: list[object] | None = None
        self.restype: object = None

    def __call__(self, *args: object) -> object:
        return self.body(*args)


def test_the_registry_names_every_backend_and_device_kind() -> None:
    """A build with a GPU backend, as ggml's registry lists it (no GPU here to load one)."""
    backends = [b"CPU", b"CUDA", None]
    devices = [
        (b"CPU", b"AMD Ryzen 7 7840U", 0),
        (b"CUDA0", b"NVIDIA GeForce RTX 4060", 1),
        (b"Vulkan0", b"AMD Radeon 780M", 2),
        (b"NPU", None, 3),
        (None, b"\xffodd", 9),
        (b"\xfeGPU", b"", 1),
    ]
    library = type("Library", (), {})()
    functions = {
        "ggml_backend_reg_count": CFunction(lambda: len(backends)),
        "ggml_backend_reg_get": CFunction(lambda i: 100 + i),
        "ggml_backend_reg_name": CFunction(lambda reg: backends[reg - 100]),
        "ggml_backend_dev_count": CFunction(lambda: len(devices)),
        "ggml_backend_dev_get": CFunction(lambda i: 200 + i),
        "ggml_backend_dev_name": CFunction(lambda dev: devices[dev - 200][0]),
        "ggml_backend_dev_description": CFunction(lambda dev: devices[dev - 200][1]),
        "ggml_backend_dev_type": CFunction(lambda dev: devices[dev - 200][2]),
    }
    for name, function in functions.items():
        setattr(library, name, function)
    names, found = diagnose._registry(library)
    assert names == ["CPU", "CUDA", "?"]
    assert found == [
        {"name": "CPU", "description": "AMD Ryzen 7 7840U", "type": "CPU"},
        {"name": "CUDA0", "description": "NVIDIA GeForce RTX 4060", "type": "GPU"},
        {"name": "Vulkan0", "description": "AMD Radeon 780M", "type": "integrated GPU"},
        {"name": "NPU", "description": "", "type": "accelerator"},
        {"name": "?", "description": "\ufffdodd", "type": "other"},
        {"name": "\ufffdGPU", "description": "", "type": "GPU"},
    ]
    size, pointer, text = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p
    expected = {
        "ggml_backend_reg_count": ([], size),
        "ggml_backend_reg_get": ([size], pointer),
        "ggml_backend_reg_name": ([pointer], text),
        "ggml_backend_dev_count": ([], size),
        "ggml_backend_dev_get": ([size], pointer),
        "ggml_backend_dev_name": ([pointer], text),
        "ggml_backend_dev_description": ([pointer], text),
        "ggml_backend_dev_type": ([pointer], ctypes.c_int),
    }
    assert {n: (f.argtypes, f.restype) for n, f in functions.items()} == expected


def test_this_build_registers_the_processor() -> None:
    import llama_cpp.llama_cpp as bindings

    names, devices = diagnose._registry(bindings._lib)
    assert "CPU" in names
    assert [device["type"] for device in devices].count("CPU") == 1


@pytest.mark.skipif(not LINUX, reason="reads /proc, needs Linux")
def test_the_processor_kernels_ggml_picked_are_named(tmp_path: Path) -> None:
    """A build with one CPU library per processor generation maps one of them; a copy of a
    small shared library under such a name stands in for it while it is loaded."""
    import _ctypes

    folder = Path(sysconfig.get_config_var("DESTSHARED"))
    smallest = min(folder.glob("*.so"), key=lambda path: path.stat().st_size)
    odd = tmp_path / os.fsdecode(b"caf\xe9")  # a path that is not UTF-8 on the way
    odd.mkdir()
    kernels = odd / "libggml-cpu-haswell.so"
    shutil.copyfile(smallest, kernels)
    assert diagnose._loaded_cpu_kernels() == ""
    library = ctypes.CDLL(str(kernels))
    try:
        assert diagnose._loaded_cpu_kernels() == "libggml-cpu-haswell.so"
    finally:
        _ctypes.dlclose(library._handle)
    assert diagnose._loaded_cpu_kernels() == ""


def test_a_system_without_proc_has_no_kernels_to_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diagnose, "_MAPS", tmp_path / "no-proc" / "maps")
    assert diagnose._loaded_cpu_kernels() == ""


# --- llama.cpp that cannot be imported --------------------------------------------------------


def not_installed() -> ModuleNotFoundError:
    return ModuleNotFoundError("No module named 'llama_cpp'", name="llama_cpp")


@pytest.mark.parametrize(
    ("exc", "problem"),
    [
        (not_installed(), "The llama.cpp engine (llama-cpp-python) is not installed."),
        (
            FileNotFoundError("Shared library with base name 'llama' not found"),
            "The llama.cpp engine's library is missing, so local models cannot run.",
        ),
        (
            RuntimeError("Failed to load shared library '/x/libllama.so': libfoo: not found"),
            "The llama.cpp engine's library is missing, so local models cannot run.",
        ),
        (
            OSError("libhipblas.so.2: cannot open shared object file"),
            "This llama.cpp needs a GPU driver or runtime that is not installed here, so local "
            "models cannot run.",
        ),
        (
            ModuleNotFoundError("No module named 'numpy'", name="numpy"),
            "The llama.cpp engine could not be loaded, so local models cannot run.",
        ),
        (
            OSError("libllama.so: invalid ELF header"),
            "The llama.cpp engine could not be loaded, so local models cannot run.",
        ),
    ],
    ids=["not-installed", "file-missing", "said-not-found", "gpu", "dependency", "broken"],
)
def test_an_engine_that_cannot_be_imported_is_named(exc: Exception, problem: str) -> None:
    report = diagnose._import_failure(exc)
    assert not report.loaded and not report.usable
    assert report.problem == problem
    assert report.error == f"{type(exc).__name__}: {exc}"
    if "GPU" in problem:
        assert report.hint == (
            "Install or update the graphics driver (CUDA, ROCm or Vulkan, as the build "
            "needs), or use the app's own build, which runs on the processor alone."
        )
    else:
        assert report.hint == REINSTALL


# --- the check in a child process -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name"),
    [(-signal.SIGILL, "SIGILL"), (128 + signal.SIGILL, "SIGILL")],
    ids=["killed", "wrapper"],
)
def test_an_illegal_instruction_is_named_however_the_child_ends(code: int, name: str) -> None:
    stderr = "".join(f"line {n}\n" for n in range(1, 13))
    report = diagnose._crash_report(code, stderr)
    tail = "\n".join(f"line {n}" for n in range(5, 13))  # the last eight lines
    assert report.error == f"exit status {code} {name}\n{tail}"
    assert report.isolated and not report.loaded
    assert report.problem == (
        "The llama.cpp engine stopped with an illegal instruction: it was built for a newer "
        "processor than this one, so local models cannot run."
    )
    assert report.hint == OWN_BUILD


def test_a_wrapper_reports_a_signal_as_128_and_more() -> None:
    hangup = diagnose._crash_report(128 + signal.SIGHUP, "")
    assert hangup.problem == "The llama.cpp engine crashed while starting (SIGHUP)."


def test_a_crash_and_a_plain_failure_are_told_apart() -> None:
    crash = diagnose._crash_report(-signal.SIGSEGV, "")
    assert crash.error == f"exit status {-signal.SIGSEGV} SIGSEGV"
    assert crash.problem == "The llama.cpp engine crashed while starting (SIGSEGV)."
    assert crash.hint == (
        "A graphics driver is the usual cause: update it, or use a build that runs on the "
        "processor alone. Your chats and settings are safe."
    )
    failed = diagnose._crash_report(1, "Traceback …\nImportError: nope\n")
    assert failed.error == "exit status 1\nTraceback …\nImportError: nope"
    assert failed.problem == "The llama.cpp engine could not be checked."
    assert failed.hint == REINSTALL
    assert diagnose._crash_report(128, "").error == "exit status 128"
    assert diagnose._crash_report(128 + 99, "").problem == failed.problem  # no such signal


def test_a_child_that_answers_is_judged_here(tmp_path: Path) -> None:
    answer = EngineReport(loaded=True, version="9.9", system_info="CPU : SSE3 = 1 | AVX512 = 1 |")
    command = python(f"print('loading'); print({json.dumps(answer.to_dict())!r})")
    report, lasting = diagnose._run_probe(command, 60)
    assert lasting and report.isolated and report.version == "9.9"
    here = cpu.cpu_info()
    assert report.missing_features == diagnose.missing_features(answer.system_info, here)
    assert bool(report.problem) == bool(report.missing_features)


@pytest.mark.parametrize(
    ("code", "lasting"),
    [
        ("print('not json')", False),  # exit 0 with no report: not a lasting answer
        ("print('[1, 2]')", False),
        ("", False),
        ("import sys; sys.exit(3)", True),
    ],
    ids=["not-json", "not-a-report", "silent", "failed"],
)
def test_a_child_without_a_report_cannot_be_checked(code: str, lasting: bool) -> None:
    report, kept = diagnose._run_probe(python(code), 60)
    assert kept is lasting
    assert report.problem == "The llama.cpp engine could not be checked."
    assert report.isolated


def test_a_childs_garbled_output_is_still_read() -> None:
    code = "import sys; sys.stderr.buffer.write(b'bad \\xff byte\\n'); sys.exit(1)"
    report, _ = diagnose._run_probe(python(code), 60)
    assert report.error == "exit status 1\nbad \ufffd byte"


def test_a_child_that_reads_its_input_is_not_left_waiting() -> None:
    """The app's own input may be a terminal or a pipe nobody writes to: the child must not
    inherit it."""
    answer = json.dumps(EngineReport(loaded=True).to_dict())
    code = f"import sys; sys.stdin.read(); print({answer!r})"
    reading, writing = os.pipe()
    own_input = os.dup(0)
    os.dup2(reading, 0)  # an input that never ends
    try:
        report, lasting = diagnose._run_probe(python(code), 30)
    finally:
        os.dup2(own_input, 0)
        for fd in (own_input, reading, writing):
            os.close(fd)
    assert lasting and report.loaded


def test_a_check_that_takes_too_long_is_tried_again_next_time(tmp_path: Path) -> None:
    slow = python("import time; time.sleep(30)")
    report = diagnose.check_engine(slow, tmp_path, timeout=1)
    assert report.problem == "Checking the llama.cpp engine took too long."
    assert report.hint == "Try again; if it keeps happening, restart the computer."
    assert report.error == "no answer within 1 s" and report.isolated
    assert not (tmp_path / diagnose.CACHE_FILE).exists()
    assert diagnose.known_report(tmp_path) is None
    answer = json.dumps(EngineReport(loaded=True, version="2").to_dict())
    assert diagnose.check_engine(python(f"print({answer!r})"), tmp_path).version == "2"


def test_a_check_that_cannot_start_is_not_kept(tmp_path: Path) -> None:
    report = diagnose.check_engine([str(tmp_path / "no-such-program")], tmp_path)
    assert report.problem == "" and not report.loaded
    assert report.error.startswith("could not start the check: ")
    assert "no-such-program" in report.error
    assert diagnose.known_report(tmp_path) is None


def test_the_kept_answer_is_the_report_under_its_key(tmp_path: Path) -> None:
    answer = EngineReport(loaded=True, version="3", backends=["CPU"])
    folder = tmp_path / "new" / "cache"  # made as needed
    diagnose.check_engine(python(f"print({json.dumps(answer.to_dict())!r})"), folder)
    saved = json.loads((folder / diagnose.CACHE_FILE).read_text(encoding="utf-8"))
    assert saved["key"] == diagnose.cache_key()
    assert EngineReport.from_dict(saved["report"]) == diagnose.known_report(folder)
    assert saved["report"]["version"] == "3" and saved["report"]["isolated"] is True


@pytest.mark.parametrize(
    "content",
    [
        "{not json",
        json.dumps({"key": "another computer", "report": {"loaded": True}}),
        json.dumps({"key": "KEY"}),
        json.dumps({"key": "KEY", "report": ["loaded"]}),
        json.dumps(["KEY"]),
    ],
    ids=["damaged", "other-key", "no-report", "report-not-a-table", "not-a-table"],
)
def test_a_kept_answer_that_does_not_fit_is_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / diagnose.CACHE_FILE).write_text(
        content.replace("KEY", diagnose.cache_key()), encoding="utf-8"
    )
    assert diagnose.known_report(tmp_path) is None


def test_a_cache_that_cannot_be_written_only_costs_a_check(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    answer = json.dumps(EngineReport(loaded=True, version="4").to_dict())
    with caplog.at_level(logging.INFO, logger="assistant.engine.diagnose"):
        report = diagnose.check_engine(python(f"print({answer!r})"), blocked / "cache")
    assert report.version == "4"
    pattern = rf"Could not keep the engine check in {re.escape(str(blocked / 'cache'))}: \[Errno"
    assert [m for m in caplog.messages if re.match(pattern, m)], caplog.messages
    assert diagnose.known_report() == report  # this process still remembers it


def test_the_key_follows_the_engine_files_and_the_processor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = diagnose.cache_key()
    assert len(key) == 64 and int(key, 16) >= 0
    assert diagnose.cache_key() == key
    here = cpu.cpu_info()
    assert diagnose.cache_key(here) == key
    other = CpuInfo(here.model, here.machine, here.source, frozenset({"sse3"}))
    assert diagnose.cache_key(other) != key
    library = tmp_path / "libllama.so"
    library.write_bytes(b"1")
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tmp_path))
    with_folder = diagnose.cache_key()
    assert with_folder != key
    library.write_bytes(b"22")  # replaced by a build of another size
    assert diagnose.cache_key() != with_folder
    os.utime(library, ns=(0, 0))
    resized = diagnose.cache_key()
    os.utime(library, ns=(10**9, 10**9))  # the same size, written at another time
    assert diagnose.cache_key() != resized
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tmp_path / "missing"))
    assert diagnose.cache_key() not in (key, resized)  # named, even where nothing is yet
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", os.fsdecode(b"/opt/caf\xe9"))  # not UTF-8
    assert len(diagnose.cache_key()) == 64


def test_the_key_follows_the_engine_package_wherever_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "llama_cpp"
    (package / "lib").mkdir(parents=True)
    library = package / "lib" / "libllama.so"
    library.write_bytes(b"1")
    spec = SimpleNamespace(
        origin=str(package / "__init__.py"), submodule_search_locations=[str(package)]
    )
    asked: list[str] = []

    def find_spec(name: str) -> object:
        asked.append(name)
        return spec

    monkeypatch.delenv("LLAMA_CPP_LIB_PATH", raising=False)
    monkeypatch.setattr(diagnose, "import_util", SimpleNamespace(find_spec=find_spec))
    first = diagnose.cache_key()
    assert asked == ["llama_cpp"]
    library.write_bytes(b"22")  # the engine was replaced
    replaced = diagnose.cache_key()
    assert replaced != first
    spec.origin = str(tmp_path / "elsewhere" / "__init__.py")  # the same files, moved
    assert diagnose.cache_key() != replaced
    shutil.rmtree(package / "lib")
    assert len(diagnose.cache_key()) == 64  # no library folder: still a key

    def absent(_name: str) -> None:
        return None

    monkeypatch.setattr(diagnose, "import_util", SimpleNamespace(find_spec=absent))
    assert len(diagnose.cache_key()) == 64

    def broken(_name: str) -> None:
        raise ValueError("llama_cpp.__spec__ is None")

    monkeypatch.setattr(diagnose, "import_util", SimpleNamespace(find_spec=broken))
    assert diagnose.cache_key() == diagnose.cache_key()


def test_require_engine_raises_what_a_check_found(tmp_path: Path) -> None:
    diagnose.check_engine(python("import os, signal; os.kill(os.getpid(), signal.SIGILL)"))
    with pytest.raises(EngineUnavailableError) as raised:
        diagnose.require_engine(tmp_path)
    assert "illegal instruction" in str(raised.value)
    assert raised.value.hint == OWN_BUILD


def test_require_engine_reads_a_check_kept_on_disk(tmp_path: Path) -> None:
    diagnose.check_engine(
        python("import os, signal; os.kill(os.getpid(), signal.SIGILL)"), tmp_path
    )
    diagnose.forget()  # a new start of the app
    with pytest.raises(EngineUnavailableError, match="illegal instruction"):
        diagnose.require_engine(tmp_path)


def test_a_report_that_is_not_a_table_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^an engine report is a JSON object, not list$"):
        EngineReport.from_dict([1])  # type: ignore[arg-type]


def test_require_engine_loads_it_here_once_when_nothing_is_known(tmp_path: Path) -> None:
    assert diagnose.known_report(tmp_path) is None
    diagnose.require_engine(tmp_path)  # this build runs here: no error
    known = diagnose.known_report(tmp_path)
    assert known is not None and known.loaded and not known.isolated
    assert not (tmp_path / diagnose.CACHE_FILE).exists()  # only a check in a child is kept
    diagnose.forget()
    assert diagnose.known_report(tmp_path) is None
