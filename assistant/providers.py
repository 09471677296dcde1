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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from assistant.engine.base import ChatProvider, ProviderKind
from assistant.errors import AssistantError

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


def load_gguf(path: Path, settings: ProviderSettings, model_id: str) -> ChatProvider:
    """Load a GGUF with the user's settings (imported here: llama.cpp is slow to import).
    Raises ``EngineUnavailableError`` when llama.cpp cannot run on this computer."""
    from assistant.engine import diagnose

    diagnose.require_engine()
    from assistant.engine.local import LocalEngine

    return LocalEngine.from_settings(path, settings, model_id=model_id)


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
