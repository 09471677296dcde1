"""The cloud providers the user set up, and how the app reaches them.

A provider's definition (name, API kind, base URL, default model; never its key) is kept in
``cloud.json`` in the config folder, written atomically under a lock so the app and the command
line can both change it. Its key lives in the OS keyring (:mod:`assistant.secrets`).

:func:`register_cloud` puts every defined provider into a ``ProviderRegistry`` as an entry of
kind ``remote``, so a cloud answer runs on the runner's remote lane. Whether anything may be
sent at all is the ``cloud_enabled`` setting (the global switch), checked again by the provider
at every request.

Qt-free: the GUI and the CLI both use it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant import secrets
from assistant.atomic import atomic_write_text
from assistant.engine.base import ChatProvider
from assistant.engine.cloud import (
    CLOUD_KINDS,
    CloudEndpoint,
    CloudError,
    CloudKind,
    CloudProvider,
    check_base_url,
)
from assistant.paths import AppPaths, app_paths
from assistant.providers import LOCAL, ProviderEntry, ProviderRegistry, ProviderSettings

log = logging.getLogger(__name__)

CONFIG_NAME = "cloud.json"
LOCK_TIMEOUT_S = 10.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,39}$")


@dataclass(frozen=True)
class Preset:
    label: str
    kind: CloudKind
    base_url: str
    model: str
    stream_usage: bool = True


PRESETS: dict[str, Preset] = {
    "openai": Preset("OpenAI", "openai", "https://api.openai.com/v1", "gpt-4o-mini"),
    "anthropic": Preset(
        "Anthropic", "anthropic", "https://api.anthropic.com/v1", "claude-sonnet-4-5"
    ),
    "openrouter": Preset(
        "OpenRouter", "openai", "https://openrouter.ai/api/v1", "openai/gpt-4o-mini"
    ),
    "groq": Preset("Groq", "openai", "https://api.groq.com/openai/v1", "llama-3.3-70b-versatile"),
    "mistral": Preset(
        "Mistral", "openai", "https://api.mistral.ai/v1", "mistral-large-latest", False
    ),
    "together": Preset(
        "Together",
        "openai",
        "https://api.together.xyz/v1",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ),
    "deepseek": Preset("DeepSeek", "openai", "https://api.deepseek.com/v1", "deepseek-chat"),
}
"""Well-known providers: a user picks one and adds a key; "custom" is any other base URL (a
team's llama.cpp server or vLLM cluster included)."""


class CloudConfigError(CloudError):
    """A provider definition cannot be saved as asked."""


def check_name(name: str) -> str:
    if name == LOCAL or not _NAME.match(name):
        raise CloudConfigError(
            f"{name!r} cannot name a cloud provider.",
            hint="Use lower-case letters, digits, '-', '_' or '.', at most 40 characters, "
            "and not 'local'.",
        )
    return name


def make_endpoint(
    name: str,
    kind: str,
    base_url: str,
    model: str,
    label: str = "",
    stream_usage: bool = True,
) -> CloudEndpoint:
    """A checked definition, or ``CloudError`` saying what to change."""
    check_name(name)
    if kind not in CLOUD_KINDS:
        raise CloudConfigError(
            f"{kind!r} is not a kind of cloud API.",
            hint="Use 'openai' for any OpenAI-compatible API, or 'anthropic'.",
        )
    if not model.strip():
        raise CloudConfigError("A model name is needed.", hint="Give the provider's model id.")
    return CloudEndpoint(
        name,
        kind,
        check_base_url(base_url),
        model.strip(),
        label.strip(),
        stream_usage,
    )


def from_preset(name: str, preset: str, model: str | None = None) -> CloudEndpoint:
    chosen = PRESETS[preset]
    return make_endpoint(
        name, chosen.kind, chosen.base_url, model or chosen.model, chosen.label, chosen.stream_usage
    )


_Endpoints = dict[str, CloudEndpoint]


class CloudConfig:
    """The cloud provider definitions in ``cloud.json``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def for_paths(cls, paths: AppPaths | None = None) -> CloudConfig:
        return cls((paths or app_paths()).config / CONFIG_NAME)

    def list(self) -> list[CloudEndpoint]:
        return list(self._read().values())

    def get(self, name: str) -> CloudEndpoint:
        found = self._read().get(name)
        if found is None:
            known = ", ".join(sorted(self._read())) or "none yet"
            raise CloudConfigError(
                f"There is no cloud provider called {name!r}.",
                hint=f"Known cloud providers: {known}.",
                command="offline-assistant cloud list",
            )
        return found

    def find(self, name: str) -> CloudEndpoint | None:
        return self._read().get(name)

    def save(self, endpoint: CloudEndpoint) -> None:
        """Add ``endpoint`` or replace the one of the same name."""
        self._change(lambda found: {**found, endpoint.name: endpoint})

    def remove(self, name: str) -> bool:
        """Forget the provider and its key; ``False`` when there was none."""
        existed = name in self._read()
        self._change(lambda found: {k: v for k, v in found.items() if k != name})
        forgot_key = secrets.delete_cloud_key(name)
        return existed or forgot_key

    def _change(self, change: Callable[[_Endpoints], _Endpoints]) -> None:
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock", timeout=LOCK_TIMEOUT_S):
            changed = change(self._read())
            data = {"providers": [asdict(e) for e in changed.values()]}
            atomic_write_text(self.path, json.dumps(data, indent=2))

    def _read(self) -> dict[str, CloudEndpoint]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("Cloud providers file %s could not be read (%s).", self.path, exc)
            return {}
        found: dict[str, CloudEndpoint] = {}
        for item in raw.get("providers", []) if isinstance(raw, dict) else []:
            try:
                endpoint = make_endpoint(**_known_fields(item))
            except (CloudError, TypeError) as exc:
                log.warning("A cloud provider in %s was left out: %s", self.path, exc)
                continue
            found[endpoint.name] = endpoint
        return found


def _known_fields(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise TypeError("not an object")
    wanted = ("name", "kind", "base_url", "model", "label", "stream_usage")
    return {key: item[key] for key in wanted if key in item}


# --- the registry ------------------------------------------------------------------------------


def cloud_entry(config: CloudConfig, name: str, allowed: Callable[[], bool]) -> ProviderEntry:
    """A registry entry for provider ``name``: opening it makes a ``CloudProvider`` that reads
    its definition and key at every request."""

    def endpoint() -> CloudEndpoint:
        return config.get(name)

    def open_cloud(model_id: str, _settings: ProviderSettings) -> ChatProvider:
        return CloudProvider(
            endpoint, lambda: secrets.get_cloud_key(name), model=model_id or None, allowed=allowed
        )

    label = (config.find(name) or CloudEndpoint(name, "openai", "", "")).display_name
    return ProviderEntry(
        name, "remote", open_cloud, label=label, needs_key=True, needs_network=True
    )


def register_cloud(
    registry: ProviderRegistry, config: CloudConfig, allowed: Callable[[], bool]
) -> list[str]:
    """Register every defined cloud provider (again, after a change); returns their names.
    ``allowed`` is the global switch, read at every request."""
    names = []
    for endpoint in config.list():
        registry.register(cloud_entry(config, endpoint.name, allowed))
        names.append(endpoint.name)
    return names


def open_provider(
    config: CloudConfig,
    name: str,
    allowed: Callable[[], bool] = lambda: True,
    model: str | None = None,
) -> CloudProvider:
    """A provider to use directly (the CLI, "Test connection"); ``model`` instead of the
    definition's own."""
    config.get(name)  # a clear error for an unknown name, before anything else
    return CloudProvider(
        lambda: config.get(name),
        lambda: secrets.get_cloud_key(name),
        model=model,
        allowed=allowed,
    )
