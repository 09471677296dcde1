"""Windows installer from the PyInstaller bundle, with Inno Setup 6.

Called by ``tools/build_installer.py windows`` on Windows. Needs ``iscc`` (Inno Setup's
compiler: ``winget install JRSoftware.InnoSetup`` or ``choco install innosetup``) on the PATH
or in its default folder.

Signing (optional, recommended: unsigned installers trip SmartScreen): set
``OA_WINDOWS_CERT`` (a .pfx file) and ``OA_WINDOWS_CERT_PASSWORD``; ``signtool`` (Windows SDK)
then signs both executables before they are packed, and the finished installer.
``OA_WINDOWS_TIMESTAMP_URL`` overrides the RFC 3161 timestamp server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISS = HERE / "windows" / "offline-assistant.iss"
EXECUTABLES = ("offline-assistant.exe", "OfflineAssistant.exe")
DEFAULT_TIMESTAMP = "http://timestamp.digicert.com"


def find_iscc() -> str:
    found = shutil.which("iscc")
    if found:
        return found
    for base in (os.environ.get("PROGRAMFILES(X86)"), os.environ.get("PROGRAMFILES")):
        if base and (Path(base) / "Inno Setup 6" / "ISCC.exe").exists():
            return str(Path(base) / "Inno Setup 6" / "ISCC.exe")
    raise SystemExit("Inno Setup 6 is not installed (winget install JRSoftware.InnoSetup)")


def sign(paths: list[Path]) -> bool:
    """Sign with signtool when a certificate is configured; False when signing is off."""
    cert = os.environ.get("OA_WINDOWS_CERT")
    if not cert:
        return False
    command = [
        "signtool", "sign", "/f", cert, "/fd", "sha256",
        "/tr", os.environ.get("OA_WINDOWS_TIMESTAMP_URL", DEFAULT_TIMESTAMP), "/td", "sha256",
    ]  # fmt: skip
    password = os.environ.get("OA_WINDOWS_CERT_PASSWORD")
    if password:
        command += ["/p", password]
    subprocess.run([*command, *map(str, paths)], check=True)
    return True


def build_installer(bundle: Path, out_dir: Path, version: str, icon: Path) -> Path:
    sign([bundle / name for name in EXECUTABLES])
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            find_iscc(),
            f"/DAppVersion={version}",
            f"/DSourceDir={bundle}",
            f"/DOutputDir={out_dir}",
            f"/DIconFile={icon}",
            str(ISS),
        ],
        check=True,
    )
    setup = out_dir / f"OfflineAssistant-{version}-setup.exe"
    sign([setup])
    return setup
