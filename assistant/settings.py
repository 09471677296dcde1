"""What the user chose, declared once with defaults and checks.

Settings live in ``settings.json`` in the config folder. A missing, unreadable or invalid value
falls back to its default with a warning; a broken settings file never stops the app.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from assistant.atomic import atomic_write_text
from assistant.engine.base import OVERFLOW_POLICIES, GenerationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    key: str
    default: Any
    kind: type
    check: Callable[[Any], bool] = lambda _value: True
    description: str = ""


def _between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda value: low <= value <= high


def _one_of(*choices: Any) -> Callable[[Any], bool]:
    return lambda value: value in choices


# Sampling defaults live in one place: the engine's GenerationSettings.
_GEN = GenerationSettings()

SCHEMA: tuple[Setting, ...] = (
    Setting("system_prompt", "You are a helpful assistant.", str, description="System prompt"),
    Setting("temperature", _GEN.temperature, float, _between(0.0, 2.0), "Sampling temperature"),
    Setting("top_p", _GEN.top_p, float, _between(0.0, 1.0), "Nucleus sampling"),
    Setting("top_k", _GEN.top_k, int, _between(0, 1000), "Top-k sampling (0 = off)"),
    Setting("min_p", _GEN.min_p, float, _between(0.0, 1.0), "Min-p sampling"),
    Setting("repeat_penalty", _GEN.repeat_penalty, float, _between(0.5, 2.0), "Repeat penalty"),
    Setting("max_tokens", _GEN.max_tokens, int, _between(1, 32768), "Longest answer, in tokens"),
    Setting("seed", _GEN.seed, int, description="Random seed (empty = random)"),
    Setting("context_size", 4096, int, _between(512, 131072), "Context window, in tokens"),
    Setting("threads", 0, int, _between(0, 256), "CPU threads (0 = physical cores)"),
    Setting("gpu_layers", "auto", str, lambda v: v in ("auto", "off") or v.isdigit(), "GPU layers"),
    Setting("overflow_policy", _GEN.overflow, str, _one_of(*OVERFLOW_POLICIES), "When full"),
    Setting("theme", "system", str, _one_of("system", "light", "dark"), "Theme"),
    Setting("draft", "", str, description="Unsent text in the chat input"),
    Setting("first_run_done", False, bool, description="The welcome screen was shown"),
    Setting("cloud_enabled", False, bool, description="Allow sending questions to a cloud model"),
)
_BY_KEY = {setting.key: setting for setting in SCHEMA}


def _coerce(setting: Setting, value: Any) -> Any:
    """Return ``value`` as the setting's type, or raise ValueError."""
    if value is None:
        if setting.default is None:
            return None
        raise ValueError("missing")
    if setting.kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("not true/false")
    if setting.kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not a whole number")
    elif setting.kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("not a number")
        value = float(value)
    elif setting.kind is str and not isinstance(value, str):
        raise ValueError("not text")
    if not setting.check(value):
        raise ValueError("out of range")
    return value


class Settings:
    """The user's settings, loaded from and saved to one JSON file."""

    def __init__(self, path: Path, values: dict[str, Any] | None = None) -> None:
        self.path = path
        self._values: dict[str, Any] = {s.key: s.default for s in SCHEMA}
        self.warnings: list[str] = []
        for key, value in (values or {}).items():
            self._accept(key, value)

    @classmethod
    def load(cls, path: Path) -> Settings:
        settings = cls(path)
        if not path.exists():
            return settings
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("the file does not hold a JSON object")
        except (OSError, ValueError) as exc:
            settings._warn(f"Settings file {path} could not be read ({exc}); using defaults.")
            return settings
        for key, value in raw.items():
            settings._accept(key, value)
        return settings

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        log.warning(text)

    def _accept(self, key: str, value: Any) -> None:
        setting = _BY_KEY.get(key)
        if setting is None:
            self._warn(f"Unknown setting {key!r} ignored.")
            return
        try:
            self._values[key] = _coerce(setting, value)
        except ValueError as exc:
            self._warn(
                f"Setting {key!r} has an invalid value {value!r} ({exc}); "
                f"using the default {setting.default!r}."
            )

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def set(self, key: str, value: Any) -> None:
        """Change one value; raises ``KeyError`` or ``ValueError`` for a bad one."""
        self._values[key] = _coerce(_BY_KEY[key], value)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def save(self) -> None:
        """Write atomically: a crash mid-save leaves the previous file intact."""
        atomic_write_text(self.path, json.dumps(self._values, indent=2, sort_keys=True))

    def generation_settings(self) -> GenerationSettings:
        """The sampling settings the user chose (each field has a setting of the same name,
        except ``overflow``, stored as ``overflow_policy``)."""
        names = {f.name: _GENERATION_KEYS.get(f.name, f.name) for f in fields(GenerationSettings)}
        return GenerationSettings(**{field: self[key] for field, key in names.items()})


_GENERATION_KEYS = {"overflow": "overflow_policy"}
