"""The installer recipes in packaging/: what can be checked without building an installer.

The tests at the end run the *built* bundle and are opt-in: build it with
``python tools/build_installer.py linux``, unpack the .deb (``dpkg-deb -x dist/*.deb ROOT``)
and point ``OA_TEST_BUNDLE`` at the folder holding the ``offline-assistant`` executable
(``ROOT/opt/offline-assistant``). The normal suite never builds installers.
"""

from __future__ import annotations

import configparser
import json
import os
import plistlib
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import assistant
from assistant import autostart

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))

import build_linux  # noqa: E402
import bundle_rules  # noqa: E402
import launcher  # noqa: E402
import make_icons  # noqa: E402
import portable_engine  # noqa: E402

BUNDLE = os.environ.get("OA_TEST_BUNDLE")
needs_bundle = pytest.mark.skipif(not BUNDLE, reason="set OA_TEST_BUNDLE to a built bundle")
SPEC = (PACKAGING / "offline-assistant.spec").read_text()
ISS = (PACKAGING / "windows" / "offline-assistant.iss").read_text()


# --- what the bundle takes ---------------------------------------------------------------


def test_bundle_takes_every_module_and_data_file_of_the_package() -> None:
    modules = bundle_rules.package_modules(ROOT)
    for name in ("assistant", "assistant.cli", "assistant.ui.app", "assistant.engine.local"):
        assert name in modules
    data = {Path(source).relative_to(ROOT).as_posix(): dest for source, dest in
            bundle_rules.package_data(ROOT)}  # fmt: skip
    assert data["assistant/data/models.toml"] == "assistant/data"
    assert data["assistant/resources/icons/app.svg"] == "assistant/resources/icons"
    assert data["assistant/resources/styles/app.qss"] == "assistant/resources/styles"
    assert not [name for name in data if name.endswith((".py", ".pyc"))]
    assert all(Path(source).is_file() for source, _ in bundle_rules.package_data(ROOT))


def test_spec_takes_the_package_generically_and_the_portable_engine() -> None:
    assert "bundle_rules.package_modules(ROOT)" in SPEC
    assert "bundle_rules.package_data(ROOT)" in SPEC
    assert '"llama_cpp/lib"' in SPEC
    assert "launcher.py" in SPEC
    assert "upx=False" in SPEC


def test_engine_libraries_come_only_from_the_portable_build(tmp_path: Path) -> None:
    engine = tmp_path / "engine"
    venv_lib = "/venv/site-packages/llama_cpp/lib"
    keep = bundle_rules.keep
    assert keep("llama_cpp/lib/libllama.so", str(engine / "libllama.so"), engine, "Linux")
    assert keep("libggml-base.so.0", str(engine / "libggml-base.so.0"), engine, "Linux")
    assert not keep("llama_cpp/lib/libllama.so", f"{venv_lib}/libllama.so", engine, "Linux")
    assert not keep("libggml-cpu.so", f"{venv_lib}/libggml-cpu.so", engine, "Linux")


def test_engine_ships_each_library_once_under_the_name_that_is_opened(tmp_path: Path) -> None:
    for real, links in {
        "libllama.so.0.5.0": ["libllama.so.0", "libllama.so"],
        "libggml.so.0.25.3": ["libggml.so.0", "libggml.so"],
        "libggml-base.so.0.25.3": ["libggml-base.so.0", "libggml-base.so"],
        "libggml-cpu-haswell.so": [],
        "libggml-base.0.25.3.dylib": ["libggml-base.0.dylib", "libggml-base.dylib"],
        "libllama.0.5.0.dylib": ["libllama.0.dylib", "libllama.dylib"],
    }.items():
        (tmp_path / real).write_bytes(b"\x7fELF")
        for link in links:
            (tmp_path / link).symlink_to(real)
    names = portable_engine.shipped_names(sorted(tmp_path.iterdir()))
    assert sorted(names) == [
        "libggml-base.0.dylib",  # macOS install name
        "libggml-base.so.0",  # the soname the loader asks for
        "libggml-cpu-haswell.so",  # a CPU variant, found by ggml's own scan
        "libggml.so.0",  # opened by the launcher (launcher.load_engine_backends)
        "libllama.dylib",
        "libllama.so",  # opened by llama_cpp through ctypes
    ]
    assert names["libllama.so"] == tmp_path / "libllama.so.0.5.0"


@pytest.mark.parametrize(
    ("dest", "kept"),
    [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", True),
        ("PySide6/Qt/plugins/platforms/libqwayland.so", True),
        ("PySide6/Qt/plugins/imageformats/libqsvg.so", True),
        ("PySide6/Qt/plugins/iconengines/libqsvgicon.so", True),
        ("PySide6/Qt/plugins/imageformats/libqpdf.so", False),
        ("PySide6/Qt/plugins/platforminputcontexts/libqtvirtualkeyboardplugin.so", False),
        ("PySide6/Qt/plugins/designer/libPySidePlugin.so", False),
        ("PySide6/Qt/plugins/platformthemes/libqgtk3.so", False),
        ("PySide6/Qt/translations/qtbase_de.qm", False),
        ("PySide6/Qt/lib/libQt6Quick.so.6", False),
        ("PySide6/Qt/lib/libQt6Pdf.so.6", False),
        ("PySide6/Qt/lib/libQt6Widgets.so.6", True),
        ("PySide6/Qt/lib/libQt6Svg.so.6", True),
        ("PySide6/Qt/lib/libQt6Network.so.6", True),
        ("libstdc++.so.6", False),
        ("libgcc_s.so.1", False),
        ("libexpat.so.1", False),
        ("numpy.libs/libscipy_openblas64_.so", True),
    ],
)
def test_unused_qt_parts_are_left_out(tmp_path: Path, dest: str, kept: bool) -> None:
    assert bundle_rules.keep(dest, f"/src/{dest}", tmp_path, "Linux") is kept


def test_libraries_only_dropped_plugins_needed_are_left_out() -> None:
    imports = {
        # Direct dependencies only, as on Windows and macOS.
        "/q/libqgtk3.so": ["libgtk-3.so.0", "libQt6Gui.so.6", "libfontconfig.so.1"],
        "/usr/lib/libgtk-3.so.0": ["libcairo.so.2", "libfreetype.so.6"],
        "/q/libqxcb.so": ["libQt6Gui.so.6", "libxcb-cursor.so.0"],
        "/q/libQt6Gui.so.6": ["libfontconfig.so.1"],
        "/usr/lib/libfontconfig.so.1": ["libfreetype.so.6"],
    }
    kept = [
        ("PySide6/Qt/plugins/platforms/libqxcb.so", "/q/libqxcb.so", "BINARY"),
        ("libQt6Gui.so.6", "/q/libQt6Gui.so.6", "BINARY"),
        ("libgtk-3.so.0", "/usr/lib/libgtk-3.so.0", "BINARY"),
        ("libcairo.so.2", "/usr/lib/libcairo.so.2", "BINARY"),
        ("libxcb-cursor.so.0", "/usr/lib/libxcb-cursor.so.0", "BINARY"),
        ("libfontconfig.so.1", "/usr/lib/libfontconfig.so.1", "BINARY"),
        ("libfreetype.so.6", "/usr/lib/libfreetype.so.6", "BINARY"),
        ("libpython3.11.so.1.0", "/usr/lib/libpython3.11.so.1.0", "BINARY"),
    ]
    dropped = [("PySide6/Qt/plugins/platformthemes/libqgtk3.so", "/q/libqgtk3.so", "BINARY")]

    def get_imports(path: str) -> list[tuple[str, str | None]]:
        return [(name, None) for name in imports.get(path, [])]

    names = [dest for dest, _, _ in bundle_rules.prune_orphans(kept, dropped, get_imports)]
    assert "libgtk-3.so.0" not in names and "libcairo.so.2" not in names
    # freetype: needed by gtk (dropped) and by fontconfig, which Qt needs: kept.
    assert {
        "libQt6Gui.so.6",
        "libxcb-cursor.so.0",
        "libfontconfig.so.1",
        "libfreetype.so.6",
    } <= set(names)
    assert "libpython3.11.so.1.0" in names  # loaded by the bootloader, needed by no library

    def failing(path: str) -> list[tuple[str, str | None]]:
        raise OSError("ldd failed")

    assert bundle_rules.prune_orphans(kept, dropped, failing) == kept  # unsure: keep all


def test_windows_keeps_its_c_runtime(tmp_path: Path) -> None:
    assert bundle_rules.keep("libstdc++.so.6", "/x/libstdc++.so.6", tmp_path, "Windows")


def test_used_qt_modules_are_not_excluded() -> None:
    excluded = set(bundle_rules.EXCLUDED_MODULES)
    for module in ("QtCore", "QtGui", "QtWidgets", "QtSvg", "QtNetwork", "QtDBus"):
        assert f"PySide6.{module}" not in excluded
    assert "PySide6.QtQuick" in excluded


def test_the_app_imports_nothing_the_bundle_leaves_out() -> None:
    import ast

    excluded = set(bundle_rules.EXCLUDED_MODULES)
    for path in (ROOT / "assistant").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            else:
                continue
            for name in names:
                parts = name.split(".")
                prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
                assert not prefixes & excluded, f"{path.name} imports {name}: see bundle_rules"


def test_version_is_read_from_the_package() -> None:
    assert bundle_rules.version(ROOT) == assistant.__version__


# --- icons -------------------------------------------------------------------------------


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_committed_pngs_have_their_sizes() -> None:
    for size in make_icons.PNG_SIZES:
        data = (make_icons.ICONS / make_icons.png_name(size)).read_bytes()
        assert _png_size(data) == (size, size)


def test_ico_lists_each_png() -> None:
    pngs = {s: (make_icons.ICONS / make_icons.png_name(s)).read_bytes() for s in (16, 32, 256)}
    data = make_icons.ico_bytes(pngs)
    reserved, kind, count = struct.unpack("<HHH", data[:6])
    assert (reserved, kind, count) == (0, 1, 3)
    for index, size in enumerate(sorted(pngs)):
        width, _h, _c, _r, _p, _bpp, length, offset = struct.unpack(
            "<BBBBHHII", data[6 + 16 * index : 22 + 16 * index]
        )
        assert width == (0 if size == 256 else size)
        assert data[offset : offset + length] == pngs[size]


def test_icns_blocks_hold_pngs_of_the_declared_size() -> None:
    pngs = {
        s: (make_icons.ICONS / make_icons.png_name(s)).read_bytes()
        for s in {size for _, size in make_icons.ICNS_TYPES} - {1024}
    }
    pngs[1024] = pngs[512]  # the container does not care; the size check below skips it
    data = make_icons.icns_bytes(pngs)
    assert data[:4] == b"icns" and struct.unpack(">I", data[4:8])[0] == len(data)
    offset, seen = 8, []
    while offset < len(data):
        kind, length = (
            data[offset : offset + 4],
            struct.unpack(">I", data[offset + 4 : offset + 8])[0],
        )
        seen.append(kind)
        expected = dict(make_icons.ICNS_TYPES)[kind]
        if expected != 1024:
            assert _png_size(data[offset + 8 : offset + length]) == (expected, expected)
        offset += length
    assert seen == [kind for kind, _ in make_icons.ICNS_TYPES]


def test_icons_render_from_the_svg(qapp: object) -> None:
    pngs = make_icons.render_pngs(make_icons.SVG, (16, 48))
    assert _png_size(pngs[16]) == (16, 16) and _png_size(pngs[48]) == (48, 48)


# --- Linux --------------------------------------------------------------------------------


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(build_linux.DESKTOP_FILE)
    return parser["Desktop Entry"]


def test_desktop_entry_matches_the_app() -> None:
    entry = _desktop_entry()
    # Qt reports this name to the window manager (setDesktopFileName): it must match the file.
    assert build_linux.DESKTOP_FILE.name == f"{assistant.APP_ID}.desktop"
    assert entry["Exec"].split()[0] == build_linux.PACKAGE
    assert entry["Icon"] == build_linux.PACKAGE
    assert entry["Name"] == assistant.APP_NAME
    assert entry["Terminal"] == "false"


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="desktop-file-utils")
def test_desktop_entry_validates() -> None:
    result = subprocess.run(
        ["desktop-file-validate", str(build_linux.DESKTOP_FILE)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "error" not in result.stdout, result.stdout


def test_metainfo_names_the_desktop_file_and_this_version() -> None:
    text = build_linux.METAINFO.read_text()
    component_id = re.search(r"<id>([^<]+)</id>", text)
    assert component_id and build_linux.METAINFO.name == f"{component_id.group(1)}.metainfo.xml"
    assert f'<launchable type="desktop-id">{build_linux.DESKTOP_FILE.name}</launchable>' in text
    assert f'<release version="{assistant.__version__}"' in text  # add a release when bumping


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="appstream")
def test_metainfo_validates() -> None:
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(build_linux.METAINFO)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("objdump"), reason="binutils")
def test_min_glibc_reads_symbol_versions(tmp_path: Path) -> None:
    shutil.copy(sys.executable, tmp_path / "python")
    (tmp_path / "notes.txt").write_text("not an ELF file")
    found = build_linux.min_glibc(tmp_path)
    assert re.fullmatch(r"2\.\d+(\.\d+)?", found)
    assert build_linux.version_key(found) >= (2, 2, 5)


# --- Windows ------------------------------------------------------------------------------


def _iss_value(key: str) -> str:
    match = re.search(rf"^{key}=(.*)$", ISS, re.MULTILINE)
    assert match, key
    return match.group(1).strip()


def test_inno_setup_installs_per_user_without_admin() -> None:
    assert _iss_value("PrivilegesRequired") == "lowest"
    # {autopf} is %LOCALAPPDATA%\Programs in a non-admin install; never Program Files.
    assert _iss_value("DefaultDirName").startswith("{autopf}\\")
    assert "{commonpf}" not in ISS and "{pf}" not in ISS and "HKLM" not in ISS
    assert _iss_value("ArchitecturesInstallIn64BitMode") == "x64compatible"


def test_inno_setup_names_the_spec_executables() -> None:
    exe_names = set(re.findall(r'name="([^"]+)"', SPEC))
    gui = re.search(r'#define GuiExe "([^"]+)"', ISS)
    cli = re.search(r'#define CliExe "([^"]+)"', ISS)
    assert gui and cli
    assert gui.group(1).removesuffix(".exe") in exe_names
    assert cli.group(1).removesuffix(".exe") in exe_names
    assert "console=False" in SPEC  # the Start-menu program opens no console window


def test_inno_setup_has_start_menu_login_and_uninstall() -> None:
    assert re.search(r'^Name: "\{autoprograms\}\\\{#AppName\}"; Filename: "\{app\}\\\{#GuiExe\}"',
                     ISS, re.MULTILINE)  # fmt: skip
    # Start at login is the app's own Run value (autostart.py), so its setting sees it.
    login = [line for line in ISS.splitlines() if "CurrentVersion\\Run" in line]
    assert login and login[0].startswith("Root: HKCU;") and "Tasks: startatlogin" in login[0]
    assert 'ValueName: "{#AppName}"' in login[0] and autostart.APP_NAME == "Offline Assistant"
    assert autostart.RUN_KEY in login[0]
    assert '{#GuiExe}"" ' + autostart.HIDDEN_FLAG in login[0]
    assert "RegDeleteValue(HKCU" in ISS  # also when the app's setting wrote it
    assert "{userstartup}" not in ISS
    assert re.search(r'Name: "startatlogin".*Flags: unchecked', ISS)  # opt-in, not a default
    assert _iss_value("UninstallDisplayIcon").startswith("{app}")
    assert re.search(r"^AppId=\{\{[0-9A-F-]{36}\}$", ISS, re.MULTILINE)


# --- macOS --------------------------------------------------------------------------------


def test_info_plist_is_valid_and_complete() -> None:
    info = plistlib.loads((PACKAGING / "macos" / "Info.plist").read_bytes())
    assert info["CFBundleName"] == assistant.APP_NAME
    assert info["CFBundleIconFile"] == "app.icns"
    assert info["CFBundlePackageType"] == "APPL"
    assert info["NSHighResolutionCapable"] is True
    assert re.fullmatch(r"[A-Za-z0-9.-]+", info["CFBundleIdentifier"])
    for key in ("CFBundleShortVersionString", "CFBundleVersion", "LSMinimumSystemVersion"):
        assert info[key]
    # The spec overwrites both version keys from the package at build time.
    assert 'info["CFBundleShortVersionString"] = info["CFBundleVersion"]' in SPEC


def test_entitlements_and_dmg_settings_are_readable() -> None:
    entitlements = plistlib.loads((PACKAGING / "macos" / "entitlements.plist").read_bytes())
    assert entitlements == {"com.apple.security.cs.allow-unsigned-executable-memory": True}
    settings: dict[str, object] = {"defines": {"app": "/tmp/Offline Assistant.app"}}
    exec((PACKAGING / "macos" / "dmg_settings.py").read_text(), settings)
    assert settings["files"] == ["/tmp/Offline Assistant.app"]
    assert settings["symlinks"] == {"Applications": "/Applications"}


# --- the launcher's pre-flight ------------------------------------------------------------


def test_missing_cpu_features_are_named_in_the_message() -> None:
    core2 = {"sse3", "ssse3", "cx16"}
    missing = launcher.missing_cpu_features(core2)
    assert missing == ["sse4_1", "sse4_2", "popcnt"]
    text = launcher.cpu_message(missing)
    assert "SSE4.2" in text and "POPCNT" in text and "illegal" not in text
    assert launcher.missing_cpu_features(None) == []  # unknown: try to start


@pytest.mark.skipif(launcher.cpu_features() is None, reason="not an x86-64 CPU")
def test_this_cpu_passes_the_check() -> None:
    features = launcher.cpu_features()
    assert features is not None and "sse4_2" in features
    assert launcher.missing_cpu_features(features) == []


def test_gui_mode_is_no_sub_command() -> None:
    assert launcher.wants_gui([])
    assert launcher.wants_gui(["-v"])
    assert not launcher.wants_gui(["ask", "hi"])
    assert not launcher.wants_gui(["--version"])


def test_environment_is_restored_for_child_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", "/somewhere/else")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/offline-assistant/_internal")
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/usr/local/lib")
    launcher.restore_environment()
    assert "LLAMA_CPP_LIB_PATH" not in os.environ
    assert os.environ["LD_LIBRARY_PATH"] == "/usr/local/lib"
    assert "LD_LIBRARY_PATH_ORIG" not in os.environ


@pytest.mark.skipif(not shutil.which("qemu-x86_64"), reason="qemu-user")
def test_old_cpu_gets_a_sentence_not_illegal_instruction() -> None:
    # An emulated Core 2 (2006: no SSE4.2): the launcher stops before importing anything heavy.
    result = subprocess.run(
        ["qemu-x86_64", "-cpu", "core2duo", sys.executable, str(PACKAGING / "launcher.py"),
         "--version"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot run on this processor" in result.stderr and "SSE4.2" in result.stderr


# --- the built bundle (opt-in: OA_TEST_BUNDLE) --------------------------------------------


def _bundle_env(home: Path) -> dict[str, str]:
    """A new user's environment: no virtualenv, no Python path, a stray LLAMA_CPP_LIB_PATH."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "OFFLINE_ASSISTANT_HOME": str(home / "oa"),
        "LLAMA_CPP_LIB_PATH": "/nonexistent/llama",
        "LANG": "C.UTF-8",
    }
    for name in ("DISPLAY", "XAUTHORITY", "QT_QPA_PLATFORM"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _exe() -> Path:
    assert BUNDLE
    return Path(BUNDLE) / "offline-assistant"


@needs_bundle
def test_bundle_prints_its_version(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(_exe()), "--version"], capture_output=True, text=True, env=_bundle_env(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert assistant.__version__ in result.stdout


@needs_bundle
@pytest.mark.slow
@pytest.mark.parametrize("cpu", [None, "Nehalem"])
def test_bundle_answers_with_the_real_model(
    tmp_path: Path, model_path: Path, cpu: str | None
) -> None:
    if cpu and not shutil.which("qemu-x86_64"):
        pytest.skip("qemu-user")
    # PyInstaller's bootloader re-executes itself; a plain `qemu-x86_64 exe` would emulate only
    # the first process. run-emulated.sh emulates both (a private binfmt_misc, Linux >= 6.7).
    prefix = [str(PACKAGING / "linux" / "run-emulated.sh"), cpu] if cpu else []
    result = subprocess.run(
        [*prefix, str(_exe()), "ask", "--model-path", str(model_path), "--temperature", "0",
         "What is the capital of France?"],
        capture_output=True, text=True, env=_bundle_env(tmp_path), timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Paris" in result.stdout


@needs_bundle
@pytest.mark.parametrize("cpu", [None, "Nehalem"])
def test_bundle_doctor_reports_its_own_engine(tmp_path: Path, cpu: str | None) -> None:
    """The installed doctor checks the bundle's engine (in a child, emulated too) and finds
    the CPU kernels for the processor it runs on: no AVX on a 2008 Nehalem."""
    if cpu and not shutil.which("qemu-x86_64"):
        pytest.skip("qemu-user")
    prefix = [str(PACKAGING / "linux" / "run-emulated.sh"), cpu] if cpu else []
    result = subprocess.run(
        [*prefix, str(_exe()), "doctor", "--json"],
        capture_output=True, text=True, env=_bundle_env(tmp_path), timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(result.stdout)
    engine = report["engine"]
    assert engine["usable"] and engine["isolated"], report["problems"]
    assert Path(engine["library"]).resolve().is_relative_to(Path(BUNDLE).resolve())
    assert "CPU" in engine["backends"] and engine["devices"]
    assert engine["cpu_kernels"].startswith("libggml-cpu-")
    if cpu == "Nehalem":
        assert engine["cpu_kernels"] == "libggml-cpu-sse42.so"
        assert "AVX = 1" not in engine["system_info"]
    assert report["app"]["bundle"] is True
    assert report["app"]["qt"] not in ("", "unknown")
    assert report["folders"]["data"] == str(tmp_path / "oa" / "data")


@needs_bundle
@pytest.mark.skipif(not shutil.which("qemu-x86_64"), reason="qemu-user")
def test_bundle_refuses_a_too_old_cpu_with_a_sentence(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(PACKAGING / "linux" / "run-emulated.sh"), "core2duo", str(_exe()), "--version"],
        capture_output=True, text=True, env=_bundle_env(tmp_path), timeout=600,
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot run on this processor" in result.stderr


@needs_bundle
def test_bundle_gui_starts(tmp_path: Path) -> None:
    env = _bundle_env(tmp_path)
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    process = subprocess.Popen([str(_exe())], env=env, stderr=subprocess.PIPE, text=True)
    history = tmp_path / "oa" / "data" / "history.sqlite3"
    try:
        for _ in range(600):  # the window's services open the history when it starts
            if history.exists() or process.poll() is not None:
                break
            time.sleep(0.1)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert history.exists()
    finally:
        process.terminate()
        process.wait(timeout=60)
