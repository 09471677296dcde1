"""Linux packages from the PyInstaller bundle: a .deb and a portable AppDir tarball.

Called by ``tools/build_installer.py linux``. Needs ``dpkg-deb`` (Debian/Ubuntu) and binutils'
``objdump``; ``dpkg-shlibdeps`` (dpkg-dev) when present computes the system libraries the .deb
depends on.

Layout of the .deb::

    /opt/offline-assistant/            the bundle (executable + _internal/)
    /usr/bin/offline-assistant         -> /opt/offline-assistant/offline-assistant
    /usr/share/applications/offline-assistant.desktop
    /usr/share/icons/hicolor/*/apps/offline-assistant.{png,svg}
    /usr/share/metainfo/io.github.offline_assistant.OfflineAssistant.metainfo.xml
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LINUX = HERE / "linux"
ICONS = ROOT / "assistant" / "resources" / "icons"
PACKAGE = "offline-assistant"
DESKTOP_FILE = LINUX / "offline-assistant.desktop"
METAINFO = LINUX / "io.github.offline_assistant.OfflineAssistant.metainfo.xml"
MAINTAINER = "Offline Assistant developers <offline-assistant@users.noreply.github.com>"
DESCRIPTION = """\
private AI assistant that runs small language models locally
 Offline Assistant downloads a small language model once, then answers
 without sending anything anywhere: a chat window, searchable history and
 a command line (offline-assistant ask). Runs on any x86-64 processor
 from 2009 on; uses the best instructions the processor has."""
# Used when dpkg-shlibdeps is not available (a non-Debian build host): what the bundle leaves
# to the system. PyInstaller never bundles glibc or the GL/EGL driver stack, and libstdc++ is
# left out on purpose (see bundle_rules.SYSTEM_RUNTIME).
FALLBACK_DEPENDS = [
    "libstdc++6 (>= 12)",
    "libgcc-s1",
    "libgl1",
    "libegl1",
    "libxcb1",
    "libfontconfig1",
    "libxkbcommon0",
    "libdbus-1-3",
    "libexpat1",
]


def elf_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return sorted(found)


def strip_bundle(folder: Path) -> int:
    """Strip the symbol tables PyInstaller left (libpython: 23 MB -> 5 MB); returns bytes saved.

    Only files that still have a symbol table, and never one that auditwheel rewrote with
    patchelf (in a ``*.libs`` folder, or pointing its RUNPATH at one): stripping those breaks
    them. ``--strip-unneeded`` keeps what the dynamic loader needs, as Debian's dh_strip does.
    """
    saved = 0
    for path in elf_files(folder):
        if any(part.endswith(".libs") for part in path.parts):
            continue
        info = subprocess.run(
            ["readelf", "-S", "-d", str(path)], capture_output=True, text=True
        ).stdout
        if ".symtab" not in info or re.search(r"R(UN)?PATH.*\.libs", info):
            continue
        before = path.stat().st_size
        subprocess.run(["strip", "--strip-unneeded", str(path)], check=True)
        saved += before - path.stat().st_size
    return saved


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def min_glibc(folder: Path) -> str:
    """The newest GLIBC_x.y symbol version any ELF file in ``folder`` asks for.

    That is the oldest glibc the bundle runs on: the build host's glibc is a ceiling, not the
    requirement, because most binaries (the manylinux wheels) were built against older ones.
    """
    newest = "2.2.5"
    files = [str(p) for p in elf_files(folder)]
    for start in range(0, len(files), 200):
        out = subprocess.run(
            ["objdump", "-p", *files[start : start + 200]],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for found in re.findall(r"\bGLIBC_(\d+\.\d+(?:\.\d+)?)\b", out):
            if version_key(found) > version_key(newest):
                newest = found
    return newest


def shlib_depends(bundle: Path) -> list[str] | None:
    """System packages the bundle's binaries need, from dpkg-shlibdeps; None if unavailable."""
    # Only a Debian-family host knows which Debian package provides each system library.
    if not shutil.which("dpkg-shlibdeps") or not Path("/etc/debian_version").exists():
        return None
    bundled_dirs = sorted({str(p.parent) for p in elf_files(bundle)})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "debian").mkdir()
        (Path(tmp) / "debian" / "control").write_text(
            f"Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: amd64\n"
        )
        result = subprocess.run(
            [
                "dpkg-shlibdeps",
                "-O",
                "--ignore-missing-info",
                "--warnings=0",
                *(f"-l{d}" for d in bundled_dirs),
                *(f"-e{p}" for p in elf_files(bundle)),
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
    match = re.search(r"shlibs:Depends=(.*)", result.stdout)
    if result.returncode != 0 or not match:
        errors = [line for line in result.stderr.splitlines() if "error" in line]
        print(
            "dpkg-shlibdeps failed; using the fixed list of dependencies:", *errors[:10], sep="\n"
        )
        return None
    return [dep.strip() for dep in match.group(1).split(",") if dep.strip()]


# Part of glibc itself: covered by the libc6 floor.
GLIBC_SONAMES = {"libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
                 "libutil.so.1", "libresolv.so.2", "ld-linux-x86-64.so.2"}  # fmt: skip


def system_sonames(bundle: Path) -> set[str]:
    """Libraries the bundle's binaries need and do not carry: the system must provide them."""
    needed: set[str] = set()
    files = [str(p) for p in elf_files(bundle)]
    for start in range(0, len(files), 200):
        out = subprocess.run(
            ["objdump", "-p", *files[start : start + 200]], capture_output=True, text=True
        ).stdout
        needed |= set(re.findall(r"^\s+NEEDED\s+(\S+)$", out, re.MULTILINE))
    bundled = {p.name for p in bundle.rglob("*")}
    return needed - bundled - GLIBC_SONAMES


def packages_for(sonames: set[str]) -> list[str] | None:
    """The Debian packages holding ``sonames`` on this host; None when that cannot be told."""
    if not shutil.which("dpkg") or not shutil.which("ldconfig"):
        return None
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    paths = dict(re.findall(r"^\s+(\S+) \(libc6,x86-64\S*\) => (\S+)$", cache, re.MULTILINE))
    packages = set()
    for soname in sorted(sonames):
        if soname not in paths:
            print(f"warning: {soname} is needed but not installed on this host")
            continue
        path = paths[soname]
        # Merged /usr: ldconfig may say /lib where dpkg recorded /usr/lib, or the reverse.
        candidates = [path, "/usr" + path if path.startswith("/lib") else path[4:]]
        for candidate in candidates:
            owner = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if owner.returncode == 0:
                break
        if owner.returncode == 0:
            packages.add(owner.stdout.split(":")[0].strip())
    return sorted(packages)


def depends_line(bundle: Path) -> tuple[str, str]:
    """(Depends: value, minimum glibc).

    Only what the bundle leaves to the system: dpkg-shlibdeps alone would also list the
    packages of the libraries the bundle carries, with the build host's minimum versions
    (libssl3 >= 3.0.3 would keep the package off Ubuntu 22.04, which does not need it).
    """
    glibc = min_glibc(bundle)
    packages = packages_for(system_sonames(bundle))
    if packages is None:
        deps = FALLBACK_DEPENDS
    else:
        # Minimum versions, where dpkg-shlibdeps knows them, for the packages that remain.
        versions = {d.split(" ")[0]: d for d in shlib_depends(bundle) or []}
        deps = [versions.get(name, name) for name in packages if name != "libc6"]
    return ", ".join([f"libc6 (>= {glibc})", *deps]), glibc


def _tree_size_kib(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return (total + 1023) // 1024


def build_deb(bundle: Path, out_dir: Path, version: str) -> tuple[Path, str]:
    """Build ``offline-assistant_<version>_amd64.deb``; returns its path and the Depends line."""
    depends, _glibc = depends_line(bundle)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        opt = root / "opt" / PACKAGE
        shutil.copytree(bundle, opt, symlinks=True)
        (root / "usr" / "bin").mkdir(parents=True)
        os.symlink(f"/opt/{PACKAGE}/{PACKAGE}", root / "usr" / "bin" / PACKAGE)
        share = root / "usr" / "share"
        _install(DESKTOP_FILE, share / "applications" / f"{PACKAGE}.desktop")
        _install(METAINFO, share / "metainfo" / METAINFO.name)
        for png in ICONS.glob("app-*.png"):
            size = png.stem.split("-")[1]
            _install(
                png, share / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{PACKAGE}.png"
            )
        _install(
            ICONS / "app.svg", share / "icons" / "hicolor" / "scalable" / "apps" / f"{PACKAGE}.svg"
        )
        doc = share / "doc" / PACKAGE
        doc.mkdir(parents=True)
        (doc / "copyright").write_text(
            "Offline Assistant\nLicense: Apache-2.0\n"
            "The bundled third-party components (Python, Qt/PySide6, llama.cpp, numpy and\n"
            f"others) keep their own licences; their notices are under /opt/{PACKAGE}/_internal.\n"
        )
        control = root / "DEBIAN" / "control"
        control.parent.mkdir()
        control.write_text(
            f"Package: {PACKAGE}\n"
            f"Version: {version}\n"
            "Section: utils\n"
            "Priority: optional\n"
            "Architecture: amd64\n"
            f"Maintainer: {MAINTAINER}\n"
            f"Installed-Size: {_tree_size_kib(root)}\n"
            f"Depends: {depends}\n"
            "Homepage: https://github.com/offline-assistant/offline-assistant\n"
            f"Description: {DESCRIPTION}\n"
        )
        # Desktop databases and icon caches refresh through dpkg triggers on current systems.
        for path in root.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        out_dir.mkdir(parents=True, exist_ok=True)
        deb = out_dir / f"{PACKAGE}_{version}_amd64.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", "-z9", "--build", str(root), str(deb)],
            check=True,
        )
    return deb, depends


def _install(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


APPRUN = """#!/bin/sh
# Portable Offline Assistant: run from wherever this folder was unpacked.
here="$(dirname "$(readlink -f "$0")")"
exec "$here/offline-assistant" "$@"
"""


def build_tarball(bundle: Path, out_dir: Path, version: str) -> Path:
    """An AppDir (AppRun, .desktop, icon at the top) packed as .tar.xz.

    The folder is also a valid input for appimagetool, should an AppImage be wanted.
    """
    name = f"{PACKAGE}-{version}-linux-x86_64"
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / f"{name}.tar.xz"
    with tempfile.TemporaryDirectory() as tmp:
        appdir = Path(tmp) / name
        shutil.copytree(bundle, appdir, symlinks=True)
        (appdir / "AppRun").write_text(APPRUN)
        (appdir / "AppRun").chmod(0o755)
        shutil.copy2(DESKTOP_FILE, appdir / f"{PACKAGE}.desktop")
        shutil.copy2(ICONS / "app-256.png", appdir / f"{PACKAGE}.png")
        os.symlink(f"{PACKAGE}.png", appdir / ".DirIcon")
        with tarfile.open(archive, "w:xz") as tar:
            tar.add(appdir, arcname=name)
    return archive
