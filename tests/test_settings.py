"""Settings declared once, shared by several writers, and the window state kept apart."""

from __future__ import annotations

import json
import multiprocessing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from assistant import settings as settings_module
from assistant.engine.base import OVERFLOW_POLICIES
from assistant.paths import app_paths
from assistant.settings import GROUPS, RELOAD_KEYS, SCHEMA, Settings, setting
from assistant.state import WindowState

ROUNDS = 40

# --- one declaration: validation comes from the schema's own ranges and choices ------------------


@pytest.mark.parametrize(
    "declared", [s for s in SCHEMA if s.kind in (int, float)], ids=lambda s: s.key
)
def test_numbers_outside_the_declared_range_are_refused(tmp_path: Path, declared: Any) -> None:
    settings = Settings(tmp_path / "settings.json")
    if declared.minimum is not None:
        settings.set(declared.key, declared.kind(declared.minimum))
        with pytest.raises(ValueError, match="below"):
            settings.set(declared.key, declared.kind(declared.minimum - 1))
    if declared.maximum is not None:
        settings.set(declared.key, declared.kind(declared.maximum))
        with pytest.raises(ValueError, match="above"):
            settings.set(declared.key, declared.kind(declared.maximum + 1))


@pytest.mark.parametrize("declared", [s for s in SCHEMA if s.choices], ids=lambda s: s.key)
def test_only_declared_choices_are_accepted(tmp_path: Path, declared: Any) -> None:
    settings = Settings(tmp_path / "settings.json")
    for value in declared.choice_values:
        settings.set(declared.key, value)
        assert settings[declared.key] == value
    with pytest.raises(ValueError, match="not one of"):
        settings.set(declared.key, "something else")


def test_gpu_layers_takes_its_words_or_a_number_in_range(tmp_path: Path) -> None:
    settings = Settings(tmp_path / "settings.json")
    for good in ("auto", "off", "0", "12", "999"):
        settings.set("gpu_layers", good)
    for bad in ("-1", "1000", "lots", "", "１２"):
        with pytest.raises(ValueError):
            settings.set("gpu_layers", bad)


def test_a_changed_range_changes_what_is_accepted() -> None:
    """The range lives only in the declaration: narrowing it there is all it takes."""
    assert setting("temperature").coerce(1.5) == 1.5
    with pytest.raises(ValueError, match="above 1"):
        replace(setting("temperature"), maximum=1.0).coerce(1.5)


def test_a_file_value_out_of_range_falls_back_with_a_warning_naming_the_range(
    tmp_path: Path,
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"context_size": 100, "overflow_policy": "explode"}))
    settings = Settings.load(path)
    assert settings["context_size"] == setting("context_size").default
    assert settings["overflow_policy"] == "drop_oldest"
    assert any("below 512" in w for w in settings.warnings)
    assert any("explode" in w and "refuse" in w for w in settings.warnings)


def test_schema_declares_what_the_dialog_and_the_engine_need() -> None:
    shown = [s for s in SCHEMA if s.group is not None]
    assert {s.group for s in shown} == set(GROUPS)
    assert all(s.label for s in SCHEMA)
    model_memory = {"model_memory", "model_memory_ram_mb", "model_memory_disk_mb", "prompt_lookup"}
    assert {"context_size", "threads", "gpu_layers"} | model_memory == RELOAD_KEYS
    assert setting("overflow_policy").choice_values == OVERFLOW_POLICIES
    for declared in shown:
        if declared.kind in (int, float) and not declared.choices:
            assert declared.minimum is not None and declared.maximum is not None, declared.key
            assert declared.step, declared.key
    assert setting("temperature").default == 0.7  # from GenerationSettings, not repeated


# --- telling front ends ------------------------------------------------------------------------


def test_update_saves_returns_and_tells_listeners(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    settings = Settings.load(path)
    heard: list[list[str]] = []
    settings.add_listener(heard.append)
    changed = settings.update({"theme": "dark", "temperature": 0.3, "top_k": 40})
    # top_k kept its value; schema order; the new temperature is the user's own from now on
    assert changed == ["temperature", "theme", "sampling_chosen"]
    assert heard == [changed]
    assert Settings.load(path)["theme"] == "dark"
    assert settings.update({"theme": "dark"}) == []
    assert heard == [changed]  # nothing changed, nobody called


def test_a_bad_value_in_update_changes_nothing(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "settings.json")
    heard: list[list[str]] = []
    settings.add_listener(heard.append)
    with pytest.raises(ValueError):
        settings.update({"theme": "dark", "temperature": 9.0})
    assert settings["theme"] == "system" and heard == []
    assert not (tmp_path / "settings.json").exists()


def test_set_is_told_at_the_next_save_and_removed_listeners_hear_nothing(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "settings.json")
    heard: list[list[str]] = []
    other: list[list[str]] = []
    settings.add_listener(heard.append)
    settings.add_listener(other.append)
    settings.set("max_tokens", 99)
    assert heard == []
    settings.save()
    assert heard == [["max_tokens"]]
    settings.remove_listener(other.append)
    settings.remove_listener(other.append)  # twice is harmless
    settings.update({"max_tokens": 100})
    assert heard == [["max_tokens"], ["max_tokens"]] and other == [["max_tokens"]]


def test_reload_takes_in_another_writers_change_and_keeps_unsaved_ones(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    app = Settings.load(path)
    heard: list[list[str]] = []
    app.add_listener(heard.append)
    cli = Settings.load(path)
    cli.update({"temperature": 0.1, "top_k": 7})

    app.set("top_k", 3)  # typed in the app, not saved yet
    # listeners had not heard of top_k either; both writers' chosen values are the user's own
    assert app.reload() == ["temperature", "top_k", "sampling_chosen"]
    assert app.chosen_sampling() == {"temperature", "top_k"}
    assert heard == [["temperature", "top_k", "sampling_chosen"]]
    assert app["temperature"] == 0.1 and app["top_k"] == 3
    assert app.own_changes() == ["top_k"]
    app.save()
    on_disk = Settings.load(path)
    assert on_disk["temperature"] == 0.1 and on_disk["top_k"] == 3
    assert app.reload() == [] and heard == [["temperature", "top_k", "sampling_chosen"]]


def test_save_keeps_a_change_it_did_not_make_and_tells_about_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    app = Settings.load(path)
    heard: list[list[str]] = []
    app.add_listener(heard.append)
    Settings.load(path).update({"theme": "light"})
    assert app.update({"max_tokens": 77}) == ["max_tokens", "theme"]
    assert heard == [["max_tokens", "theme"]]
    on_disk = Settings.load(path)
    assert on_disk["theme"] == "light" and on_disk["max_tokens"] == 77


def test_a_broken_file_on_reload_keeps_the_values_in_use(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    app = Settings.load(path)
    app.update({"theme": "dark"})
    path.write_text("{broken")
    assert app.reload() == []
    assert app["theme"] == "dark" and app.warnings


def test_a_busy_lock_fails_the_save_as_an_oserror_but_listeners_still_hear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "settings.json"
    settings = Settings.load(path)
    heard: list[list[str]] = []
    settings.add_listener(heard.append)
    monkeypatch.setattr(settings_module, "LOCK_TIMEOUT_S", 0.05)
    with FileLock(str(path) + ".lock"), pytest.raises(OSError):
        settings.update({"theme": "dark"})
    assert heard == [["theme"]] and settings["theme"] == "dark"
    assert settings.own_changes() == ["theme"]
    settings.save()  # the lock is free again: the change reaches the file
    assert Settings.load(path)["theme"] == "dark"


# --- two writers at once -----------------------------------------------------------------------


def _writer(
    path: str, key: str, values: list[Any], other: str, others: list[Any], barrier: Any
) -> None:
    """One process of the race: each round, both load, change their own key and save at the
    same moment, then each checks that the other's change of that round is in the file."""
    lost = []
    for mine, theirs in zip(values, others, strict=True):
        barrier.wait()
        settings = Settings.load(Path(path))
        settings.set(key, mine)
        settings.save()
        barrier.wait()
        now = Settings.load(Path(path))
        if now[key] != mine or now[other] != theirs:
            lost.append((now[key], mine, now[other], theirs))
    if lost:
        raise SystemExit(f"{key}: lost changes {lost}")


def test_two_processes_saving_at_once_lose_neither_change(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    Settings.load(path).save()
    temperatures = [round(0.01 * (n + 1), 2) for n in range(ROUNDS)]
    top_ks = [n + 1 for n in range(ROUNDS)]
    context = multiprocessing.get_context("spawn")  # no forked copy of pytest's threads
    barrier = context.Barrier(2)
    processes = [
        context.Process(
            target=_writer,
            args=(str(path), "temperature", temperatures, "top_k", top_ks, barrier),
        ),
        context.Process(
            target=_writer,
            args=(str(path), "top_k", top_ks, "temperature", temperatures, barrier),
        ),
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    assert [p.exitcode for p in processes] == [0, 0]
    final = Settings.load(path)
    assert final["temperature"] == temperatures[-1] and final["top_k"] == top_ks[-1]
    assert final.warnings == []


# --- window state, apart from the preferences ------------------------------------------------


def test_state_file_lives_beside_the_settings() -> None:
    paths = app_paths()
    assert paths.state_file == paths.config / "state.json"
    assert paths.state_file != paths.settings_file


def test_legacy_draft_and_first_run_move_to_the_state_file(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.json"
    state_file = tmp_path / "state.json"
    settings_file.write_text(
        json.dumps({"draft": "half a thought", "first_run_done": True, "theme": "dark"})
    )
    settings = Settings.load(settings_file)
    assert settings.warnings == []  # no "Unknown setting" for what used to live here
    assert settings["theme"] == "dark"
    with pytest.raises(KeyError):
        settings["draft"]

    state = WindowState.load(state_file, legacy_settings=settings_file)
    assert state["draft"] == "half a thought" and state["first_run_done"] is True
    assert state_file.exists()  # written at once: the next settings save drops the old keys

    settings.update({"temperature": 0.2})
    assert "draft" not in json.loads(settings_file.read_text())
    assert "first_run_done" not in json.loads(settings_file.read_text())
    again = WindowState.load(state_file, legacy_settings=settings_file)
    assert again["draft"] == "half a thought" and again["first_run_done"] is True


def test_state_file_wins_over_legacy_settings(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.json"
    state_file = tmp_path / "state.json"
    settings_file.write_text(json.dumps({"draft": "old", "first_run_done": True}))
    state_file.write_text(json.dumps({"draft": "new"}))
    state = WindowState.load(state_file, legacy_settings=settings_file)
    assert state["draft"] == "new" and state["first_run_done"] is False


def test_no_legacy_keys_write_no_state_file(tmp_path: Path) -> None:
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps({"theme": "dark"}))
    state = WindowState.load(tmp_path / "state.json", legacy_settings=settings_file)
    assert state["draft"] == "" and not (tmp_path / "state.json").exists()


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[1, 2]", b"\xff\xfe\x00garbage", b'{"draft": 5, "sidebar_width": -3}'],
)
def test_broken_state_file_gives_defaults(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    state = WindowState.load(path)
    assert state.as_dict() == {
        "draft": "",
        "first_run_done": False,
        "main_window_geometry": "",
        "sidebar_width": 0,
        "tray_notice_shown": False,
    }
    state.set("draft", "hello")
    state.save()  # saving repairs the file
    assert WindowState.load(path)["draft"] == "hello"


def test_state_round_trip_and_checks(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = WindowState.load(path)
    state.set("main_window_geometry", "AdnQywADAAA=")
    state.set("sidebar_width", 300)
    state.set("first_run_done", True)
    state.save()
    again = WindowState.load(path)
    assert again["main_window_geometry"] == "AdnQywADAAA=" and again["sidebar_width"] == 300
    assert again["first_run_done"] is True
    with pytest.raises(ValueError):
        state.set("sidebar_width", -1)
    with pytest.raises(ValueError):
        state.set("first_run_done", "yes")
    with pytest.raises(KeyError):
        state.set("temperature", 0.5)


def test_state_save_failure_is_an_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    state = WindowState.load(blocker / "state.json")
    with pytest.raises(OSError):
        state.save()


# --- what a person reading the file or the log sees ----------------------------------------------


def test_the_saved_file_is_indented_with_sorted_keys(tmp_path: Path) -> None:
    """One key a line, alphabetical: a person can read, diff and edit the file."""
    path = tmp_path / "settings.json"
    Settings.load(path).update({"theme": "dark", "max_tokens": 77})
    text = path.read_text(encoding="utf-8")
    values = json.loads(text)
    assert text == json.dumps(values, indent=2, sort_keys=True)
    assert list(values) == sorted(values)
    assert '\n  "theme": "dark"' in text


def test_a_file_at_the_size_limit_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    limit = settings_module.MAX_FILE_BYTES
    path = tmp_path / "settings.json"
    head = '{"theme": "dark", "padding": "'
    path.write_text(head + "x" * (limit - len(head) - 2) + '"}', encoding="utf-8")
    assert path.stat().st_size == limit
    at_limit = Settings.load(path)
    assert at_limit["theme"] == "dark"
    assert at_limit.warnings == ["Unknown setting 'padding' ignored."]

    path.write_text(head + "x" * (limit - len(head) - 1) + '"}', encoding="utf-8")
    too_large = Settings.load(path)
    assert too_large["theme"] == "system"
    assert too_large.warnings == [
        f"Settings file {path} could not be read (it is larger than 1024 KB); using defaults."
    ]


def test_warnings_show_values_cut_to_one_line(tmp_path: Path) -> None:
    """A value is shown as ``repr`` up to 80 characters; a longer one is cut to 79 and an
    ellipsis, so a warning stays one readable line."""
    eighty = "k" * 78  # its repr, quotes included, is exactly 80 characters
    longer = "m" * 79
    settings = Settings(tmp_path / "settings.json", {eighty: 1, longer: 2})
    assert settings.warnings == [
        f"Unknown setting {eighty!r} ignored.",
        "Unknown setting '" + "m" * 78 + "… ignored.",
    ]


def test_a_value_too_nested_to_show_is_described_instead(tmp_path: Path) -> None:
    class Bottomless:
        def __repr__(self) -> str:
            raise RecursionError

    settings = Settings(tmp_path / "settings.json", {"theme": Bottomless()})
    assert settings["theme"] == "system"
    assert settings.warnings == [
        "Setting 'theme' has an invalid value (nested too deeply to show) (not text); "
        "using the default 'system'."
    ]


def test_what_was_wrong_with_the_file_goes_to_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Loading records each problem (front ends show ``warnings`` their own way); a reload or a
    save that finds the file broken records it as a warning, the save saying it replaces it."""
    path = tmp_path / "settings.json"
    path.write_text('{"theme": "neon"}', encoding="utf-8")
    caplog.set_level("INFO", logger="assistant.settings")
    settings = Settings.load(path)
    problem = "Setting 'theme' has an invalid value 'neon' (not one of system, light, dark); "
    assert [r.getMessage() for r in caplog.records] == [problem + "using the default 'system'."]

    caplog.clear()
    path.write_text("{broken", encoding="utf-8")
    settings.reload()
    unreadable = f"Settings file {path} could not be read"
    assert [(r.levelname, r.getMessage()[: len(unreadable)]) for r in caplog.records] == [
        ("WARNING", unreadable)
    ]

    caplog.clear()
    settings.update({"max_tokens": 77})
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith(unreadable)
    assert record.getMessage().endswith("; using defaults. Saving replaces it.")


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        ('{"temperature": null}', "Setting 'temperature' has an invalid value None (missing)"),
        (
            '{"cloud_enabled": "yes"}',
            "Setting 'cloud_enabled' has an invalid value 'yes' (not true/",
        ),
        ('{"max_tokens": 1.5}', "Setting 'max_tokens' has an invalid value 1.5 (not a whole num"),
        ("[1, 2]", "could not be read (the file does not hold a JSON object); using defaults."),
        (
            '{"temperature": "hot"}',
            "Setting 'temperature' has an invalid value 'hot' (not a number)",
        ),
        ('{"temperature": 1e400}', "value inf (not a finite number)"),
        ('{"temperature": 1' + "0" * 400 + "}", "(not a finite number); using the default 0.7"),
        ('{"theme": 5}', "Setting 'theme' has an invalid value 5 (not text)"),
        ('{"gpu_layers": "many"}', "(not one of auto, off or a number)"),
        ('{"theme": "neon"}', "(not one of system, light, dark)"),
    ],
)
def test_each_kind_of_bad_value_is_named_in_its_warning(
    tmp_path: Path, content: str, warning: str
) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content, encoding="utf-8")
    [text] = Settings.load(path).warnings
    assert warning in text


def test_values_given_to_the_constructor_are_checked_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="assistant.settings")
    settings = Settings(tmp_path / "settings.json", {"top_k": -1})
    assert settings.as_dict() == {s.key: s.default for s in SCHEMA}
    assert [r.getMessage() for r in caplog.records] == settings.warnings
    assert "(below 0)" in settings.warnings[0]


def test_the_file_is_read_as_utf8_whatever_the_locale(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support import child_env

    path = tmp_path / "settings.json"
    prompt = "Réponds en français ✓"
    Settings.load(path).update({"system_prompt": prompt})
    assert Settings.load(path)["system_prompt"] == prompt
    # The app writes \u escapes, which any codec reads; a person editing the file in a text
    # editor saves the characters themselves, as UTF-8 bytes.
    path.write_bytes(json.dumps({"system_prompt": prompt}, ensure_ascii=False).encode("utf-8"))
    assert "é".encode() in path.read_bytes()
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from assistant.settings import Settings; "
            "print(ascii(Settings.load(Path(sys.argv[1]))['system_prompt']))",
            str(path),
        ],
        capture_output=True,
        text=True,
        env=child_env(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0"),
        timeout=60,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == ascii(prompt)
    # And in this process under a plain-ASCII locale (this also lets a mutation tool, which
    # traces only this process, see the difference).
    import locale

    before = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        assert Settings.load(path)["system_prompt"] == prompt
    finally:
        locale.setlocale(locale.LC_CTYPE, before)


def test_saving_creates_the_folders_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "config" / "offline-assistant" / "settings.json"
    Settings.load(path).update({"theme": "dark"})
    assert json.loads(path.read_text(encoding="utf-8"))["theme"] == "dark"
