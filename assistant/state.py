"""What the app remembers for itself between runs: the unsent draft, whether the welcome screen
was shown, where the window was. Not the user's preferences (those are ``assistant.settings``):
nobody edits these, a lost state file costs a window position, and only the app writes it.

The state lives in ``state.json`` in the config folder (``AppPaths.state_file``). A missing or
broken file gives the defaults and never stops the app.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from assistant.atomic import atomic_write_text
from assistant.settings import Setting

log = logging.getLogger(__name__)

FIELDS: tuple[Setting, ...] = (
    Setting("draft", "", str, label="Unsent text in the chat input"),
    Setting("first_run_done", False, bool, label="The welcome screen was shown"),
    Setting(
        "main_window_geometry", "", str, label="Qt's saveGeometry() of the chat window, base64"
    ),
    Setting("sidebar_width", 0, int, label="Width of the chat list (0: the default)", minimum=0),
    Setting("tray_notice_shown", False, bool, label="The keeps-running tray notice was shown"),
)
_BY_KEY = {field.key: field for field in FIELDS}

# Keys an older version kept in settings.json; read from there while no state file exists yet.
_LEGACY_KEYS = ("draft", "first_run_done")


class WindowState:
    """The app's own memory, loaded from and saved to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._values: dict[str, Any] = {field.key: field.default for field in FIELDS}

    @classmethod
    def load(cls, path: Path, legacy_settings: Path | None = None) -> WindowState:
        """The state in ``path``; defaults for whatever is missing or broken, never an error.

        While ``path`` does not exist yet, ``draft`` and ``first_run_done`` come from
        ``legacy_settings`` (the settings.json of an older version) and the state file is
        written at once, since the next settings save drops them from there."""
        state = cls(path)
        if path.exists():
            state._take(_read_object(path), str(path))
        elif legacy_settings is not None and legacy_settings.exists():
            old = _read_object(legacy_settings)
            state._take({key: old[key] for key in _LEGACY_KEYS if key in old}, str(legacy_settings))
            if any(key in old for key in _LEGACY_KEYS):
                try:
                    state.save()
                except OSError as exc:
                    log.warning("Could not save the window state: %s", exc)
        return state

    def _take(self, raw: dict[str, Any], source: str) -> None:
        for key, value in raw.items():
            field = _BY_KEY.get(key)
            if field is None:
                continue  # written by a newer version, or a typo: the app's own file, no warning
            try:
                self._values[key] = field.coerce(value)
            except ValueError as exc:
                log.warning(
                    "Window state %r in %s is invalid (%s); using the default.", key, source, exc
                )

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def set(self, key: str, value: Any) -> None:
        """Change one value in memory; ``KeyError`` or ``ValueError`` for a bad one."""
        self._values[key] = _BY_KEY[key].coerce(value)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def save(self) -> None:
        """Write atomically; ``OSError`` propagates for the caller to log."""
        atomic_write_text(self.path, json.dumps(self._values, indent=2, sort_keys=True))


def _read_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``, or ``{}`` (with a warning) when there is none to read."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s could not be read (%s); using defaults.", path, exc)
        return {}
    except RecursionError:  # 100,000 nested brackets: not ours, and no reason not to start
        log.warning("%s is nested too deeply to read; using defaults.", path)
        return {}
    if not isinstance(raw, dict):
        log.warning("%s does not hold a JSON object; using defaults.", path)
        return {}
    return raw
