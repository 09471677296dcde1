"""Sampling that suits each model: the catalog's and the file's recommendations, the user's own
values winning, and what llama.cpp's sampler really receives (the real SmolLM2 model)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from assistant.engine.base import ChatMessage, GenerationSettings, SamplingPreset
from assistant.errors import CatalogError
from assistant.models.catalog import load_catalog, parse_catalog
from assistant.models.gguf_file import read_gguf_info
from assistant.models.sampling import preset_from_metadata, sampling_for_file
from assistant.settings import SAMPLING_KEYS, Settings
from tests.model_files import with_sampling_metadata

ENTRY = """
version = 1
[[models]]
id = "tiny"
name = "Tiny"
family = "Tiny"
repo = "owner/tiny-GGUF"
filename = "tiny.gguf"
quantization = "Q4_K_M"
size_bytes = 1000
parameters = 1000
context_length = 2048
license = "mit"
good_at = "tests"
"""

QWEN3 = SamplingPreset(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0, source="card")


# --- the catalog -----------------------------------------------------------------------------


def test_catalog_entries_carry_revision_and_sampling() -> None:
    text = ENTRY + (
        'revision = "0123456789abcdef0123456789abcdef01234567"\n'
        '[models.sampling]\ntemperature = 0.6\ntop_k = 20\nsource = "the card"\n'
    )
    spec = parse_catalog(text, "models.toml").get("tiny")
    assert spec.revision == "0123456789abcdef0123456789abcdef01234567"
    assert spec.sampling == SamplingPreset(temperature=0.6, top_k=20, source="the card")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('revision = "main"\n', 'field "revision" must be a commit id of 40 lowercase hex'),
        ("[models.sampling]\ntemperature = 3.0\n", 'field "sampling.temperature" must be a'),
        ("[models.sampling]\ntop_k = 2.5\n", 'field "sampling.top_k" must be a whole number'),
        ("[models.sampling]\ntemprature = 0.5\n", '(did you mean "temperature"?)'),
        ('[models.sampling]\nsource = "x"\n', 'field "sampling" names no sampling value'),
        ("sampling = 0.7\n", 'field "sampling" must be a table'),
    ],
)
def test_bad_revision_or_sampling_is_named(extra: str, message: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(ENTRY + extra, "models.toml")
    assert str(caught.value).startswith('models.toml: entry 1 ("tiny"): ')
    assert message in str(caught.value)


def test_the_packaged_catalog_recommends_for_qwen3_and_gemma3() -> None:
    catalog = load_catalog()
    qwen = catalog.get("qwen3-1.7b").sampling
    assert qwen is not None and qwen.values() == {
        "temperature": 0.6,
        "top_p": 0.95,
        "top_k": 20,
        "min_p": 0.0,
    }
    gemma = catalog.get("gemma-3-1b-it").sampling
    assert gemma is not None and gemma.top_k == 64 and gemma.temperature == 1.0
    assert catalog.get("smollm2-135m-instruct").sampling is None  # none published
    for spec in catalog:
        assert spec.revision is None or len(spec.revision) == 40


# --- the file's metadata ---------------------------------------------------------------------


def test_gguf_sampling_metadata_becomes_a_preset() -> None:
    preset = preset_from_metadata(
        {
            "general.sampling.temp": 0.25,
            "general.sampling.top_k": 7,
            "general.sampling.top_p": 1.5,  # out of range: not believed
            "general.sampling.penalty_repeat": 1.05,
        }
    )
    assert preset == SamplingPreset(
        temperature=0.25, top_k=7, repeat_penalty=1.05, source="the model file"
    )
    assert preset_from_metadata({"general.name": "x"}) is None


def test_a_catalog_file_takes_its_entry_over_its_header(model_path: Path, tmp_path: Path) -> None:
    info = read_gguf_info(model_path)  # SmolLM2's file: its catalog entry recommends nothing
    assert sampling_for_file(info, load_catalog()) is None
    catalog = parse_catalog(
        ENTRY.replace('"tiny.gguf"', f'"{model_path.name}"').replace(
            "size_bytes = 1000", f"size_bytes = {model_path.stat().st_size}"
        )
        + "[models.sampling]\ntemperature = 0.3\n",
        "models.toml",
    )
    preset = sampling_for_file(info, catalog)
    assert preset is not None and preset.temperature == 0.3


# --- the user's own values -------------------------------------------------------------------


def test_values_the_user_set_are_theirs_and_the_rest_follow_the_model(tmp_path: Path) -> None:
    settings = Settings.load(tmp_path / "settings.json")
    assert settings.chosen_sampling() == frozenset()
    assert settings.generation_settings().follow_model == frozenset(SAMPLING_KEYS)

    settings.update({"temperature": 0.2, "top_k": 40})  # top_k is unchanged: not chosen
    again = Settings.load(tmp_path / "settings.json")
    assert again.chosen_sampling() == {"temperature"}
    generation = again.generation_settings()
    assert generation.follow_model == frozenset(SAMPLING_KEYS) - {"temperature"}
    merged = generation.merged(QWEN3)
    assert (merged.temperature, merged.top_k, merged.top_p, merged.min_p) == (0.2, 20, 0.95, 0.0)
    assert merged.repeat_penalty == generation.repeat_penalty  # Qwen3 recommends none

    assert again.follow_model(["temperature"]) == ["temperature", "sampling_chosen"]
    final = Settings.load(tmp_path / "settings.json")
    assert final.chosen_sampling() == frozenset() and final["temperature"] == 0.7


def test_a_file_from_before_counts_changed_values_as_chosen(tmp_path: Path) -> None:
    """Older versions saved every value, defaults included: only a value other than the default
    was the user's choice."""
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"temperature": 0.7, "top_p": 0.5, "top_k": 40, "theme": "dark"}))
    settings = Settings.load(path)
    assert settings.chosen_sampling() == {"top_p"}
    settings.update({"theme": "light"})
    assert json.loads(path.read_text())["sampling_chosen"] == "top_p"


def test_override_makes_a_request_value_the_users() -> None:
    base = GenerationSettings(follow_model=frozenset(SAMPLING_KEYS))
    asked = base.override(temperature=0.0, stop=("x",))
    assert asked.merged(QWEN3).temperature == 0.0
    assert asked.merged(QWEN3).top_k == 20
    assert GenerationSettings(temperature=0.9).merged(QWEN3).temperature == 0.9  # literal
    assert asked.to_dict()["follow_model"] == ["min_p", "repeat_penalty", "top_k", "top_p"]


# --- what the engine's sampler receives ------------------------------------------------------


@pytest.fixture()
def sampler_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every llama.cpp sampler the engine builds (the real sampler
    is still built and used)."""
    from llama_cpp import Llama

    calls: list[dict[str, Any]] = []
    real = Llama._init_sampler

    def spy(self: Llama, *args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Llama, "_init_sampler", spy)
    yield calls


def _ask(engine: Any, settings: GenerationSettings) -> None:
    engine.stream_chat([ChatMessage("user", "Hi")], settings).run()


@pytest.mark.slow
def test_the_engine_samples_with_the_models_values_unless_the_user_set_them(
    model_path: Path, tmp_path: Path, sampler_calls: list[dict[str, Any]]
) -> None:
    from assistant.engine.local import LocalEngine

    settings = Settings.load(tmp_path / "settings.json")
    settings.update({"max_tokens": 2, "temperature": 0.0})  # the user's own temperature
    engine = LocalEngine(model_path, n_ctx=512, n_threads=1, sampling=QWEN3)
    try:
        _ask(engine, settings.generation_settings())
        settings.follow_model(["temperature"])
        _ask(engine, settings.generation_settings())
    finally:
        engine.close()
    first, second = sampler_calls
    assert first == {"top_k": 20, "top_p": 0.95, "min_p": 0.0, "temp": 0.0, "repeat_penalty": 1.1}
    assert second["temp"] == 0.6


@pytest.mark.slow
def test_an_imported_files_own_sampling_reaches_the_sampler(
    model_path: Path, tmp_path: Path, sampler_calls: list[dict[str, Any]]
) -> None:
    from assistant.engine.local import LocalEngine

    tagged = with_sampling_metadata(
        model_path, tmp_path / "tagged.gguf", {"temp": 0.25, "top_k": 7, "penalty_repeat": 1.05}
    )
    settings = Settings.load(tmp_path / "settings.json")
    settings.update({"max_tokens": 2})
    engine = LocalEngine(tagged, n_ctx=512, n_threads=1)
    try:
        assert engine.sampling is not None and engine.sampling.source == "the model file"
        _ask(engine, settings.generation_settings())
    finally:
        engine.close()
    (received,) = sampler_calls
    assert received["temp"] == pytest.approx(0.25)
    assert received["top_k"] == 7
    assert received["repeat_penalty"] == pytest.approx(1.05)
    assert received["top_p"] == 0.95 and received["min_p"] == 0.05  # the app's defaults


# --- the settings dialog ---------------------------------------------------------------------


@pytest.mark.gui
def test_the_dialog_shows_the_models_values_and_gives_them_back(
    qtbot: QtBot, tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QDoubleSpinBox

    from assistant.ui.settings_dialog import SettingsDialog

    settings = Settings.load(tmp_path / "settings.json")
    settings.update({"top_p": 0.5})  # the user's own
    dialog = SettingsDialog(settings, tmp_path / "data", gpu_offload=False, model_sampling=QWEN3)
    qtbot.addWidget(dialog)
    dialog.show()
    rows = dialog.sampling.rows
    temperature = dialog.editors["temperature"]
    assert isinstance(temperature, QDoubleSpinBox)
    assert temperature.value() == pytest.approx(0.6)
    assert rows["temperature"].note.text() == "From the model (card): 0.6"
    assert not rows["temperature"].reset_button.isEnabled()
    assert rows["top_p"].note.text() == "Your own value. The model recommends 0.95."
    assert rows["repeat_penalty"].note.text() == "The app's default: 1.1"

    rows["top_p"].reset_button.click()  # back to the model's 0.95
    top_p = dialog.editors["top_p"]
    assert isinstance(top_p, QDoubleSpinBox) and top_p.value() == pytest.approx(0.95)
    temperature.setValue(0.9)  # typed by the user: theirs now
    assert rows["temperature"].note.text() == "Your own value. The model recommends 0.6."
    dialog.accept()

    saved = Settings.load(tmp_path / "settings.json")
    assert saved.chosen_sampling() == {"temperature"}
    assert saved["temperature"] == 0.9 and saved["top_p"] == 0.95  # the default, in the file
    assert saved.generation_settings().merged(QWEN3).top_p == 0.95
