"""Who answers: providers by name, each able to open a model by id.

Front ends ask for "provider P, model M" and never for a file. The local provider turns an
installed model's id into its GGUF file (through the model store) and loads it with llama.cpp;
a remote provider (a cloud API, a team's server) opens a client for its model. Each entry
describes itself before anything is opened, so the runner can tell which thread a provider
belongs on (``local`` on the one model thread, ``remote`` off it) and a front end what it needs
(a key, a network) without probing.

This module is Qt-free; the GUI's ``ModelRunner`` and the CLI both use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from assistant.engine.base import ChatProvider, LoadProgress, ProviderKind
from assistant.errors import AssistantError
from assistant.paths import AppPaths, app_paths

if TYPE_CHECKING:
    from assistant.engine.state_cache import StateCache

if TYPE_CHECKING:
    from assistant.engine.local import LocalEngine

LOCAL = "local"


class ProviderSettings(Protocol):
    """What opening a provider reads: ``assistant.settings.Settings`` or a snapshot of it."""

    def __getitem__(self, key: str) -> Any: ...


Opener = Callable[[str, ProviderSettings], ChatProvider]
"""Open model ``model_id`` with the user's settings; runs on the thread that will own it."""

FileLoader = Callable[[Path, ProviderSettings, str], ChatProvider]
"""Load the GGUF file at ``path`` as model ``model_id`` (the local provider's last step)."""


class UnknownProviderError(AssistantError):
    """A request named a provider nobody registered."""


@dataclass(frozen=True)
class ProviderEntry:
    """A provider as the app knows it before opening anything."""

    name: str
    kind: ProviderKind
    open: Opener
    label: str = ""
    needs_key: bool = False
    needs_network: bool = False

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


# Openers take (model id, settings) whatever the provider, and a remote one has nothing to
# load; so the progress of a local load reaches ``load_gguf`` through the context of the thread
# that opens it rather than through every opener's signature.
_load_progress: ContextVar[LoadProgress | None] = ContextVar("load_progress", default=None)


@contextmanager
def reporting_load_progress(progress: LoadProgress | None) -> Iterator[None]:
    """Within the block, a GGUF that ``load_gguf`` loads on this thread tells ``progress`` how
    far it is, and stops with ``assistant.errors.Cancelled`` when ``progress`` returns False."""
    token = _load_progress.set(progress)
    try:
        yield
    finally:
        _load_progress.reset(token)


def load_gguf(
    path: Path, settings: ProviderSettings, model_id: str, progress: LoadProgress | None = None
) -> ChatProvider:
    """Load a GGUF with the user's settings (imported here: llama.cpp is slow to import), with
    the process's shared cache of saved model states, so every front end, every model load
    and the next process continue conversations without reading them again. ``progress``
    defaults to the one of ``reporting_load_progress``. Raises ``EngineUnavailableError`` when
    llama.cpp cannot run on this computer."""
    from assistant.engine import diagnose

    diagnose.require_engine()
    from assistant.engine.local import LocalEngine

    engine = LocalEngine.from_settings(
        path,
        settings,
        model_id=model_id,
        state_cache=shared_state_cache(settings),
        progress=progress or _load_progress.get(),
    )
    learn_speed(engine, settings)
    return engine


_STATE_CACHE: list[StateCache] = []
"""The process's state cache (a process uses one cache folder; a new folder, as each test
has, replaces it)."""


def state_cache_folder(paths: AppPaths | None = None) -> Path:
    """Where saved model states live: ``model-state`` in the cache folder."""
    from assistant.engine.state_cache import FOLDER_NAME

    return (paths or app_paths()).cache / FOLDER_NAME


def saved_states(settings: ProviderSettings, paths: AppPaths | None = None) -> StateCache:
    """The saved model states on disk, to look at or clear (``models memory``, the doctor):
    nothing is kept in this process's memory."""
    from assistant.engine.state_cache import StateCache
    from assistant.models.hardware import MIB

    disk = int(_setting(settings, "model_memory_disk_mb", 4096)) * MIB
    return StateCache(state_cache_folder(paths), memory_budget=0, disk_budget=disk)


def shared_state_cache(settings: ProviderSettings) -> StateCache | None:
    """This process's cache of saved model states (shared by every engine it loads), with the
    budgets in ``settings``; None when ``model_memory`` is off."""
    from assistant.engine.state_cache import StateCache, default_memory_budget
    from assistant.models.hardware import MIB, detect_hardware

    if not _setting(settings, "model_memory", True):
        return None
    ram_mb = int(_setting(settings, "model_memory_ram_mb", 0))
    memory = ram_mb * MIB if ram_mb else default_memory_budget(detect_hardware())
    disk = int(_setting(settings, "model_memory_disk_mb", 4096)) * MIB
    folder = state_cache_folder() if disk else None
    if _STATE_CACHE and _STATE_CACHE[0].folder == folder:
        _STATE_CACHE[0].set_budgets(memory=memory, disk=disk)
    else:
        _STATE_CACHE[:] = [StateCache(folder, memory_budget=memory, disk_budget=disk)]
    return _STATE_CACHE[0]


def _setting(settings: ProviderSettings, key: str, default: Any) -> Any:
    try:
        return settings[key]
    except KeyError:  # a snapshot from before the setting existed
        return default


def learn_speed(engine: LocalEngine, settings: ProviderSettings) -> None:
    """Let the engine's answers refine this machine's speed predictions."""
    from assistant.models.speed import recorder_for

    engine.on_stats = recorder_for(
        app_paths().cache,
        engine.hardware,
        engine.info,
        threads=engine.n_threads,
        gpu_layers=settings["gpu_layers"],
    )


class _ModelFiles(Protocol):
    """The part of ``assistant.models.store.ModelStore`` the local provider needs."""

    def resolve(self, model_id: str) -> Path: ...


def local_provider(models: _ModelFiles, load_file: FileLoader = load_gguf) -> ProviderEntry:
    """The provider of installed models: an id becomes a file, the file a loaded engine."""

    def open_local(model_id: str, settings: ProviderSettings) -> ChatProvider:
        return load_file(models.resolve(model_id), settings, model_id)

    return ProviderEntry(LOCAL, "local", open_local, label="This computer")


class ProviderRegistry:
    """The providers a front end may ask for, by name."""

    def __init__(self, entries: list[ProviderEntry] | None = None) -> None:
        self._entries: dict[str, ProviderEntry] = {}
        for entry in entries or []:
            self.register(entry)

    def register(self, entry: ProviderEntry) -> None:
        """Add ``entry``, replacing one of the same name."""
        self._entries[entry.name] = entry

    def get(self, name: str) -> ProviderEntry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise UnknownProviderError(
                f"There is no provider called {name!r}.",
                hint=f"Known providers: {known}.",
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[ProviderEntry]:
        return iter(self._entries.values())
