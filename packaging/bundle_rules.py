"""What goes into the PyInstaller bundle, and what is left out (used by offline-assistant.spec).

Kept apart from the spec so the rules can be read and tested without running PyInstaller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

# Qt modules of the PySide6 wheel the app has no use for. QtCore/QtGui/QtWidgets/QtSvg are
# used; QtNetwork and QtDBus stay possible (local sockets, the tray on Linux).
_UNUSED_QT = """
    Qt3DAnimation Qt3DCore Qt3DExtras Qt3DInput Qt3DLogic Qt3DRender QtBluetooth QtCharts
    QtConcurrent QtDataVisualization QtDesigner QtGraphs QtGraphsWidgets QtHelp QtHttpServer
    QtLocation QtMultimedia QtMultimediaWidgets QtNfc QtOpenGL QtOpenGLWidgets QtPdf
    QtPdfWidgets QtPositioning QtPrintSupport QtQml QtQuick QtQuick3D QtQuickControls2
    QtQuickTest QtQuickWidgets QtRemoteObjects QtScxml QtSensors QtSerialBus QtSerialPort
    QtSpatialAudio QtSql QtStateMachine QtSvgWidgets QtTest QtTextToSpeech QtUiTools
    QtWebChannel QtWebEngineCore QtWebEngineQuick QtWebEngineWidgets QtWebSockets QtWebView QtXml
"""
# Python packages the app never imports but that analysis would follow through optional imports.
EXCLUDED_MODULES = [
    "tkinter",
    "_tkinter",
    "idlelib",
    "lib2to3",
    "pydoc_data",
    "test",
    "IPython",
    "matplotlib",
    "PIL",
    "pandas",
    "scipy",
    "torch",
    "tensorflow",
    "numpy.f2py",
    "numpy.distutils",
    # llama-cpp-python's OpenAI-compatible server (FastAPI); the app has its own front ends.
    "llama_cpp.server",
    # Development tools that optional imports of pydantic and anyio would drag in.
    "mypy",
    "hypothesis",
    "pytest",
    "_pytest",
    "py",
    "rich",
    # The OpenAI SDK and pydantic (9 MB of Python, a 5 MB extension): llama-cpp-python imports
    # the SDK only in create_chat_completion_openai_v1 and huggingface_hub pydantic only for
    # webhooks, neither of which the app calls. A feature that imports one of these must take
    # it off this list (tests/test_packaging.py fails until it does).
    "openai",
    "pydantic",
    "pydantic_core",
    "jiter",
    # Hugging Face's Xet transfer client (11 MB): the app downloads with its own resumable
    # transfer; huggingface_hub runs without it.
    "hf_xet",
    *(f"PySide6.{name}" for name in _UNUSED_QT.split()),
]

# Imported only at run time by Qt (the SVG app icon goes through the SVG image/icon plugins).
EXTRA_IMPORTS = ["PySide6.QtSvg"]

# Qt plugin folders the app never loads: designer/QML tooling, embedded-Linux input and display
# back ends, SQL drivers, printing, network-status back ends, the Wayland *compositor* side.
DROPPED_PLUGIN_FOLDERS = {
    "designer",
    "egldeviceintegrations",
    "generic",
    "networkinformation",
    "printsupport",
    "qmllint",
    "qmltooling",
    "sqldrivers",
    "vectorimageformats",
    "wayland-graphics-integration-server",
}
# Single plugins left out: image formats the app never shows (pdf pulls in QtPdf), the
# virtual keyboard (pulls in Qt Quick), the GTK 3 theme (would drag GTK into the bundle; the
# XDG portal theme still gives native file dialogs), embedded-display platforms.
DROPPED_PLUGINS = {
    "qpdf",
    "qtiff",
    "qwebp",
    "qtga",
    "qwbmp",
    "qtvirtualkeyboardplugin",
    "qgtk3",
    "qeglfs",
    "qlinuxfb",
    "qminimalegl",
    "qvnc",
    "qvkkhrdisplay",
    "wl-shell-plugin",  # the obsolete wl_shell protocol; xdg-shell is what compositors speak
}
# Qt libraries only the dropped plugins and modules need.
DROPPED_QT_LIBS = re.compile(
    r"Qt6(Pdf|Quick|Qml|VirtualKeyboard|EglFS|EglFs|Labs|Lottie|Designer|Help|ShaderTools|"
    r"WaylandCompositor|WlShellIntegration|OpenGLWidgets|Sql|Test)"
)
# Linux: left to the system. The C++ runtime: every desktop has a new enough one, and a
# bundled old libstdc++ breaks the GPU drivers Qt loads, which need the system's. Expat: ABI
# stable for twenty years, and the build host's copy alone would raise the glibc floor (2.36
# on Debian 12, where everything else needs at most 2.35, the glibc of Ubuntu 22.04).
SYSTEM_RUNTIME = re.compile(r"^(libstdc\+\+\.so|libgcc_s\.so|libexpat\.so)")


def version(root: Path) -> str:
    """The app's version, read from the source without importing it."""
    text = (root / "assistant" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        raise ValueError("no __version__ in assistant/__init__.py")
    return match.group(1)


def package_modules(root: Path) -> list[str]:
    """Every module of the ``assistant`` package, including ones imported lazily."""
    package = root / "assistant"
    names = []
    for path in sorted(package.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


def package_data(root: Path) -> list[tuple[str, str]]:
    """(source file, folder in the bundle) for every non-Python file of the package."""
    package = root / "assistant"
    out = []
    for path in sorted(package.rglob("*")):
        if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
            continue
        out.append((str(path), str(path.parent.relative_to(root))))
    return out


def _plugin_kept(dest: PurePosixPath) -> bool:
    parts = dest.parts
    if "plugins" not in parts:
        return True
    index = parts.index("plugins")
    if len(parts) <= index + 2:
        return True
    folder = parts[index + 1]
    if folder in DROPPED_PLUGIN_FOLDERS:
        return False
    stem = dest.name.split(".")[0].removeprefix("lib")
    return stem not in DROPPED_PLUGINS


def keep(dest_name: str, source: str, engine_lib: Path, system: str) -> bool:
    """Whether one entry of PyInstaller's table of contents goes into the bundle."""
    dest = PurePosixPath(dest_name.replace("\\", "/"))
    name = dest.name
    # llama.cpp comes only from the portable build, never from the virtualenv.
    if dest.parts[:2] == ("llama_cpp", "lib") or re.match(r"^(lib)?(llama|ggml|mtmd)", name):
        return Path(source).resolve().parent == engine_lib
    if "translations" in dest.parts and "Qt" in dest.parts:
        return False  # the app's text is English; Qt's own strings need no catalogue
    if not _plugin_kept(dest):
        return False
    if DROPPED_QT_LIBS.search(name):
        return False
    return not (system == "Linux" and SYSTEM_RUNTIME.match(name))


TocEntry = tuple[str, str, str]


def filter_toc(
    toc: Iterable[TocEntry], engine_lib: Path, system: str | None = None
) -> tuple[list[TocEntry], list[TocEntry]]:
    """Split PyInstaller's table of contents into (kept, dropped)."""
    import platform

    system = system or platform.system()
    kept: list[TocEntry] = []
    dropped: list[TocEntry] = []
    for entry in toc:
        (kept if keep(entry[0], entry[1], engine_lib, system) else dropped).append(entry)
    return kept, dropped


def prune_orphans(
    kept: list[TocEntry],
    dropped: list[TocEntry],
    get_imports: Callable[[str], Iterable[tuple[str, str | None]]],
) -> list[TocEntry]:
    """Leave out the libraries that only dropped binaries needed.

    PyInstaller collected the dependencies of every plugin before the rules above dropped
    some (the GTK 3 theme plugin alone brings GTK, cairo and pango). A library at the top of
    the bundle that a dropped binary needs and no kept binary needs goes too. ``get_imports``
    is PyInstaller's ``bindepend.get_imports`` (ldd on Linux: transitive).
    """

    def needs(entries: list[TocEntry]) -> set[str] | None:
        names: set[str] = set()
        for _dest, source, kind in entries:
            if kind not in {"BINARY", "EXTENSION"}:
                continue
            try:
                names |= {PurePosixPath(name).name for name, _ in get_imports(source)}
            except Exception:
                return None  # cannot tell what this one needs: prune nothing
        return names

    def top_level_name(entry: TocEntry) -> str | None:
        dest = entry[0].replace("\\", "/")
        return None if "/" in dest else dest

    def closure(start: set[str] | None) -> set[str] | None:
        # get_imports lists direct dependencies on Windows and macOS: follow them through the
        # top-level libraries until nothing new turns up.
        names = start
        while names is not None:
            more = needs([e for e in kept if top_level_name(e) in names])
            if more is None:
                return None
            if more <= names:
                break
            names = names | more
        return names

    from_dropped = closure(needs(dropped))
    if not from_dropped:
        return kept
    candidates = [e for e in kept if top_level_name(e) in from_dropped]
    others = [e for e in kept if top_level_name(e) not in from_dropped]
    needed = closure(needs(others))
    if needed is None:
        return kept
    return [e for e in kept if e not in candidates or top_level_name(e) in needed]
