"""Build the llama.cpp libraries that ship inside the installers.

The llama-cpp-python in a developer's virtualenv is compiled for the machine it was built on
(``GGML_NATIVE=ON``: AVX-512 on a build server), so a bundle that copied it would die with
"illegal instruction" on an older laptop. The shipped engine is built here from the *same*
llama-cpp-python source release as the installed Python package (so the ctypes bindings and the
C API match), without native flags:

- x86-64 Linux and Windows: every CPU variant of the ggml CPU backend (``GGML_CPU_ALL_VARIANTS``:
  x64, sse42, sandybridge, haswell, skylakex, icelake, alderlake, ...) as loadable modules
  (``GGML_BACKEND_DL``). At start the launcher loads the best one this CPU can run.
- macOS: one build per architecture with Metal for Apple silicon's GPU.

Only the standard library is used; ``cmake`` and a C++ compiler must be on the PATH, ``pip``
fetches the source release. Usage (normally called by ``tools/build_installer.py``)::

    python packaging/engine.py OUT_DIR
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path

# What the app uses: the llama library and ggml. Tests, tools, examples, the server and the
# multimodal library (mtmd, only for image chat handlers the app does not offer) stay out.
COMMON_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_COMMON=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_CURL=OFF",
    # Libraries find each other next to themselves wherever the bundle is unpacked.
    "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON",
]


def platform_flags(system: str, machine: str) -> list[str]:
    """CMake flags for the shipped engine on ``system`` (platform.system()) and ``machine``."""
    machine = machine.lower()
    if system == "Darwin":
        flags = [
            "-DCMAKE_INSTALL_RPATH=@loader_path",
            "-DGGML_METAL=ON",
            "-DGGML_METAL_EMBED_LIBRARY=ON",
            f"-DCMAKE_OSX_ARCHITECTURES={'arm64' if machine == 'arm64' else 'x86_64'}",
            "-DCMAKE_OSX_DEPLOYMENT_TARGET=12.0",
        ]
        if machine != "arm64":
            # Intel Macs: runtime selection of the CPU kernels, as on the other systems.
            flags += ["-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON", "-DGGML_METAL=OFF"]
        return flags
    flags = ["-DGGML_BACKEND_DL=ON", "-DGGML_CPU_ALL_VARIANTS=ON"]
    if system == "Linux":
        flags.append("-DCMAKE_INSTALL_RPATH=$ORIGIN")
    return flags


def source_release(work: Path) -> Path:
    """Unpack the llama-cpp-python source release matching the installed bindings."""
    version = metadata.version("llama_cpp_python")
    tree = work / f"llama_cpp_python-{version}"
    if (tree / "vendor" / "llama.cpp" / "CMakeLists.txt").exists():
        return tree
    work.mkdir(parents=True, exist_ok=True)
    archive = work / f"llama_cpp_python-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
             "--no-binary", ":all:", "-d", str(work), f"llama-cpp-python=={version}"],
            check=True,
        )  # fmt: skip
    with tarfile.open(archive) as tar:
        tar.extractall(work, filter="data")
    return tree


def build(out: Path, work: Path | None = None, jobs: int | None = None) -> Path:
    """Build the engine into ``out/lib`` (reused when already built) and return that folder."""
    lib_dir = out / "lib"
    stamp = out / "engine-built.txt"
    version = metadata.version("llama_cpp_python")
    if stamp.exists() and stamp.read_text().strip() == version:
        return lib_dir
    work = work or out / "src"
    tree = source_release(work)
    build_dir = out / "cmake"
    flags = COMMON_FLAGS + platform_flags(platform.system(), platform.machine())
    generator = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(
        ["cmake", "-S", str(tree / "vendor" / "llama.cpp"), "-B", str(build_dir), *generator,
         *flags],
        check=True,
    )  # fmt: skip
    jobs = jobs or os.cpu_count() or 2
    subprocess.run(
        ["cmake", "--build", str(build_dir), "--config", "Release", "--target", "llama", "ggml",
         "-j", str(jobs)],
        check=True,
    )  # fmt: skip
    if lib_dir.exists():
        shutil.rmtree(lib_dir)
    lib_dir.mkdir(parents=True)
    for name, path in shipped_names(_built_libraries(build_dir)).items():
        shutil.copy2(path, lib_dir / name, follow_symlinks=True)
    stamp.write_text(version + "\n")
    return lib_dir


def _built_libraries(build_dir: Path) -> list[Path]:
    patterns = ["**/*.so", "**/*.so.*", "**/*.dylib", "**/*.dll"]
    found: set[Path] = set()
    for pattern in patterns:
        found |= {Path(p) for p in glob.glob(str(build_dir / pattern), recursive=True)}
    names = ("llama", "ggml", "mtmd")
    keep = [p for p in found if p.name.removeprefix("lib").startswith(names)]
    if not any("llama" in p.name for p in keep):
        raise SystemExit(f"no llama library was built under {build_dir}")
    return sorted(keep)


def shipped_names(paths: list[Path]) -> dict[str, Path]:
    """One real file per library, under the one name something asks for.

    CMake leaves libllama.so -> libllama.so.0 -> libllama.so.0.5.0. PyInstaller would keep
    only the last name, which nothing opens: ctypes opens ``libllama.so`` (llama_cpp's
    loader), the dynamic loader asks for the soname ``libggml.so.0`` (``libggml.0.dylib`` on
    macOS). Shipping each file once under that name also avoids three copies of each.
    """
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.resolve(), []).append(path)
    chosen: dict[str, Path] = {}
    for real, names in groups.items():
        by_name = {p.name: p for p in names}
        plain = [n for n in by_name if re.fullmatch(r"[^.]+\.(so|dylib|dll)", n)]
        soname = [n for n in by_name if re.fullmatch(r"[^.]+(\.so\.\d+|\.\d+\.dylib)", n)]
        if real.name.removeprefix("lib").startswith(("llama.", "mtmd.")) and plain:
            name = plain[0]  # opened by the Python bindings through ctypes
        else:
            name = (soname or plain or [real.name])[0]
        chosen[name] = real
    return chosen


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        raise SystemExit(2)
    print(build(Path(sys.argv[1]).resolve()))
