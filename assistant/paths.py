"""Where the app keeps its data, cache, configuration and logs.

Folders come from platformdirs. Setting ``OFFLINE_ASSISTANT_HOME`` puts all of them under one
folder instead (portable mode; every test uses it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from assistant import APP_ID

HOME_ENV = "OFFLINE_ASSISTANT_HOME"


@dataclass(frozen=True)
class AppPaths:
    data: Path
    cache: Path
    config: Path
    logs: Path

    @property
    def models_dir(self) -> Path:
        """Models copied or downloaded by the app itself (outside the Hugging Face cache)."""
        return self.data / "models"

    @property
    def history_db(self) -> Path:
        return self.data / "history.sqlite3"

    @property
    def settings_file(self) -> Path:
        return self.config / "settings.json"

    @property
    def state_file(self) -> Path:
        """What the app remembers between runs (draft, window geometry): not preferences."""
        return self.config / "state.json"

    @property
    def installed_models_file(self) -> Path:
        return self.data / "installed_models.json"

    def ensure(self) -> AppPaths:
        for folder in (self.data, self.cache, self.config, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def app_paths() -> AppPaths:
    """The folders for this run, read from the environment each time it is called."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
        return AppPaths(
            data=root / "data", cache=root / "cache", config=root / "config", logs=root / "logs"
        )
    return AppPaths(
        data=Path(platformdirs.user_data_dir(APP_ID, appauthor=False)),
        cache=Path(platformdirs.user_cache_dir(APP_ID, appauthor=False)),
        config=Path(platformdirs.user_config_dir(APP_ID, appauthor=False)),
        logs=Path(platformdirs.user_log_dir(APP_ID, appauthor=False)),
    )


def hf_home() -> Path:
    """``HF_HOME``, else ``$XDG_CACHE_HOME/huggingface``, else ``~/.cache/huggingface``: the
    folder of ``huggingface_hub``'s cache and of the token ``hf auth login`` saves.

    Read from the environment when called, not when ``huggingface_hub`` was imported, so a test
    or a GUI that changes it later is obeyed.
    """
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache")), "huggingface"
    )
    return Path(os.path.expandvars(home)).expanduser()
