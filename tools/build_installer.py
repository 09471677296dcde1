#!/usr/bin/env python3
"""Build Offline Assistant's installer for one operating system, on that operating system.

    python tools/build_installer.py linux     # dist/offline-assistant_<v>_amd64.deb
                                              # dist/offline-assistant-<v>-linux-x86_64.tar.xz
    python tools/build_installer.py windows   # dist/OfflineAssistant-<v>-setup.exe
    python tools/build_installer.py macos     # dist/OfflineAssistant-<v>.dmg

Run it with the Python that has the app and the build tools installed (``pip install -e
'.[build]'``): the bundle is frozen from that environment. Steps:

1. the icons (``packaging/make_icons.py``: PNGs, app.ico, app.icns);
2. a portable llama.cpp from the same release as the installed llama-cpp-python, without
   native CPU flags (``packaging/portable_engine.py``; cached in ``build/engine``);
3. the one-folder bundle (PyInstaller, ``packaging/offline-assistant.spec``) in ``dist/bundle``;
4. the OS package (``packaging/build_linux.py``, ``build_windows.py``, ``build_macos.py``).

``--reuse-bundle`` skips 1-3 when ``dist/bundle`` exists (to repackage only).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import bundle_rules  # noqa: E402

SYSTEMS = {"linux": "Linux", "windows": "Windows", "macos": "Darwin"}


def _mb(path: Path) -> str:
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    else:
        size = path.stat().st_size
    return f"{size / 1e6:.1f} MB"


def check_tools(target: str) -> None:
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise SystemExit(
            f"PyInstaller is not installed for {sys.executable}; run: "
            f"{sys.executable} -m pip install -e '.[build]'"
        ) from None
    linux = ["dpkg-deb", "objdump", "readelf", "strip"]
    needed = ["cmake"] + {"linux": linux, "windows": [], "macos": []}[target]
    missing = [tool for tool in needed if not shutil.which(tool)]
    if missing:
        raise SystemExit(f"missing build tools: {', '.join(missing)}")


def build_bundle(build: Path, dist: Path, jobs: int | None) -> Path:
    import make_icons
    import portable_engine

    icons = build / "icons"
    make_icons.write_pngs()
    make_icons.write_containers(icons)
    step = time.monotonic()
    engine_lib = portable_engine.build(build / "engine", jobs=jobs)
    print(f"engine: {engine_lib} ({time.monotonic() - step:.0f} s)", flush=True)
    env = dict(
        os.environ,
        OA_ENGINE_LIB=str(engine_lib),
        OA_ICON_DIR=str(icons),
        # The source tree, not an installed copy, is what gets frozen.
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
    )
    env.pop("LLAMA_CPP_LIB_PATH", None)
    subprocess.run(
        [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
            "--distpath", str(dist / "bundle"), "--workpath", str(build / "pyinstaller"),
            str(PACKAGING / "offline-assistant.spec"),
        ],
        check=True,
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    return dist / "bundle"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=sorted(SYSTEMS))
    parser.add_argument("--dist", type=Path, default=ROOT / "dist", help="output folder")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="work folder")
    parser.add_argument("--jobs", type=int, help="parallel compile jobs for llama.cpp")
    parser.add_argument("--reuse-bundle", action="store_true", help="package dist/bundle as is")
    args = parser.parse_args(argv)
    if platform.system() != SYSTEMS[args.target]:
        parser.error(f"a {args.target} installer is built on {args.target} (see README)")
    check_tools(args.target)
    dist: Path = args.dist.resolve()
    version = bundle_rules.version(ROOT)
    bundles = dist / "bundle"
    if not (args.reuse_bundle and bundles.exists()):
        bundles = build_bundle(args.build.resolve(), dist, args.jobs)
    print(f"bundle: {_mb(bundles)} in {bundles}")
    outputs: list[Path] = []
    if args.target == "linux":
        import build_linux

        bundle = bundles / "offline-assistant"
        saved = build_linux.strip_bundle(bundle)
        print(f"stripped: {saved / 1e6:.1f} MB of symbol tables")
        deb, depends = build_linux.build_deb(bundle, dist, version)
        print(f"Depends: {depends}")
        outputs += [deb, build_linux.build_tarball(bundle, dist, version)]
    elif args.target == "windows":
        import build_windows

        outputs.append(
            build_windows.build_installer(
                bundles / "offline-assistant",
                dist,
                version,
                args.build.resolve() / "icons" / "app.ico",
            )
        )
    else:
        import build_macos

        outputs.append(build_macos.build_dmg(bundles / "Offline Assistant.app", dist, version))
    for path in outputs:
        print(f"{path.name}: {_mb(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
