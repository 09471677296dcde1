"""macOS disk image from the PyInstaller .app, with optional signing and notarization.

Called by ``tools/build_installer.py macos`` on a Mac. Needs ``dmgbuild`` (``pip install
.[build]``); signing needs Xcode's command line tools.

Environment:

- ``OA_MACOS_SIGN_IDENTITY``: a "Developer ID Application: Name (TEAMID)" identity in the
  keychain. Every library and executable in the .app is signed with the hardened runtime and
  ``packaging/macos/entitlements.plist``, then the .app, then the .dmg. Unset: ad-hoc signing
  (runs on the build Mac; elsewhere Gatekeeper asks the user to allow it in System Settings).
- Notarization (needs a signing identity), either ``OA_MACOS_NOTARY_PROFILE`` (a profile saved
  with ``xcrun notarytool store-credentials``) or ``OA_MACOS_APPLE_ID``, ``OA_MACOS_TEAM_ID``
  and ``OA_MACOS_APP_PASSWORD`` (an app-specific password). The ticket is stapled to the .dmg,
  so it opens offline without a warning.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DMG_SETTINGS = HERE / "macos" / "dmg_settings.py"
ENTITLEMENTS = HERE / "macos" / "entitlements.plist"
MACHO_MAGIC = {
    b"\xcf\xfa\xed\xfe",  # 64-bit
    b"\xce\xfa\xed\xfe",  # 32-bit
    b"\xca\xfe\xba\xbe",  # universal
}


def _is_macho(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) in MACHO_MAGIC


def sign_app(app: Path) -> str:
    """Sign inside-out (libraries, then executables, then the bundle); returns the identity."""
    identity = os.environ.get("OA_MACOS_SIGN_IDENTITY", "-")
    base = ["codesign", "--force", "--sign", identity]
    if identity != "-":
        base += ["--options", "runtime", "--timestamp", "--entitlements", str(ENTITLEMENTS)]
    nested = [p for p in app.rglob("*") if p.is_file() and not p.is_symlink() and _is_macho(p)]
    # Deepest first, so a folder's contents are signed before anything that seals them.
    for path in sorted(nested, key=lambda p: len(p.parts), reverse=True):
        subprocess.run([*base, str(path)], check=True)
    subprocess.run([*base, str(app)], check=True)
    subprocess.run(["codesign", "--verify", "--strict", "--verbose=2", str(app)], check=True)
    return identity


def notarize(dmg: Path) -> bool:
    """Submit to Apple's notary service and staple the ticket; False when not configured."""
    profile = os.environ.get("OA_MACOS_NOTARY_PROFILE")
    if profile:
        auth = ["--keychain-profile", profile]
    elif all(os.environ.get(k) for k in ("OA_MACOS_APPLE_ID", "OA_MACOS_TEAM_ID",
                                           "OA_MACOS_APP_PASSWORD")):  # fmt: skip
        auth = [
            "--apple-id", os.environ["OA_MACOS_APPLE_ID"],
            "--team-id", os.environ["OA_MACOS_TEAM_ID"],
            "--password", os.environ["OA_MACOS_APP_PASSWORD"],
        ]  # fmt: skip
    else:
        return False
    subprocess.run(["xcrun", "notarytool", "submit", str(dmg), *auth, "--wait"], check=True)
    subprocess.run(["xcrun", "stapler", "staple", str(dmg)], check=True)
    return True


def build_dmg(app: Path, out_dir: Path, version: str) -> Path:
    identity = sign_app(app)
    out_dir.mkdir(parents=True, exist_ok=True)
    dmg = out_dir / f"OfflineAssistant-{version}.dmg"
    subprocess.run(
        [sys.executable, "-m", "dmgbuild", "-s", str(DMG_SETTINGS), "-D", f"app={app}",
         "Offline Assistant", str(dmg)],
        check=True,
    )  # fmt: skip
    if identity != "-":
        subprocess.run(["codesign", "--force", "--sign", identity, "--timestamp", str(dmg)],
                       check=True)  # fmt: skip
        notarize(dmg)
    return dmg
