"""Render the app icon from its SVG source into the files each platform wants.

    python packaging/make_icons.py            # PNGs into assistant/resources/icons/ (committed)
    python packaging/make_icons.py OUT_DIR    # also app.ico and app.icns into OUT_DIR

The source is ``assistant/resources/icons/app.svg``. The PNGs (the hicolor theme's sizes) are
committed next to it because they are small and the Linux package installs them as they are; the
Windows ``.ico`` and macOS ``.icns`` are containers of the same PNGs, written at build time by
``tools/build_installer.py`` so no derived binary has to be kept in step in git.

Qt's SVG renderer (PySide6, already a dependency of the app) rasterises the SVG; the two
containers are simple enough to write with ``struct``: both accept PNG data for every entry.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ICONS = ROOT / "assistant" / "resources" / "icons"
SVG = ICONS / "app.svg"

# The sizes of the hicolor icon theme that matter for an app icon (menus to app grids).
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# icns entry type -> pixel size. The @2x types (ic11..ic14) reuse the next size up.
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),
    (b"icp6", 64),
    (b"ic12", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),
    (b"ic09", 512),
    (b"ic14", 512),
    (b"ic10", 1024),
)


def png_name(size: int) -> str:
    return f"app-{size}.png"


def render_pngs(svg: Path, sizes: tuple[int, ...]) -> dict[int, bytes]:
    """Rasterise ``svg`` at each size and return the PNG bytes."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication([])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg}")
    out: dict[int, bytes] = {}
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        data = QByteArray()
        buffer = QBuffer(data)
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        # The stubs say bytes, the binding wants str (PySide6 6.11).
        image.save(buffer, "PNG")  # type: ignore[call-overload]
        buffer.close()
        out[size] = bytes(data.data())
    return out


def ico_bytes(pngs: dict[int, bytes]) -> bytes:
    """A Windows .ico holding each PNG (Vista and later read PNG entries at every size)."""
    sizes = sorted(pngs)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = 6 + 16 * len(sizes)
    entries = b""
    body = b""
    for size in sizes:
        data = pngs[size]
        dim = 0 if size >= 256 else size  # 0 means 256 in the directory entry
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset + len(body))
        body += data
    return header + entries + body


def icns_bytes(pngs: dict[int, bytes]) -> bytes:
    """A macOS .icns: a big-endian list of (type, length, PNG) blocks."""
    body = b""
    for kind, size in ICNS_TYPES:
        data = pngs[size]
        body += kind + struct.pack(">I", 8 + len(data)) + data
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def write_pngs(folder: Path = ICONS) -> list[Path]:
    written = []
    for size, data in render_pngs(SVG, PNG_SIZES).items():
        path = folder / png_name(size)
        path.write_bytes(data)
        written.append(path)
    return written


def write_containers(out: Path) -> tuple[Path, Path]:
    """Write ``app.ico`` and ``app.icns`` into ``out`` and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    pngs = render_pngs(SVG, tuple(sorted(set(ICO_SIZES) | {s for _, s in ICNS_TYPES})))
    ico = out / "app.ico"
    icns = out / "app.icns"
    ico.write_bytes(ico_bytes({s: pngs[s] for s in ICO_SIZES}))
    icns.write_bytes(icns_bytes(pngs))
    return ico, icns


def main(argv: list[str]) -> int:
    for path in write_pngs():
        print(path.relative_to(ROOT))
    if argv:
        for path in write_containers(Path(argv[0])):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
