"""The model catalog: the packaged file, strict validation and lookups."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import AssistantError, CatalogError, ModelNotFoundError
from assistant.models import catalog as catalog_module
from assistant.models.catalog import (
    Catalog,
    ModelSpec,
    format_parameters,
    load_catalog,
    parse_catalog,
)

REPO_ROOT = Path(__file__).resolve().parent.parent

_MISSING = object()


def _entry(**overrides: Any) -> dict[str, Any]:
    """A valid catalog entry; pass ``field=_MISSING`` to leave a field out."""
    entry: dict[str, Any] = {
        "id": "tiny-1b-instruct",
        "name": "Tiny 1B Instruct",
        "family": "Tiny",
        "repo": "example/Tiny-1B-Instruct-GGUF",
        "filename": "Tiny-1B-Instruct-Q4_K_M.gguf",
        "quantization": "Q4_K_M",
        "size_bytes": 800_000_000,
        "parameters": 1_200_000_000,
        "context_length": 8192,
        "license": "apache-2.0",
        "good_at": "Being small",
        "sha256": "ab" * 32,
        "layers": 16,
        "kv_heads": 8,
        "head_dim": 64,
    }
    entry.update(overrides)
    return {key: value for key, value in entry.items() if value is not _MISSING}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of plain text is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(value)


def _toml(*entries: dict[str, Any], version: Any = 1) -> str:
    lines = [] if version is _MISSING else [f"version = {_toml_value(version)}"]
    for entry in entries:
        lines += ["", "[[models]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in entry.items()]
    return "\n".join(lines) + "\n"


def _second(**overrides: Any) -> dict[str, Any]:
    return _entry(
        id="tiny-3b-instruct",
        filename="Tiny-3B-Instruct-Q4_K_M.gguf",
        parameters=3_000_000_000,
        **overrides,
    )


# --- the packaged catalog ------------------------------------------------------------------------


def test_packaged_catalog_has_enough_models_families_and_sizes() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 10
    assert len({spec.family for spec in catalog}) >= 5
    sizes = [spec.parameters for spec in catalog]
    assert min(sizes) <= 200_000_000
    assert max(sizes) >= 3_000_000_000
    families = {spec.family for spec in catalog}
    assert {"SmolLM2", "Llama 3.2", "Gemma 3", "Phi"} <= families
    assert families & {"Qwen2.5", "Qwen3"}


def test_packaged_catalog_entries_are_complete() -> None:
    for spec in load_catalog():
        assert spec.filename.endswith(".gguf")
        assert spec.sha256 is not None and len(spec.sha256) == 64
        # Every curated entry carries its architecture so memory estimates are exact.
        assert spec.layers and spec.kv_heads and spec.head_dim
        assert spec.size_bytes < spec.parameters * 2  # quantized: under 16 bits per weight


def test_packaged_catalog_is_read_through_importlib_resources(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # From an unrelated working directory, with the cache cleared, the package data still loads.
    monkeypatch.chdir(tmp_path)
    catalog_module._packaged_catalog.cache_clear()
    try:
        catalog = load_catalog()
    finally:
        catalog_module._packaged_catalog.cache_clear()
    package, relative = catalog_module.PACKAGED_CATALOG
    resource = resources.files(package).joinpath(*relative.split("/"))
    assert resource.is_file()
    assert len(parse_catalog(resource.read_text(encoding="utf-8"), "models.toml")) == len(catalog)


def test_top_level_models_toml_is_the_packaged_file() -> None:
    link = REPO_ROOT / "models.toml"
    assert link.is_symlink()
    assert link.resolve() == (REPO_ROOT / "assistant" / "data" / "models.toml").resolve()


def test_default_catalog_is_loaded_once() -> None:
    assert load_catalog() is load_catalog()


def test_catalog_entry_matches_the_real_test_model(model_path: Path) -> None:
    spec = load_catalog().get("smollm2-135m-instruct")
    assert spec.filename == model_path.name
    assert spec.size_bytes == model_path.stat().st_size
    assert spec.sha256 == hashlib.sha256(model_path.read_bytes()).hexdigest()


def test_load_catalog_from_a_path(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text(_toml(_entry(), _second()), encoding="utf-8")
    catalog = load_catalog(path)
    assert [spec.id for spec in catalog] == ["tiny-1b-instruct", "tiny-3b-instruct"]


def test_load_catalog_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="Cannot read"):
        load_catalog(tmp_path / "absent.toml")


# --- parsing and validation ----------------------------------------------------------------------


def test_parse_builds_model_specs() -> None:
    catalog = parse_catalog(_toml(_entry(sha256="AB" * 32)), "test.toml")
    (spec,) = catalog
    assert spec == ModelSpec(
        id="tiny-1b-instruct",
        name="Tiny 1B Instruct",
        family="Tiny",
        repo="example/Tiny-1B-Instruct-GGUF",
        filename="Tiny-1B-Instruct-Q4_K_M.gguf",
        quantization="Q4_K_M",
        size_bytes=800_000_000,
        parameters=1_200_000_000,
        context_length=8192,
        license="apache-2.0",
        good_at="Being small",
        sha256="ab" * 32,  # normalised to lower case
        layers=16,
        kv_heads=8,
        head_dim=64,
    )


def test_optional_fields_may_be_left_out() -> None:
    entry = _entry(sha256=_MISSING, layers=_MISSING, kv_heads=_MISSING, head_dim=_MISSING)
    (spec,) = parse_catalog(_toml(entry), "test.toml")
    assert spec.sha256 is None
    assert (spec.layers, spec.kv_heads, spec.head_dim) == (None, None, None)


def test_error_message_names_file_entry_id_field_and_value() -> None:
    text = _toml(_entry(), _second(), _entry(id="llama-3.2-1b-instruct", size_bytes="big"))
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "models.toml")
    assert str(caught.value) == (
        'models.toml: entry 3 ("llama-3.2-1b-instruct"): field "size_bytes" '
        'must be a positive integer, got "big".'
    )
    assert isinstance(caught.value, AssistantError)


@pytest.mark.parametrize(
    ("entry", "field", "detail"),
    [
        (_entry(license=_MISSING), "license", "is missing"),
        (_entry(good_at=_MISSING), "good_at", "is missing"),
        (_entry(parameters=_MISSING), "parameters", "is missing"),
        (_entry(name=42), "name", "must be a non-empty string, got 42"),
        (_entry(family="  "), "family", "must be a non-empty string"),
        (_entry(context_length="8k"), "context_length", 'must be a positive integer, got "8k"'),
        (_entry(context_length=0), "context_length", "must be a positive integer, got 0"),
        (_entry(parameters=-5), "parameters", "must be a positive integer, got -5"),
        (_entry(size_bytes=1.5), "size_bytes", "must be a positive integer, got 1.5"),
        (_entry(size_bytes=True), "size_bytes", "must be a positive integer, got true"),
        (_entry(layers=[16]), "layers", "must be a positive integer, got an array"),
        (_entry(kv_heads=0), "kv_heads", "must be a positive integer"),
        (_entry(sha256="abc123"), "sha256", 'must be 64 hexadecimal digits, got "abc123"'),
        (_entry(sha256="zz" * 32), "sha256", "must be 64 hexadecimal digits"),
        (_entry(sha256=7), "sha256", "must be 64 hexadecimal digits, got 7"),
        (_entry(filename="model.bin"), "filename", 'must end with .gguf, got "model.bin"'),
        (_entry(filename="../evil.gguf"), "filename", "must be a path inside the repository"),
        (_entry(filename="/abs.gguf"), "filename", "must be a path inside the repository"),
        (_entry(repo="just-a-name"), "repo", 'must look like "owner/name"'),
        (_entry(repo="a/b/c"), "repo", 'must look like "owner/name"'),
        (_entry(repo="owner/"), "repo", 'must look like "owner/name"'),
        (_entry(sizebytes=1), "sizebytes", 'is not a catalog field (did you mean "size_bytes"?)'),
    ],
)
def test_invalid_field_names_entry_and_field(
    entry: dict[str, Any], field: str, detail: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_toml(_second(), entry), "models.toml")
    message = str(caught.value)
    assert message.startswith('models.toml: entry 2 ("tiny-1b-instruct"): ')
    assert f'field "{field}" {detail}' in message


@pytest.mark.parametrize("bad_id", ["Tiny-1B", "tiny 1b", "-tiny", "tiny/1b", "x" * 65, ""])
def test_id_must_be_a_slug(bad_id: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_toml(_entry(id=bad_id)), "models.toml")
    message = str(caught.value)
    assert message.startswith("models.toml: entry 1")
    assert 'field "id"' in message


def test_missing_id_names_the_entry_by_index() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_toml(_second(), _entry(id=_MISSING)), "models.toml")
    assert str(caught.value) == 'models.toml: entry 2: field "id" is missing.'


def test_duplicate_id_is_rejected() -> None:
    text = _toml(_entry(), _second(), _entry(filename="Other.gguf"))
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "models.toml")
    assert str(caught.value) == (
        'models.toml: entry 3 ("tiny-1b-instruct"): field "id" duplicates entry 1; '
        "ids must be unique."
    )


def test_duplicate_file_is_rejected() -> None:
    text = _toml(_entry(), _entry(id="other", repo="EXAMPLE/tiny-1b-instruct-gguf"))
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "models.toml")
    assert str(caught.value).startswith('models.toml: entry 2 ("other"): field "filename"')


def test_toml_syntax_error_gives_the_line() -> None:
    text = _toml(_entry()) + "\n[[models]]\nid = tiny-2\n"
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "models.toml")
    message = str(caught.value)
    assert message.startswith("models.toml: not valid TOML:")
    broken_line = text.splitlines().index("id = tiny-2") + 1
    assert f"line {broken_line}" in message


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        (_toml(_entry(), version=2), '"version" must be 1, got 2'),
        (_toml(_entry(), version="1"), '"version" must be 1, got "1"'),
        (_toml(_entry(), version=_MISSING), '"version" is missing'),
        ("version = 1\n", "no [[models]] entries"),
        ("version = 1\nmodels = []\n", "no [[models]] entries"),
        ('version = 1\nmodels = ["a"]\n', '"models" must be an array of tables'),
        ("version = 1\nmodel = 3\n" + _toml(_entry(), version=_MISSING), 'top-level key "model"'),
    ],
)
def test_document_level_errors(text: str, detail: str) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(text, "models.toml")
    assert str(caught.value).startswith("models.toml: ")
    assert detail in str(caught.value)


# --- lookups -------------------------------------------------------------------------------------


def test_get_iter_len_and_contains() -> None:
    catalog = parse_catalog(_toml(_entry(), _second()), "test.toml")
    assert len(catalog) == 2
    assert [spec.id for spec in catalog] == ["tiny-1b-instruct", "tiny-3b-instruct"]
    assert catalog.get("tiny-3b-instruct").parameters == 3_000_000_000
    assert "tiny-1b-instruct" in catalog
    assert "nope" not in catalog


def test_get_unknown_id_suggests_close_ids() -> None:
    catalog = load_catalog()
    with pytest.raises(ModelNotFoundError) as caught:
        catalog.get("qwen2.5-1.5b")
    message = str(caught.value)
    assert message.startswith('No model "qwen2.5-1.5b" is in the catalog. Did you mean ')
    assert '"qwen2.5-1.5b-instruct"' in message
    assert caught.value.hint

    with pytest.raises(ModelNotFoundError) as caught:
        catalog.get("lama-3.2-1b-instruct")
    assert '"llama-3.2-1b-instruct"' in str(caught.value)


def test_get_unknown_id_without_anything_close() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        load_catalog().get("zzzzzzzz")
    assert str(caught.value) == 'No model "zzzzzzzz" is in the catalog.'


def test_find_by_file() -> None:
    catalog = load_catalog()
    spec = catalog.find_by_file(
        "bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    )
    assert spec is not None and spec.id == "llama-3.2-1b-instruct"
    # Hub repository ids ignore case; file names do not.
    assert catalog.find_by_file("BARTOWSKI/llama-3.2-1b-instruct-gguf", spec.filename) is spec
    assert catalog.find_by_file(spec.repo, spec.filename.lower()) is None
    assert catalog.find_by_file("someone/else", spec.filename) is None


def test_catalog_constructor_rejects_duplicate_ids() -> None:
    (spec,) = parse_catalog(_toml(_entry()), "test.toml")
    with pytest.raises(ValueError, match="duplicate"):
        Catalog([spec, spec])


@pytest.mark.parametrize(
    ("count", "label"),
    [
        (134_515_008, "135M"),
        (361_821_120, "362M"),
        (596_049_920, "0.6B"),
        (999_885_952, "1B"),
        (1_543_714_304, "1.5B"),
        (4_022_468_096, "4B"),
        (12_000, "1M"),
    ],
)
def test_parameters_label(count: int, label: str) -> None:
    assert format_parameters(count) == label
    (spec,) = parse_catalog(_toml(_entry(parameters=count)), "test.toml")
    assert spec.parameters_label == label
