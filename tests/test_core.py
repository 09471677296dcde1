"""The core's promises: no Qt anywhere in it, portable paths, settings that never crash."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import assistant
from assistant.paths import app_paths
from assistant.settings import Settings

CORE_ROOT = Path(assistant.__file__).parent


def core_modules() -> list[str]:
    names = []
    for path in sorted(CORE_ROOT.rglob("*.py")):
        relative = path.relative_to(CORE_ROOT.parent).with_suffix("")
        if relative.parts[1:2] == ("ui",):
            continue
        names.append(".".join(part for part in relative.parts if part != "__init__"))
    return names


def test_core_never_imports_qt() -> None:
    """Import every module outside assistant/ui in a fresh interpreter; PySide6 must not load."""
    modules = [name for name in core_modules() if name != "assistant.__main__"]
    assert "assistant.engine.local" in modules and "assistant.chat.history" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"Qt loaded by the core: {result.stdout}"


def test_core_sources_never_import_pyside() -> None:
    """Not even inside a function (which the import test above would not reach). Naming the
    package is allowed: the doctor reads its version from the package metadata."""
    statement = re.compile(r"^\s*(from|import)\s+(PySide6|shiboken6)\b", re.MULTILINE)
    offenders = [
        str(path)
        for path in CORE_ROOT.rglob("*.py")
        if "ui" not in path.relative_to(CORE_ROOT).parts[:1]
        and statement.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_portable_home_holds_every_folder(app_home: Path) -> None:
    paths = app_paths()
    for folder in (paths.data, paths.cache, paths.config, paths.logs):
        assert folder.is_relative_to(app_home)
    paths.ensure()
    assert paths.data.is_dir() and paths.logs.is_dir()


def test_default_folders_come_from_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OFFLINE_ASSISTANT_HOME")
    paths = app_paths()
    assert "offline-assistant" in str(paths.data)
    assert paths.data != paths.cache != paths.config


def test_settings_defaults_and_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings.load(path)
    assert settings["temperature"] == 0.7 and settings.warnings == []
    settings.set("temperature", 0.2)
    settings.set("theme", "dark")
    settings.save()
    again = Settings.load(path)
    assert again["temperature"] == 0.2 and again["theme"] == "dark"
    assert again.generation_settings().temperature == 0.2


def test_invalid_values_fall_back_with_warnings(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps(
            {
                "temperature": "hot",
                "top_p": 7,
                "theme": "purple",
                "max_tokens": 256,
                "seed": 3.5,
                "mystery": 1,
                "first_run_done": "yes",
            }
        )
    )
    settings = Settings.load(path)
    assert settings["temperature"] == 0.7
    assert settings["top_p"] == 0.95
    assert settings["theme"] == "system"
    assert settings["max_tokens"] == 256  # a valid value is kept
    assert settings["seed"] is None
    # first_run_done is window state now: an old file's value is not a settings problem.
    assert len(settings.warnings) == 5
    assert any("temperature" in w for w in settings.warnings)
    assert not any("first_run_done" in w for w in settings.warnings)


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe\x00garbage"])
def test_broken_settings_file_gives_defaults(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    settings = Settings.load(path)
    assert settings["theme"] == "system"
    assert settings.warnings
    settings.save()  # saving repairs the file
    assert Settings.load(path).warnings == []


def test_set_rejects_bad_values(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "s.json")
    with pytest.raises(ValueError):
        settings.set("temperature", 9.0)
    with pytest.raises(KeyError):
        settings.set("nonsense", 1)
