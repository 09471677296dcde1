"""The processor's name and instruction-set features, as the operating system and the
processor itself report them (``/proc/cpuinfo`` and CPUID on Linux, ``sysctl`` on macOS,
``IsProcessorFeaturePresent`` on Windows). No llama.cpp here: this is what the engine's
needs are held against (``engine.diagnose``) and what ``offline-assistant doctor`` prints.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The features worth showing (the ones llama.cpp's kernels are chosen by), in age order.
SHOWN_FEATURES = (
    "sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "avx", "f16c", "fma", "bmi2", "avx2",
    "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "neon", "dotprod", "sve",
)  # fmt: skip


@dataclass(frozen=True)
class CpuInfo:
    """The processor as the operating system describes it.

    ``features`` holds lower-case names as Linux spells them (``avx2``, ``sse4_2``);
    ``knows`` the names the source could tell about at all (Windows cannot ask for FMA or
    F16C), so a name outside it is "unknown", not "missing". ``features`` is None when the
    source could not be read."""

    model: str
    machine: str
    source: str
    features: frozenset[str] | None
    knows: frozenset[str] = frozenset()

    def has(self, feature: str) -> bool | None:
        """True or False, or None when this computer cannot tell."""
        if self.features is None or (self.knows and feature not in self.knows):
            return None
        return feature in self.features


def cpu_info() -> CpuInfo:
    """The processor's name and instruction-set features (never raises)."""
    machine = platform.machine() or "unknown"
    for probe in (_linux_cpu, _macos_cpu, _windows_cpu):
        try:
            found = probe(machine)
        except Exception as exc:  # a probe that fails leaves the others to try
            log.debug("CPU probe %s failed: %s", probe.__name__, exc)
            found = None
        if found is not None:
            return found
    return CpuInfo(platform.processor() or machine, machine, "none", None)


def _linux_cpu(machine: str) -> CpuInfo | None:
    if not sys.platform.startswith("linux"):
        return None
    text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    said = _cpuid_features() if machine.lower() in {"x86_64", "amd64"} else None
    return read_cpuinfo(text, machine, said)


def read_cpuinfo(text: str, machine: str, said: set[str] | None = None) -> CpuInfo:
    """The processor ``/proc/cpuinfo`` (``text``) describes. ``said`` is what CPUID answered
    for the names of :data:`_CPUID_BITS` (x86 only; None when it could not be asked)."""
    model, flags = "", None
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("model name", "Processor", "cpu model") and not model:
            model = value.strip()
        elif name in ("flags", "Features") and flags is None:  # x86, then ARM
            flags = set(value.split())
    if flags is None:
        return CpuInfo(model or machine, machine, "/proc/cpuinfo", None)
    if "pni" in flags:  # the kernel's name for SSE3 (Prescott New Instructions)
        flags.add("sse3")
    if said is not None:
        # What the processor itself tells programs wins for the bits CPUID was asked about:
        # under an emulator (qemu-user) /proc/cpuinfo still describes the host, and a feature
        # the kernel disabled is missing from both.
        flags = (flags - set(_CPUID_BITS)) | (said & flags | said - _KERNEL_ONLY)
    if "asimd" in flags:
        flags.add("neon")
    if "asimddp" in flags:
        flags.add("dotprod")
    return CpuInfo(model or machine, machine, "/proc/cpuinfo", frozenset(flags))


# (leaf, register index in eax/ebx/ecx/edx, bit) of the CPUID feature flags that matter here.
_CPUID_BITS = {
    "sse3": (1, 2, 0), "ssse3": (1, 2, 9), "fma": (1, 2, 12), "cx16": (1, 2, 13),
    "sse4_1": (1, 2, 19), "sse4_2": (1, 2, 20), "popcnt": (1, 2, 23), "avx": (1, 2, 28),
    "f16c": (1, 2, 29), "avx2": (7, 1, 5), "bmi2": (7, 1, 8), "avx512f": (7, 1, 16),
    "avx512_vnni": (7, 2, 11), "amx_int8": (7, 3, 25),
}  # fmt: skip
# Features that also need the kernel's support (saving the wider registers): a CPUID bit
# alone does not make them usable, so they count only when /proc/cpuinfo lists them too.
_KERNEL_ONLY = {"avx", "f16c", "fma", "avx2", "avx512f", "avx512_vnni", "amx_int8"}
# cpuid(leaf=edi, subleaf=esi) -> eax, ebx, ecx, edx at [rdx] (System V x86-64); the same
# bytes as packaging/launcher.py, which must run before this package can be imported.
_CPUID_CODE = bytes.fromhex("5389f889f14989d00fa241890041895804418948084189500c5bc3")


def _cpuid_features() -> set[str] | None:
    """The CPUID bits of :data:`_CPUID_BITS` that are set, or None when code cannot be run
    from memory here (W^X policies: SELinux execmem, PaX)."""
    import mmap

    try:
        prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=prot)
    except (OSError, ValueError, AttributeError):
        return None
    page.write(_CPUID_CODE)
    view = ctypes.c_char.from_buffer(page)
    signature = ctypes.CFUNCTYPE(
        None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4)
    )
    cpuid = signature(ctypes.addressof(view))
    regs = (ctypes.c_uint32 * 4)()
    cpuid(0, 0, ctypes.pointer(regs))
    leaves = {}
    for leaf in (1, 7):
        if leaf <= regs[0] or leaf == 1:
            out = (ctypes.c_uint32 * 4)()
            cpuid(leaf, 0, ctypes.pointer(out))
            leaves[leaf] = list(out)
    del cpuid, view  # release the buffer before the page is unmapped
    page.close()
    return {
        name
        for name, (leaf, register, bit) in _CPUID_BITS.items()
        if leaf in leaves and leaves[leaf][register] >> bit & 1
    }


def _sysctl(name: str) -> str:
    result = subprocess.run(
        ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def _macos_cpu(machine: str) -> CpuInfo | None:
    if sys.platform != "darwin":
        return None
    return read_sysctl(machine, _sysctl)


def read_sysctl(machine: str, sysctl: Callable[[str], str]) -> CpuInfo:
    """The processor macOS describes; ``sysctl(name)`` is the value of a sysctl, or ""."""
    model = sysctl("machdep.cpu.brand_string") or machine
    if machine == "arm64":
        # Every Apple silicon chip has NEON; the optional features are sysctl booleans.
        flags = {"neon"}
        if sysctl("hw.optional.arm.FEAT_DotProd") == "1":
            flags.add("dotprod")
        return CpuInfo(model, machine, "sysctl", frozenset(flags))
    words = f"{sysctl('machdep.cpu.features')} {sysctl('machdep.cpu.leaf7_features')}"
    names = {word.lower().replace(".", "_") for word in words.split()}
    # sysctl spells some differently: AVX1.0, SSE4.2 (sse4_2 once lowered), AVX512VNNI.
    aliases = {"avx1_0": "avx", "avx512vnni": "avx512_vnni"}
    flags = {aliases.get(name, name) for name in names}
    return CpuInfo(model, machine, "sysctl", frozenset(flags))


def _windows_cpu(machine: str) -> CpuInfo | None:
    if os.name != "nt":
        return None
    present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
    return read_processor_features(machine, platform.processor(), present)


# PF_* constants of winnt.h; there are none for FMA, F16C or BMI2.
_WINDOWS_FEATURES = {"sse3": 13, "cx16": 14, "ssse3": 36, "sse4_1": 37, "sse4_2": 38, "avx": 39,
                     "avx2": 40, "avx512f": 41, "neon": 19, "dotprod": 43}  # fmt: skip


def read_processor_features(machine: str, model: str, present: Callable[[int], object]) -> CpuInfo:
    """The processor Windows describes: ``present(number)`` is IsProcessorFeaturePresent."""
    flags = {name for name, number in _WINDOWS_FEATURES.items() if present(number)}
    if "sse4_2" in flags:
        flags.add("popcnt")  # no PF_ constant; every CPU with SSE4.2 has it
    knows = frozenset(_WINDOWS_FEATURES) | {"popcnt"}
    return CpuInfo(model or machine, machine, "IsProcessorFeaturePresent", frozenset(flags), knows)
