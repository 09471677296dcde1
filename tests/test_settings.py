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
    assert {"context_size", "threads", "gpu_layers"} == RELOAD_KEYS
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
