"""Entry point of the packaged app: checks the computer can run it, then starts the CLI/GUI.

Runs before anything heavy is imported, because what it guards against kills the process
outright: a CPU without the instructions numpy and Qt were compiled for ends in "illegal
instruction" with no message at all. Here the app says in one sentence what is missing, on the
terminal and, when started from a menu, in a dialog drawn by the operating system.

It also makes the bundle self-contained: a user's ``LLAMA_CPP_LIB_PATH`` cannot point the
engine at another llama.cpp, and programs the app starts (the browser, the file manager) get the
library path the user had, not the bundle's.

Set ``OFFLINE_ASSISTANT_DEBUG_STARTUP=1`` to print what it found (CPU features, the engine's
CPU variant) to stderr.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import sys
from pathlib import Path

APP_NAME = "Offline Assistant"
# x86-64-v2 (2008+ Intel Nehalem, 2011+ AMD Bulldozer, Atom since Silvermont): the baseline
# of the numpy and Qt wheels in the bundle. llama.cpp itself runs everywhere (x64 variant).
REQUIRED_X86 = ("sse3", "ssse3", "sse4_1", "sse4_2", "popcnt", "cx16")
# CPUID leaf 1 ECX and leaf 7 EBX bits, named as Linux names them in /proc/cpuinfo.
_LEAF1_ECX = {
    "sse3": 0,
    "ssse3": 9,
    "fma": 12,
    "cx16": 13,
    "sse4_1": 19,
    "sse4_2": 20,
    "popcnt": 23,
    "avx": 28,
    "f16c": 29,
}
_LEAF7_EBX = {"avx2": 5, "avx512f": 16}
# cpuid(leaf=edi, subleaf=esi) -> 4 x uint32 at [rdx] (System V x86-64 calling convention).
_CPUID_CODE = bytes.fromhex(
    "53"  # push rbx (callee-saved, cpuid overwrites it)
    "89f8"  # mov eax, edi
    "89f1"  # mov ecx, esi
    "4989d0"  # mov r8, rdx
    "0fa2"  # cpuid
    "418900"  # mov [r8], eax
    "41895804"  # mov [r8+4], ebx
    "41894808"  # mov [r8+8], ecx
    "4189500c"  # mov [r8+12], edx
    "5b"  # pop rbx
    "c3"  # ret
)
DEBUG = bool(os.environ.get("OFFLINE_ASSISTANT_DEBUG_STARTUP"))


def _debug(text: str) -> None:
    if DEBUG:
        print(f"[startup] {text}", file=sys.stderr, flush=True)


def restore_environment() -> None:
    """Undo what the bundle's loader did to the environment, for the programs we start."""
    os.environ.pop("LLAMA_CPP_LIB_PATH", None)
    if not getattr(sys, "frozen", False):
        return
    # PyInstaller's bootloader points the library path at the bundle and keeps the user's in
    # *_ORIG. This process has already read it (the loader caches it at start), so restoring
    # it only changes what children see: xdg-open must not load the bundle's Qt or libstdc++.
    for name in ("LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "LIBPATH"):
        original = os.environ.pop(f"{name}_ORIG", None)
        if original is not None:
            os.environ[name] = original
        else:
            os.environ.pop(name, None)


def _cpuid_features() -> set[str] | None:
    """Feature names from the CPUID instruction itself (what the CPU, or an emulator, says)."""
    if os.name == "nt" or sys.platform == "darwin":
        return None  # see _windows_features; every Mac that runs a supported macOS has v2
    try:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError):
        return None  # W^X enforced (SELinux execmem, PaX): fall back to the kernel's list
    page.write(_CPUID_CODE)
    view = ctypes.c_char.from_buffer(page)
    address = ctypes.addressof(view)
    function = ctypes.CFUNCTYPE(
        None, ctypes.c_uint32, ctypes.c_uint32, ctypes.POINTER(ctypes.c_uint32 * 4)
    )(address)
    regs = (ctypes.c_uint32 * 4)()
    function(0, 0, ctypes.pointer(regs))
    max_leaf = regs[0]
    function(1, 0, ctypes.pointer(regs))
    ecx = regs[2]
    features = {name for name, bit in _LEAF1_ECX.items() if ecx >> bit & 1}
    if max_leaf >= 7:
        function(7, 0, ctypes.pointer(regs))
        ebx = regs[1]
        features |= {name for name, bit in _LEAF7_EBX.items() if ebx >> bit & 1}
    del function, view  # release the buffer before the page can be unmapped
    page.close()
    return features


def _proc_cpuinfo_features() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            # The kernel calls SSE3 "pni" (Prescott New Instructions).
            return flags | ({"sse3"} if "pni" in flags else set())
    return None


def _windows_features() -> set[str] | None:
    if os.name != "nt":
        return None
    present = ctypes.windll.kernel32.IsProcessorFeaturePresent  # type: ignore[attr-defined]
    # PF_* constants from winnt.h.
    table = {"sse3": 13, "cx16": 14, "ssse3": 36, "sse4_1": 37, "sse4_2": 38, "avx": 39,
             "avx2": 40, "avx512f": 41}  # fmt: skip
    features = {name for name, number in table.items() if present(number)}
    # No PF_ constant for POPCNT; every CPU with SSE4.2 has it.
    if "sse4_2" in features:
        features.add("popcnt")
    return features


def cpu_features() -> set[str] | None:
    """The x86 features this CPU reports, or None when they cannot be read (then: try)."""
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return None
    for probe in (_windows_features, _cpuid_features, _proc_cpuinfo_features):
        try:
            found = probe()
        except Exception:  # a probe that fails must never stop the app from starting
            found = None
        if found is not None:
            return found
    return None


def missing_cpu_features(features: set[str] | None) -> list[str]:
    if features is None:
        return []
    return [name for name in REQUIRED_X86 if name not in features]


def cpu_message(missing: list[str]) -> str:
    names = ", ".join(name.upper().replace("_", ".") for name in missing)
    return (
        f"{APP_NAME} cannot run on this processor: it lacks {names}. It needs an x86-64 "
        "processor from 2009 or later (Intel Core i3/i5/i7 or newer, AMD FX/Ryzen or newer, "
        "Intel Atom/Celeron/Pentium since 2013)."
    )


def show_fatal(text: str, gui: bool) -> None:
    """Tell the user on stderr and, when started without a terminal, in a native dialog."""
    print(f"offline-assistant: error: {text}", file=sys.stderr, flush=True)
    if not gui:
        return
    import shutil
    import subprocess

    try:
        if os.name == "nt":
            ctypes.windll.user32.MessageBoxW(None, text, APP_NAME, 0x10)  # type: ignore[attr-defined]
        elif sys.platform == "darwin":
            script = f"display alert {APP_NAME!r} message {text!r} as critical"
            subprocess.run(["osascript", "-e", script.replace("'", '"')], check=False)
        else:
            for tool, args in (
                ("zenity", ["--error", f"--title={APP_NAME}", f"--text={text}"]),
                ("kdialog", ["--title", APP_NAME, "--error", text]),
                ("xmessage", ["-center", text]),
            ):
                if shutil.which(tool):
                    subprocess.run([tool, *args], check=False)
                    break
    except Exception:  # the message is on stderr already
        pass


def engine_lib_dir() -> Path | None:
    """The bundled llama.cpp folder, or None when not running from a bundle."""
    base = getattr(sys, "_MEIPASS", None)
    if base is None:
        return None
    folder = Path(base) / "llama_cpp" / "lib"
    return folder if folder.is_dir() else None


def load_engine_backends(folder: Path) -> list[str]:
    """Load llama.cpp's best CPU variant (and any GPU backend shipped) from ``folder`` only.

    Left to itself, llama.cpp would search the executable's folder and the *current* folder
    for backend libraries; loading them from the bundle first makes both searches moot.
    Returns the names of the devices found (empty: no backend this computer can use).
    """
    # The names portable_engine.shipped_names gives ggml on each system.
    names = {"nt": "ggml.dll", "darwin": "libggml.0.dylib"}
    key = "nt" if os.name == "nt" else sys.platform if sys.platform == "darwin" else "linux"
    path = folder / names.get(key, "libggml.so.0")
    if not path.exists():
        return ["(built in)"]  # a build without loadable backends (macOS with Metal)
    ggml = ctypes.CDLL(str(path), mode=getattr(os, "RTLD_GLOBAL", 0))
    # ggml announces the variant it loaded on stderr; that belongs in the debug output, not in
    # front of every answer of `offline-assistant ask`. The engine installs its own log later.
    log_callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)(
        lambda _level, text, _user: _debug((text or b"").decode(errors="replace").strip())
    )
    ggml.ggml_log_set.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    ggml.ggml_log_set(ctypes.cast(log_callback, ctypes.c_void_p), None)
    ggml.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    try:
        ggml.ggml_backend_load_all_from_path(os.fsencode(folder))
    finally:
        ggml.ggml_log_set(None, None)
    ggml.ggml_backend_dev_count.restype = ctypes.c_size_t
    ggml.ggml_backend_dev_get.restype = ctypes.c_void_p
    ggml.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
    ggml.ggml_backend_dev_name.restype = ctypes.c_char_p
    ggml.ggml_backend_dev_name.argtypes = [ctypes.c_void_p]
    return [
        (ggml.ggml_backend_dev_name(ggml.ggml_backend_dev_get(i)) or b"?").decode()
        for i in range(ggml.ggml_backend_dev_count())
    ]


def _loaded_cpu_variant() -> str | None:
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    for line in maps.splitlines():
        name = line.rsplit("/", 1)[-1]
        if name.startswith("libggml-cpu-"):
            return name
    return None


def wants_gui(argv: list[str]) -> bool:
    """No sub-command means the desktop app (the CLI's own rule)."""
    return not [arg for arg in argv if not arg.startswith("-")] and not {
        "-h",
        "--help",
        "--version",
    } & set(argv)


def check_cpu(argv: list[str]) -> None:
    """Exit with a sentence when this processor cannot run the bundle (see rthook_cpu.py)."""
    features = cpu_features()
    _debug(f"cpu features: {' '.join(sorted(features)) if features else 'unknown'}")
    missing = missing_cpu_features(features)
    if missing:
        show_fatal(cpu_message(missing), wants_gui(argv))
        raise SystemExit(1)


def preflight(argv: list[str]) -> int | None:
    """Checks before the app is imported; an exit code when it cannot start."""
    restore_environment()
    if not getattr(sys, "frozen", False):
        try:
            check_cpu(argv)  # frozen, the runtime hook has done it before anything loaded
        except SystemExit as stop:
            return int(stop.code or 1)
    folder = engine_lib_dir()
    if folder is not None:
        try:
            devices = load_engine_backends(folder)
        except OSError as exc:
            devices = []
            _debug(f"engine backends failed to load: {exc}")
        _debug(f"engine devices: {devices}; cpu variant: {_loaded_cpu_variant()}")
        if not devices:
            # Still start: history, settings and cloud models work; loading a local model
            # then fails with the engine's own error, shown in the window.
            print(
                "offline-assistant: warning: the built-in engine found no processor kernels it "
                "can use on this computer; local models will not load.",
                file=sys.stderr,
            )
    return None


def main() -> int:
    code = preflight(sys.argv[1:])
    if code is not None:
        return code
    from assistant.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
