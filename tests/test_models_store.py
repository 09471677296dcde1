"""The registry of installed models, imports and removals, with the real SmolLM2 GGUF."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import keyring
import keyring.errors
import pytest

from assistant import secrets
from assistant.errors import (
    AssistantError,
    CorruptModelError,
    DiskFullError,
    ModelFileMissingError,
    ModelIdTakenError,
    ModelNotFoundError,
    NoModelError,
    NotARegularFileError,
    NotGGUFError,
    SecretStoreError,
    UnsupportedArchitectureError,
)
from assistant.models.catalog import load_catalog
from assistant.models.hub_cache import HubCache
from assistant.models.store import InstalledModel, ModelStore, slugify
from assistant.paths import app_paths
from tests.hub_server import small_filesystem
from tests.keyring_backend import MemoryKeyring
from tests.model_files import write_unknown_architecture

CATALOG_ID = "smollm2-135m-instruct"


@pytest.fixture
def store() -> ModelStore:
    return ModelStore(app_paths().ensure())


@pytest.fixture
def user_copy(model_path: Path, tmp_path: Path) -> Path:
    """The model as a user's own file, with a name the catalog does not know."""
    target = tmp_path / "downloads" / "My-Smol.Q4_1.gguf"
    target.parent.mkdir()
    target.write_bytes(model_path.read_bytes())
    return target


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.exists() else []


# --- import ------------------------------------------------------------------------------------


def test_import_in_place_registers_the_users_file_and_makes_it_default(
    store: ModelStore, user_copy: Path
) -> None:
    model = store.import_file(user_copy)

    assert model.id == "my-smol-q4_1"
    assert model.path == user_copy.resolve()
    assert model.source == "import" and not model.owned
    assert model.size_bytes == user_copy.stat().st_size
    assert model.name  # from the GGUF header
    assert store.default_id() == model.id
    assert store.resolve(model.id) == user_copy.resolve()
    # Importing the same file again changes nothing.
    assert store.import_file(user_copy) == model
    assert len(store.list_installed()) == 1


def test_import_copy_is_owned_hashed_and_leaves_no_temp_files(
    store: ModelStore, user_copy: Path
) -> None:
    seen: list[tuple[int, int]] = []
    model = store.import_file(user_copy, copy=True, on_progress=lambda d, t: seen.append((d, t)))

    assert model.owned and model.path.parent == store.paths.models_dir
    assert model.path.read_bytes() == user_copy.read_bytes()
    assert model.sha256 == hashlib.sha256(user_copy.read_bytes()).hexdigest()
    assert seen[-1] == (user_copy.stat().st_size,) * 2
    assert leftovers(store.paths.models_dir) == []
    # A second copy gets its own file and its own id.
    second = store.import_file(user_copy, copy=True)
    assert second.id != model.id and second.path != model.path


def test_import_recognises_the_catalog_model_by_name_and_size(
    model_path: Path, tmp_path: Path
) -> None:
    store = ModelStore(app_paths().ensure(), catalog=load_catalog())
    model = store.import_file(model_path)
    assert model.id == CATALOG_ID
    assert model.name == load_catalog().get(CATALOG_ID).name


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (b"", NotGGUFError),
        (os.urandom(64 * 1024), NotGGUFError),
        (b"<html>Rate limit exceeded</html>", NotGGUFError),
        ("truncated", CorruptModelError),
    ],
    ids=["empty", "random-bytes", "html-page", "truncated"],
)
def test_bad_files_are_refused_and_nothing_is_registered(
    store: ModelStore, model_path: Path, tmp_path: Path, content: bytes | str, error: type
) -> None:
    bad = tmp_path / "bad.gguf"
    if content == "truncated":
        with model_path.open("rb") as source:
            bad.write_bytes(source.read(model_path.stat().st_size // 2))
    else:
        assert isinstance(content, bytes)
        bad.write_bytes(content)
    for copy in (False, True):
        with pytest.raises(error):
            store.import_file(bad, copy=copy)
    assert store.list_installed() == []
    assert store.default_id() is None
    assert leftovers(store.paths.models_dir) == []


def test_import_of_a_missing_path(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissingError, match="no file"):
        store.import_file(tmp_path / "nope.gguf")
    # A folder is not "no file": it is named for what it is (issue 8).
    with pytest.raises(NotARegularFileError, match="is a folder"):
        store.import_file(tmp_path)


def test_import_copy_refused_when_the_disk_is_too_small(
    user_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_filesystem(tmp_path / "small", 50) as disk:
        monkeypatch.setenv("OFFLINE_ASSISTANT_HOME", str(disk / "home"))
        store = ModelStore(app_paths().ensure())
        with pytest.raises(DiskFullError, match="Not enough free disk space"):
            store.import_file(user_copy, copy=True)
        assert store.list_installed() == []
        assert list(store.paths.models_dir.iterdir()) == []


def test_import_copy_when_the_disk_fills_up_midway(
    user_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_filesystem(tmp_path / "small", 110) as disk:
        monkeypatch.setenv("OFFLINE_ASSISTANT_HOME", str(disk / "home"))
        monkeypatch.setattr("assistant.models.store.MIN_FREE_MARGIN", 1024 * 1024)
        store = ModelStore(app_paths().ensure())
        filler = disk / "filler"

        def fill(done: int, total: int) -> None:
            if not filler.exists():
                stat = os.statvfs(disk)
                filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 2 * 1024 * 1024))

        with pytest.raises(DiskFullError, match="filled up") as caught:
            store.import_file(user_copy, copy=True, on_progress=fill)
        assert "unfinished copy was removed" in caught.value.message
        assert list(store.paths.models_dir.iterdir()) == []
        assert store.list_installed() == []


@pytest.mark.parametrize("copy", [False, True], ids=["in-place", "copy"])
def test_two_stores_importing_files_of_one_name_at_once_both_keep_theirs(
    user_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, copy: bool
) -> None:
    other = tmp_path / "elsewhere" / user_copy.name
    other.parent.mkdir()
    other.write_bytes(user_copy.read_bytes())
    # Two processes (the GUI and a CLI, say) on one home.
    first, second = ModelStore(app_paths().ensure()), ModelStore(app_paths().ensure())
    first_register = first.register

    def register_after_the_other(model: InstalledModel, **options: Any) -> InstalledModel:
        # The second store does a whole import between the first one's checks and its edit.
        second.import_file(other, copy=copy)
        return first_register(model, **options)

    monkeypatch.setattr(first, "register", register_after_the_other)
    mine = first.import_file(user_copy, copy=copy)

    installed = second.list_installed()
    assert sorted(m.id for m in installed) == ["my-smol-q4_1", "my-smol-q4_1-2"]
    assert mine in installed
    assert len({m.path for m in installed}) == 2 and all(m.path.is_file() for m in installed)


def test_a_copy_never_replaces_a_file_another_import_just_finished(
    store: ModelStore, user_copy: Path
) -> None:
    theirs = store.paths.models_dir / user_copy.name

    def another_import_finishes(done: int, total: int) -> None:
        if not theirs.exists():
            theirs.write_bytes(b"their copy")

    model = store.import_file(user_copy, copy=True, on_progress=another_import_finishes)
    assert model.path == store.paths.models_dir / "My-Smol.Q4_1-2.gguf"
    assert model.path.read_bytes() == user_copy.read_bytes()
    assert theirs.read_bytes() == b"their copy"
    assert leftovers(store.paths.models_dir) == []


def test_import_with_an_id_already_taken_is_refused_with_a_hint(
    store: ModelStore, user_copy: Path
) -> None:
    store.import_file(user_copy, model_id="mine")
    with pytest.raises(ModelIdTakenError, match="already installed") as caught:
        store.import_file(user_copy, copy=True, model_id="mine")
    assert isinstance(caught.value, AssistantError)
    assert caught.value.hint == "Give this one another id, or remove the installed one first."
    assert caught.value.command == f"offline-assistant models import {user_copy} --copy --id NEW_ID"
    assert list(store.paths.models_dir.glob("*")) == []  # refused before copying
    assert [m.id for m in store.list_installed()] == ["mine"]


def test_an_id_taken_while_copying_drops_the_copy(
    store: ModelStore, user_copy: Path, tmp_path: Path
) -> None:
    theirs = InstalledModel(
        id="mine", name="Theirs", path=tmp_path / "theirs.gguf", size_bytes=1, source="import"
    )

    def another_process_registers(done: int, total: int) -> None:
        if store.find("mine") is None:
            ModelStore(store.paths).register(theirs)

    with pytest.raises(ModelIdTakenError) as caught:
        store.import_file(
            user_copy, copy=True, model_id="mine", on_progress=another_process_registers
        )
    assert caught.value.command == f"offline-assistant models import {user_copy} --copy --id NEW_ID"
    assert [(m.id, m.name) for m in store.list_installed()] == [("mine", "Theirs")]
    assert list(store.paths.models_dir.iterdir()) == []


def test_a_catalog_id_is_only_for_that_catalog_models_file(
    model_path: Path, user_copy: Path
) -> None:
    store = ModelStore(app_paths().ensure(), catalog=load_catalog())
    with pytest.raises(ModelIdTakenError, match="catalog model"):
        store.import_file(user_copy, model_id=CATALOG_ID)  # the same bytes, another file name
    assert store.list_installed() == []
    model = store.import_file(model_path, model_id=CATALOG_ID)
    assert model.id == CATALOG_ID and model.name == load_catalog().get(CATALOG_ID).name


def test_import_in_place_names_the_model_from_its_header(
    store: ModelStore, user_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.models import gguf_file

    parsed: list[Path] = []

    def counting(path: Path | str) -> gguf_file.GGUFInfo:
        parsed.append(Path(path))
        return gguf_file.read_gguf_info(path)

    monkeypatch.setattr("assistant.models.store.read_gguf_info", counting)
    model = store.import_file(user_copy)
    assert model.name == gguf_file.read_gguf_info(user_copy).name
    assert parsed == [user_copy.resolve()]  # the header is read once


def test_lookups_read_the_registry_once(
    store: ModelStore, user_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = store.import_file(user_copy)
    loads: list[int] = []
    load = store._load
    monkeypatch.setattr(store, "_load", lambda: loads.append(1) or load())
    with pytest.raises(ModelNotFoundError, match="Did you mean my-smol-q4_1"):
        store.get("my-smol-q4")
    assert store.default_model() == model
    assert len(loads) == 2


# --- remove, missing files, default --------------------------------------------------------------


def test_remove_deletes_owned_copy_and_frees_space(store: ModelStore, user_copy: Path) -> None:
    model = store.import_file(user_copy, copy=True)
    removal = store.remove(model.id)
    assert removal.deleted == model.path and not model.path.exists()
    assert removal.freed_bytes == model.size_bytes
    assert store.list_installed() == []
    assert user_copy.exists()


def test_remove_never_deletes_a_file_imported_in_place(store: ModelStore, user_copy: Path) -> None:
    model = store.import_file(user_copy)
    removal = store.remove(model.id)  # delete_file=True, still the user's file
    assert removal.deleted is None and removal.freed_bytes == 0
    assert "left where it is" in removal.note
    assert user_copy.exists()
    with pytest.raises(ModelNotFoundError):
        store.get(model.id)


def test_file_deleted_behind_the_apps_back_is_flagged(store: ModelStore, user_copy: Path) -> None:
    model = store.import_file(user_copy, copy=True)
    model.path.unlink()

    (listed,) = store.list_installed()
    assert listed.missing
    with pytest.raises(ModelFileMissingError, match="deleted or moved") as caught:
        store.resolve(model.id)
    assert caught.value.hint == "Import the file again, or remove the model from the list."
    assert caught.value.command == f"offline-assistant models rm {model.id}"
    removal = store.remove(model.id)
    assert removal.note == "Its file was already gone."
    assert store.list_installed() == []


def test_first_model_is_default_until_changed_and_removal_moves_it(
    store: ModelStore, user_copy: Path
) -> None:
    with pytest.raises(NoModelError):
        store.default_model()
    first = store.import_file(user_copy, copy=True)
    second = store.import_file(user_copy, copy=True)
    assert store.default_id() == first.id
    store.set_default(second.id)
    assert store.default_model().id == second.id
    with pytest.raises(ModelNotFoundError):
        store.set_default("not-installed")
    store.remove(second.id)
    assert store.default_id() == first.id
    store.remove(first.id)
    assert store.default_id() is None


def test_registry_is_plain_json_and_a_broken_one_is_kept_aside(
    store: ModelStore, user_copy: Path
) -> None:
    store.import_file(user_copy)
    data = json.loads(store.file.read_text())
    assert data["version"] == 1 and data["default"] == "my-smol-q4_1"
    assert data["models"]["my-smol-q4_1"]["path"] == str(user_copy.resolve())
    assert "missing" not in data["models"]["my-smol-q4_1"]

    store.file.write_text("{ not json")
    assert store.list_installed() == []
    assert len(list(store.file.parent.glob("installed_models.json.broken-*"))) == 1
    store.import_file(user_copy)  # works again
    assert [m.id for m in store.list_installed()] == ["my-smol-q4_1"]


def test_a_broken_registry_is_moved_aside_once_not_copied_on_every_read(
    store: ModelStore,
) -> None:
    store.file.write_text("[]")
    for _ in range(3):
        assert store.list_installed() == [] and store.default_id() is None
    (backup,) = store.file.parent.glob("installed_models.json.broken-*")
    assert backup.read_text() == "[]" and not store.file.exists()

    store.file.write_text("{ broken again")
    store.list_installed()
    backups = list(store.file.parent.glob("installed_models.json.broken-*"))
    assert len(backups) == 2 and backup in backups  # the first evidence is never overwritten


def test_register_replaces_an_entry_and_keeps_others(store: ModelStore, tmp_path: Path) -> None:
    entry = InstalledModel(
        id="a",
        name="A",
        path=tmp_path / "a.gguf",
        size_bytes=1,
        source="hub",
        repo="o/r",
        filename="a.gguf",
    )
    store.register(entry)
    store.register(
        InstalledModel(id="b", name="B", path=tmp_path / "b.gguf", size_bytes=2, source="hub")
    )
    store.register(entry.__class__(**{**entry.__dict__, "size_bytes": 5}))
    assert [(m.id, m.size_bytes) for m in store.list_installed()] == [("a", 5), ("b", 2)]
    assert all(m.missing for m in store.list_installed())


@pytest.mark.parametrize(
    ("filename", "slug"),
    [
        ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct-q4_1"),
        ("Qwen3 4B (my finetune).GGUF", "qwen3-4b-my-finetune"),
        ("....gguf", "model"),
    ],
)
def test_slugs(filename: str, slug: str) -> None:
    assert slugify(filename) == slug


def test_unique_id_avoids_installed_and_catalog_ids(tmp_path: Path, user_copy: Path) -> None:
    store = ModelStore(app_paths().ensure(), catalog=load_catalog())
    assert store.unique_id(f"{CATALOG_ID}.gguf") == f"{CATALOG_ID}-2"
    store.import_file(user_copy)
    assert store.unique_id(user_copy.name) == "my-smol-q4_1-2"


# --- secrets -------------------------------------------------------------------------------------


def test_hf_token_lives_in_the_keyring_not_in_a_file(
    memory_keyring: MemoryKeyring, tmp_path: Path
) -> None:
    assert secrets.get_hf_token() is None
    secrets.set_hf_token("  hf_abc  ")
    assert memory_keyring.passwords == {("offline-assistant", "huggingface-token"): "hf_abc"}
    assert secrets.get_hf_token() == "hf_abc"
    assert secrets.hf_token_source() == "keyring"
    assert not any(
        "hf_abc" in p.read_text(errors="ignore")
        for p in tmp_path.rglob("*")
        if p.is_file() and p.stat().st_size < 10**6
    )
    assert secrets.clear_hf_token() is True
    assert secrets.clear_hf_token() is False
    assert secrets.get_hf_token() is None


def test_hf_token_falls_back_to_env_and_hub_login_file(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = Path(os.environ["HF_HOME"]) / "token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_from_login\n")
    assert secrets.get_hf_token() == "hf_from_login"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert secrets.get_hf_token() == "hf_from_env"
    assert secrets.hf_token_source() == "HF_TOKEN"


def test_hub_login_token_is_found_where_hf_home_points_with_variables_expanded(
    memory_keyring: MemoryKeyring, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MY_HF_ROOT", str(tmp_path / "root"))
    monkeypatch.setenv("HF_HOME", "$MY_HF_ROOT/hf")
    token_file = tmp_path / "root" / "hf" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("hf_from_login\n")
    assert secrets.get_hf_token() == "hf_from_login"
    assert secrets.hf_token_source() == str(token_file)
    assert HubCache().root == tmp_path / "root" / "hf" / "hub"
    token_file.write_text("\n")
    assert secrets.get_hf_token() is None and secrets.hf_token_source() is None


def test_no_keyring_reads_nothing_and_refuses_to_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from keyring.backends import fail

    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        assert secrets.get_secret("anything") is None
        with pytest.raises(SecretStoreError, match="keyring"):
            secrets.set_hf_token("hf_abc")
    finally:
        keyring.set_keyring(previous)


def test_copy_left_by_a_killed_import_is_cleaned_up(store: ModelStore, user_copy: Path) -> None:
    folder = store.paths.models_dir
    folder.mkdir(parents=True)
    dead = folder / f".{user_copy.name}.999999999.importing"
    dead.write_bytes(b"half a model")
    store.import_file(user_copy, copy=True)
    assert not dead.exists()
    assert leftovers(folder) == []


# --- an architecture this engine cannot run ------------------------------------------------------


@pytest.mark.parametrize("copy", [False, True])
def test_import_of_an_unsupported_architecture_is_refused_and_nothing_registered(
    store: ModelStore, user_copy: Path, tmp_path: Path, copy: bool
) -> None:
    store.import_file(user_copy)  # a registry with something in it, to see it is left as it was
    before = store.file.read_bytes()
    florp = write_unknown_architecture(tmp_path / "Florp-1B.Q4_0.gguf")

    with pytest.raises(UnsupportedArchitectureError, match="'florp' architecture") as caught:
        store.import_file(florp, copy=copy)

    assert isinstance(caught.value, AssistantError) and caught.value.architecture == "florp"
    assert "Update Offline Assistant" in caught.value.hint
    assert store.file.read_bytes() == before
    assert [m.id for m in store.list_installed()] == ["my-smol-q4_1"]
    assert not store.paths.models_dir.exists() or list(store.paths.models_dir.iterdir()) == []
    assert florp.exists()  # the user's file is left alone


# --- hints that fit both front ends ---------------------------------------------------------------


def test_missing_files_hint_says_what_to_do_and_the_command_does_it(
    store: ModelStore, user_copy: Path
) -> None:
    model = store.import_file(user_copy)
    user_copy.unlink()
    with pytest.raises(ModelFileMissingError) as caught:
        store.resolve(model.id)
    assert caught.value.hint == "Put the file back, or remove the model from the list."
    assert caught.value.command == f"offline-assistant models rm {model.id}"
    hub = InstalledModel(
        id="hub-one",
        name="Hub one",
        path=user_copy,
        size_bytes=1,
        source="hub",
        repo="someone/files",
        filename="My File.gguf",
    )
    store.register(hub)
    with pytest.raises(ModelFileMissingError) as caught:
        store.resolve("hub-one")
    assert caught.value.hint.startswith("Download it again")
    assert (
        caught.value.command == "offline-assistant models pull someone/files --file 'My File.gguf'"
    )
