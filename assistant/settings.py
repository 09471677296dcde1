"""What the user chose, declared once: default, type, range, label and where it is edited.

Settings live in ``settings.json`` in the config folder. A missing, unreadable or invalid value
falls back to its default with a warning; a broken settings file never stops the app.

``SCHEMA`` is the only list of settings. Validation reads its ranges and choices, and the
settings dialog builds its tabs, rows and editors from the same fields, so nothing is repeated
by hand.

Several writers share the file (the app and the command line, two windows): ``save()`` takes a
lock, reads the file again and writes back only the keys this object changed, so a change made
elsewhere meanwhile survives.

Listeners (``add_listener``) hear about every change to this object's values, at the next
``save()``, ``update()`` or ``reload()``: ``set()`` alone tells nobody until one of those runs.
They are called with the changed keys, in schema order, even when the save itself failed (the
new values are in use in this process either way); ``update()`` and ``reload()`` return the same
list.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from assistant.atomic import atomic_write_text
from assistant.engine.base import OVERFLOW_POLICIES, SAMPLING_FIELDS, GenerationSettings

log = logging.getLogger(__name__)

Listener = Callable[[list[str]], None]

GROUPS: tuple[str, ...] = ("Answers", "Model", "Appearance and data", "Local API", "Downloads")
"""The settings dialog's tabs, in order; a setting's ``group`` names one of them."""

LEGACY_KEYS = frozenset({"draft", "first_run_done"})
"""Keys an older version kept in settings.json. They are window state now (``assistant.state``):
read from here once by ``WindowState.load``, not warned about, dropped at the next save."""

LOCK_TIMEOUT_S = 10.0
"""How long a save waits for another writer; writers hold the lock for one small write."""

MAX_FILE_BYTES = 1024 * 1024
"""A settings file is a few hundred bytes; a larger one is not read (it is not ours)."""


@dataclass(frozen=True)
class Setting:
    """One setting. The UI fields say how the settings dialog shows it (``group`` None: not in
    the dialog); ``minimum``/``maximum`` and ``choices`` are also what a value is checked
    against, so each range is written once."""

    key: str
    default: Any
    kind: type
    label: str = ""
    group: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    decimals: int | None = None
    choices: tuple[tuple[Any, str], ...] = ()
    count_label: str = ""
    """For a text setting with ``choices``: it may also hold a whole number from ``minimum`` to
    ``maximum`` written as text, offered in the dialog under this label (gpu_layers: "auto",
    "off" or "20")."""
    special_value_text: str = ""
    """Shown instead of the number at ``minimum`` ("Off", "Automatic")."""
    tooltip: str = ""
    accessible_name: str = ""
    """For screen readers, when the label reads badly aloud; the label otherwise."""
    placeholder: str = ""
    multiline: bool = False
    reload_model: bool = False
    """Changing it takes effect only when the model is loaded again."""
    pattern: str = ""
    """For a text setting: a regular expression a non-empty value must match in full;
    ``pattern_hint`` says in words what that means."""
    pattern_hint: str = ""

    @property
    def choice_values(self) -> tuple[Any, ...]:
        return tuple(value for value, _label in self.choices)

    def coerce(self, value: Any) -> Any:
        """``value`` as this setting's type, or ``ValueError`` saying what is wrong with it."""
        if value is None:
            if self.default is None:
                return None
            raise ValueError("missing")
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError("not true/false")
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("not a whole number")
        elif self.kind is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("not a number")
            try:
                value = float(value)
            except OverflowError:  # a whole number too large for a float
                raise ValueError("not a finite number") from None
            if not math.isfinite(value):  # NaN passes every range check: refuse it here
                raise ValueError("not a finite number")
        elif self.kind is str and not isinstance(value, str):
            raise ValueError("not text")
        if self.pattern and value and not re.fullmatch(self.pattern, value):
            raise ValueError(self.pattern_hint or "not in the expected form")
        if self.count_label and value not in self.choice_values:
            if not (value.isascii() and value.isdigit()):
                raise ValueError(f"not one of {', '.join(self.choice_values)} or a number")
            self._check_range(int(value))
        elif self.choices:
            if value not in self.choice_values:
                raise ValueError(f"not one of {', '.join(map(str, self.choice_values))}")
        elif self.kind in (int, float):
            self._check_range(value)
        return value

    def _check_range(self, number: float) -> None:
        if self.minimum is not None and number < self.minimum:
            raise ValueError(f"below {self.minimum:g}")
        if self.maximum is not None and number > self.maximum:
            raise ValueError(f"above {self.maximum:g}")


# Sampling defaults live in one place: the engine's GenerationSettings.
_GEN = GenerationSettings()
_OVERFLOW_LABELS = {
    "drop_oldest": "Leave out the oldest messages",
    "refuse": "Stop and tell me to start a new chat",
}

SCHEMA: tuple[Setting, ...] = (
    Setting(
        "system_prompt",
        "You are a helpful assistant.",
        str,
        label="System prompt",
        group="Answers",
        multiline=True,
        placeholder="What the assistant is told before every chat",
    ),
    Setting(
        "temperature",
        _GEN.temperature,
        float,
        label="Temperature",
        group="Answers",
        minimum=0.0,
        maximum=2.0,
        step=0.05,
        decimals=2,
        tooltip="0 always picks the most likely word; higher is more varied",
    ),
    Setting(
        "top_p",
        _GEN.top_p,
        float,
        label="Top-p",
        group="Answers",
        minimum=0.0,
        maximum=1.0,
        step=0.01,
        decimals=2,
        tooltip="Pick only among the likeliest words that together reach this probability",
    ),
    Setting(
        "top_k",
        _GEN.top_k,
        int,
        label="Top-k",
        group="Answers",
        minimum=0,
        maximum=1000,
        step=1,
        special_value_text="Off",
        tooltip="Pick only among this many likeliest words",
    ),
    Setting(
        "min_p",
        _GEN.min_p,
        float,
        label="Min-p",
        group="Answers",
        minimum=0.0,
        maximum=1.0,
        step=0.01,
        decimals=2,
        tooltip="Leave out words this much less likely than the likeliest one",
    ),
    Setting(
        "repeat_penalty",
        _GEN.repeat_penalty,
        float,
        label="Repeat penalty",
        group="Answers",
        minimum=0.5,
        maximum=2.0,
        step=0.05,
        decimals=2,
        tooltip="Above 1 makes the model repeat itself less",
    ),
    Setting(
        "max_tokens",
        _GEN.max_tokens,
        int,
        label="Longest answer (tokens)",
        group="Answers",
        minimum=1,
        maximum=32768,
        step=64,
        accessible_name="Longest answer in tokens",
        tooltip="An answer stops after this many tokens",
    ),
    Setting("seed", _GEN.seed, int, label="Random seed (empty = random)"),
    Setting(
        "context_size",
        4096,
        int,
        label="Context size (tokens)",
        group="Model",
        minimum=512,
        maximum=131072,
        step=512,
        accessible_name="Context size in tokens",
        tooltip="How much of the conversation the model can see at once",
        reload_model=True,
    ),
    Setting(
        "threads",
        0,
        int,
        label="CPU threads",
        group="Model",
        minimum=0,
        maximum=256,
        step=1,
        special_value_text="Automatic",
        tooltip="Automatic uses one thread per physical core",
        reload_model=True,
    ),
    Setting(
        "gpu_layers",
        "auto",
        str,
        label="GPU offload",
        group="Model",
        # 0 layers is the same as "off"; an older version accepted it, so it stays valid.
        minimum=0,
        maximum=999,
        step=1,
        choices=(("auto", "Automatic (as many as fit)"), ("off", "Off")),
        count_label="This many layers",
        tooltip="How many of the model's layers run on the graphics card",
        reload_model=True,
    ),
    Setting(
        "overflow_policy",
        _GEN.overflow,
        str,
        label="When a chat gets too long",
        group="Model",
        choices=tuple((policy, _OVERFLOW_LABELS[policy]) for policy in OVERFLOW_POLICIES),
        accessible_name="When the conversation is too long",
    ),
    Setting(
        "theme",
        "system",
        str,
        label="Theme",
        group="Appearance and data",
        choices=(("system", "Same as the system"), ("light", "Light"), ("dark", "Dark")),
    ),
    # Cloud (issue 11): the global switch and what the consent preview remembers. Providers
    # (name, URL, model) are in cloud.json, keys in the keyring; neither is a setting.
    Setting("cloud_enabled", False, bool, label="Allow sending questions to a cloud model"),
    # Tray and quick ask
    Setting(
        "keep_running_in_tray",
        True,
        bool,
        label="Keep running in the tray when the window is closed",
        group="Appearance and data",
        tooltip="Only where the desktop has a system tray; elsewhere closing the window quits",
    ),
    Setting(
        "quick_ask_hotkey",
        "Alt+Space" if sys.platform == "darwin" else "Ctrl+Alt+Space",  # ⌥Space on macOS
        str,
        label="Quick ask shortcut (empty = off)",
        group="Appearance and data",
        accessible_name="Quick ask keyboard shortcut",
        placeholder="Ctrl+Alt+Space",
        tooltip=(
            "Works from any app on X11, Windows and macOS. On Wayland, bind your desktop's "
            "own shortcut to the command: offline-assistant --quick-ask"
        ),
    ),
    Setting(
        "quick_ask_selection",
        True,
        bool,
        label="Quick ask brings along the selected text",
        group="Appearance and data",
        tooltip="The text selected in another app is shown in the popup (and removable) "
        "before it is sent; your clipboard is left as it was",
    ),
    Setting(
        "quick_ask_history",
        True,
        bool,
        label="Keep quick asks in the history",
        group="Appearance and data",
        tooltip='In one "Quick ask" conversation per day',
    ),
    Setting(
        "start_at_login",
        False,
        bool,
        label="Start at login (in the tray)",
        group="Appearance and data",
    ),
    # Local API: other programs on this computer use the loaded model (assistant/api).
    Setting(
        "api_enabled",
        False,
        bool,
        label="Let other programs on this computer use the model",
        group="Local API",
        accessible_name="Turn on the local OpenAI-compatible API",
        tooltip="An OpenAI-compatible API on this computer only, protected by the token below",
    ),
    Setting(
        "api_port",
        8765,
        int,
        label="Port",
        group="Local API",
        minimum=1024,
        maximum=65535,
        step=1,
        accessible_name="Local API port",
    ),
    Setting(
        "api_keep_history",
        False,
        bool,
        label="Keep API requests in the chat history",
        group="Local API",
        tooltip="Off: what other programs ask is answered and forgotten",
    ),
    # Cloud
    Setting("cloud_provider", "", str, label="Cloud provider offered first"),
    Setting("cloud_latest_only", False, bool, label="Send only the latest question"),
    Setting("cloud_redact", True, bool, label="Redact personal details before sending"),
    Setting("cloud_advisor", True, bool, label="Suggest asking a cloud model"),
    # Model memory: saved KV states of conversations, and drafting answers from the prompt.
    Setting(
        "model_memory",
        True,
        bool,
        label="Remember what the model has read",
        group="Model",
        tooltip="Keep the model's reading of each conversation, so switching back, the command "
        "line and a restart continue without reading the whole chat again",
        reload_model=True,
    ),
    Setting(
        "model_memory_ram_mb",
        0,
        int,
        label="Memory for it (MB)",
        group="Model",
        minimum=0,
        maximum=65536,
        step=256,
        special_value_text="Automatic",
        accessible_name="Memory for remembered conversations in megabytes",
        tooltip="RAM kept for recently used conversations; Automatic takes a share of this "
        "computer's memory",
        reload_model=True,
    ),
    Setting(
        "model_memory_disk_mb",
        4096,
        int,
        label="Disk space for it (MB)",
        group="Model",
        minimum=0,
        maximum=1048576,
        step=512,
        special_value_text="Off",
        accessible_name="Disk space for remembered conversations in megabytes",
        tooltip="Saved in the cache folder, oldest first out; Off keeps them in memory only",
        reload_model=True,
    ),
    Setting(
        "prompt_lookup",
        False,
        bool,
        label="Write copied text faster",
        group="Model",
        tooltip="When an answer repeats parts of the question (fix, rewrite, edit), guess the "
        "next words from the question and check them in one step; the answer is the same. "
        "It drafts only as far as this computer's measured speed says it pays",
        reload_model=True,
    ),
    # Expected speed: recommend what answers fast enough here (assistant/models/speed.py).
    Setting(
        "usable_tokens_per_s",
        10.0,
        float,
        label="Usable speed (tokens/s)",
        group="Model",
        minimum=1.0,
        maximum=500.0,
        step=1.0,
        decimals=0,
        accessible_name="Usable answer speed in tokens per second",
        tooltip="The recommended model is the most capable one expected to write at least "
        "this many tokens per second on this computer",
    ),
    # Choosing a model (issue 12): which sampling values are the user's own (the rest follow
    # the loaded model's recommendation), and where models are downloaded from.
    Setting("sampling_chosen", "", str, label="Sampling values you set yourself"),
    Setting(
        "hub_address",
        "",
        str,
        label="Download models from (empty = huggingface.co)",
        group="Downloads",
        accessible_name="Hugging Face Hub address or mirror",
        placeholder="https://huggingface.co",
        pattern=r"https?://[^\s/?#]+(?::\d+)?(?:/[^\s?#]*)?",
        pattern_hint="not a web address starting with https:// or http://",
        tooltip="A mirror of the Hugging Face Hub, for networks that cannot reach "
        "huggingface.co. The system's proxy and certificates are used either way.",
    ),
)
_BY_KEY = {setting.key: setting for setting in SCHEMA}

RELOAD_KEYS = frozenset(setting.key for setting in SCHEMA if setting.reload_model)
"""Changing one of these needs the model loaded again."""

SAMPLING_KEYS: tuple[str, ...] = SAMPLING_FIELDS
"""Settings a model may recommend a value for; ``sampling_chosen`` lists those the user set."""
_CHOSEN = "sampling_chosen"


def setting(key: str) -> Setting:
    """The declaration of ``key``; ``KeyError`` for a key the schema does not have."""
    return _BY_KEY[key]


def _ordered(keys: Iterable[str]) -> list[str]:
    wanted = set(keys)
    return [s.key for s in SCHEMA if s.key in wanted]


class Settings:
    """The user's settings, loaded from and saved to one JSON file."""

    def __init__(self, path: Path, values: dict[str, Any] | None = None) -> None:
        self.path = path
        defaults = {s.key: s.default for s in SCHEMA}
        self._values: dict[str, Any] = dict(defaults)
        # The file's values as last read or written: a key that differs from here is this
        # object's own change, the only kind save() writes over the file.
        self._synced: dict[str, Any] = dict(defaults)
        # The values listeners last heard about.
        self._announced: dict[str, Any] = dict(defaults)
        self._listeners: list[Listener] = []
        accepted, problems = _validate(values or {})
        self.warnings: list[str] = problems
        """Problems found in the values given, or in the file when it was last read (load,
        reload)."""
        self._values.update(accepted)
        self._announced = dict(self._values)
        for text in self.warnings:
            log.info(text)

    @classmethod
    def load(cls, path: Path) -> Settings:
        settings = cls(path)
        values, settings.warnings = _read(path)
        # Recorded in the log file only: each front end shows ``warnings`` once, its own way
        # (the log's stderr handler would print every one a second time).
        for text in settings.warnings:
            log.info(text)
        if values is not None:
            settings._values.update(values)
            settings._synced.update(values)
            settings._announced = dict(settings._values)
        return settings

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def set(self, key: str, value: Any) -> None:
        """Change one value in memory; raises ``KeyError`` or ``ValueError`` for a bad one.
        Nothing is written, nor anyone told, until ``save()``. A sampling value that changes
        becomes the user's own (it no longer follows the model)."""
        coerced = _BY_KEY[key].coerce(value)
        chosen = self._newly_chosen({key: coerced})
        self._values[key] = coerced
        if chosen is not None:
            self._values[_CHOSEN] = chosen

    def _newly_chosen(self, values: dict[str, Any]) -> str | None:
        """``sampling_chosen`` after setting ``values``: None when it stays as it is."""
        if _CHOSEN in values:
            return None
        chosen = self.chosen_sampling()
        changed = {k for k in SAMPLING_KEYS if k in values and values[k] != self._values[k]}
        if changed <= chosen:
            return None
        return _join_keys(chosen | changed)

    def _merged_chosen(self, theirs: str) -> str:
        """``sampling_chosen`` as another writer saved it, with this object's own additions and
        removals applied: two writers each choosing a value keep both."""
        synced, mine = _split_keys(self._synced[_CHOSEN]), self.chosen_sampling()
        return _join_keys((_split_keys(theirs) | (mine - synced)) - (synced - mine))

    def chosen_sampling(self) -> frozenset[str]:
        """The sampling settings the user set; the others follow the loaded model."""
        return _split_keys(self._values[_CHOSEN])

    def follow_model(self, keys: Iterable[str]) -> list[str]:
        """Give ``keys`` (sampling settings) back to the model: they take the model's
        recommendation again (the app's default where it has none). Saves, like ``update``."""
        keys = set(keys)
        unknown = keys - set(SAMPLING_KEYS)
        if unknown:
            raise KeyError(f"not sampling settings: {', '.join(sorted(unknown))}")
        for key in keys:
            self._values[key] = _BY_KEY[key].default
        self._values[_CHOSEN] = _join_keys(self.chosen_sampling() - keys)
        return self._save()

    def update(self, values: dict[str, Any]) -> list[str]:
        """Set several values and save. Returns the keys whose values changed, as the listeners
        are told them: these, any another writer had saved meanwhile, any ``set()`` before.

        A bad value raises ``KeyError``/``ValueError`` before anything changes. A failed write
        raises ``OSError`` after the listeners were told: the values are in use regardless."""
        checked = {key: _BY_KEY[key].coerce(value) for key, value in values.items()}
        chosen = self._newly_chosen(checked)
        self._values.update(checked)
        if chosen is not None:
            self._values[_CHOSEN] = chosen
        return self._save()

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def own_changes(self) -> list[str]:
        """Keys this object changed that are not in the file yet."""
        return [key for key in _ordered(self._values) if self._values[key] != self._synced[key]]

    def save(self) -> None:
        """Write this object's own changes into the file without losing anyone else's.

        Under a lock beside the file: read it again, put in the keys changed here since the
        last load or save, write atomically (a crash leaves the previous file). The values of
        this object then match the file, another writer's changes included, and listeners are
        told what changed. ``OSError`` (also when the lock is not free within
        ``LOCK_TIMEOUT_S``) propagates, after the listeners were told."""
        self._save()

    def _save(self) -> list[str]:
        from filelock import FileLock  # imported here: the GUI's start does not need it

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S):
                found, problems = _read(self.path)
                for text in problems:
                    log.warning("%s Saving replaces it.", text)
                merged = dict(self._values if found is None else found)
                for key in self.own_changes():
                    merged[key] = self._values[key]
                if _CHOSEN in self.own_changes() and found is not None:
                    merged[_CHOSEN] = self._merged_chosen(found[_CHOSEN])
                atomic_write_text(self.path, json.dumps(merged, indent=2, sort_keys=True))
                self._values = merged
                self._synced = dict(merged)
        finally:
            told = self._announce()
        return told

    def reload(self) -> list[str]:
        """Read the file again (another process may have changed it), keeping the changes made
        here and not saved yet. Returns the keys whose values changed, as the listeners are
        told them (a ``set()`` not told yet included).

        A file that cannot be read leaves the values as they are (with a warning)."""
        found, self.warnings = _read(self.path)
        for text in self.warnings:
            log.warning(text)
        if found is not None:
            own = set(self.own_changes())
            for key, value in found.items():
                if key not in own:
                    self._values[key] = value
            if _CHOSEN in own:
                self._values[_CHOSEN] = self._merged_chosen(found[_CHOSEN])
            self._synced = dict(found)
        return self._announce()

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(changed_keys)`` after each save, update or reload that changed
        values. Listeners run in the calling thread, in the order they were added."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback``; one that was never added is ignored."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _announce(self) -> list[str]:
        """Tell the listeners what changed since they last heard; returns that."""
        changed = [k for k in _ordered(self._values) if self._values[k] != self._announced[k]]
        self._announced = dict(self._values)
        if changed:
            for callback in list(self._listeners):
                callback(list(changed))
        return changed

    def generation_settings(self) -> GenerationSettings:
        """The sampling settings the user chose (each field has a setting of the same name,
        except ``overflow``, stored as ``overflow_policy``). Sampling values the user did not
        set are left to the model (``follow_model``): the engine puts in the loaded model's
        recommendation where it has one."""
        names = {
            f.name: _GENERATION_KEYS.get(f.name, f.name)
            for f in fields(GenerationSettings)
            if f.name not in _PER_ANSWER_FIELDS
        }
        return GenerationSettings(
            **{field: self[key] for field, key in names.items()},
            follow_model=frozenset(SAMPLING_KEYS) - self.chosen_sampling(),
        )


_GENERATION_KEYS = {"overflow": "overflow_policy"}
# Chosen per answer (the local API), or derived, not settings.
_PER_ANSWER_FIELDS = frozenset({"stop", "follow_model"})


def _split_keys(text: str) -> frozenset[str]:
    return frozenset(k for k in (part.strip() for part in text.split(",")) if k in SAMPLING_KEYS)


def _join_keys(keys: Iterable[str]) -> str:
    wanted = set(keys)
    return ",".join(k for k in SAMPLING_KEYS if k in wanted)


def _read(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The file's values, every key present (an invalid or missing value is its default), and
    what was wrong. None when the file exists but cannot be read at all; a missing file is
    all defaults."""
    try:
        if not path.exists():
            return {s.key: s.default for s in SCHEMA}, []
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"it is larger than {MAX_FILE_BYTES // 1024} KB")
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict):
            raise ValueError("the file does not hold a JSON object")
    except (OSError, ValueError) as exc:
        return None, [f"Settings file {path} could not be read ({_short(exc)}); using defaults."]
    except RecursionError:
        return None, [f"Settings file {path} is nested too deeply to read; using defaults."]
    accepted, problems = _validate(raw)
    return {s.key: accepted.get(s.key, s.default) for s in SCHEMA}, problems


def _validate(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The valid values of ``raw`` and a warning for each key that is unknown or invalid."""
    accepted: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in raw.items():
        declared = _BY_KEY.get(key)
        if declared is None:
            if key not in LEGACY_KEYS:
                problems.append(f"Unknown setting {_short(key)} ignored.")
            continue
        try:
            accepted[key] = declared.coerce(value)
        except ValueError as exc:
            problems.append(
                f"Setting {key!r} has an invalid value {_short(value)} ({exc}); "
                f"using the default {declared.default!r}."
            )
    if _CHOSEN not in raw:
        # Written before the model could recommend sampling (every value was then saved, the
        # defaults too): a value other than the default is one the user chose.
        accepted[_CHOSEN] = _join_keys(
            k for k in SAMPLING_KEYS if k in accepted and accepted[k] != _BY_KEY[k].default
        )
    return accepted, problems


def _short(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: a warning must stay one readable line.
    A value too deeply nested even to show is described instead."""
    try:
        text = value if isinstance(value, BaseException) else repr(value)
        text = str(text)
    except RecursionError:
        return "(nested too deeply to show)"
    return text if len(text) <= limit else text[: limit - 1] + "…"
