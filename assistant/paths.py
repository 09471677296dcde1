"""Where the app keeps its data, cache, configuration and logs, and how paths fail.

Folders come from platformdirs. Setting ``OFFLINE_ASSISTANT_HOME`` puts all of them under one
folder instead (portable mode; every test uses it).

The folders are private: on POSIX they are made (and, for an older install, tightened to) 0700,
so chats, settings and logs are not readable by other local users. On Windows the per-user
folders under ``%APPDATA%``/``%LOCALAPPDATA%`` are already private by their ACLs and nothing is
changed (``chmod`` there only toggles the read-only flag).

:func:`file_error` and :func:`check_regular_file` turn what the OS says about a path into the
named errors of :mod:`assistant.errors`, with the true cause.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import NamedTuple

from assistant import APP_ID
from assistant.errors import (
    AssistantError,
    DiskFullError,
    FileAccessError,
    FilePermissionError,
    NotARegularFileError,
    SymlinkLoopError,
)

HOME_ENV = "OFFLINE_ASSISTANT_HOME"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
POSIX = os.name == "posix"


class AppPaths(NamedTuple):
    """The app's four folders. (A named tuple rather than a dataclass: the hand-over to a
    running app imports this module, and ``dataclasses`` costs more than all the rest.)"""

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
        """Make the folders (private) if missing, and tighten those an older version made
        readable by everyone. A folder that cannot be made raises the named error of its
        cause (``FilePermissionError``, ``DiskFullError``…)."""
        for folder in (self.data, self.cache, self.config, self.logs):
            try:
                make_private_dir(folder)
            except OSError as exc:
                raise file_error(folder, exc, "the app's folder") from exc
        return self


def app_paths() -> AppPaths:
    """The folders for this run, read from the environment each time it is called."""
    home = os.environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser()
        return AppPaths(
            data=root / "data", cache=root / "cache", config=root / "config", logs=root / "logs"
        )
    # Imported here: a hand-over to a running app (``assistant.ipc``) in portable mode then
    # pays nothing for it (platformdirs brings tempfile, shutil, random…).
    import platformdirs

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


def program_command() -> list[str]:
    """How to start this very program again: the bundle's executable when frozen
    (PyInstaller), else this Python running the package. Arguments go after it."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    return [sys.executable, "-m", "assistant"]


# --- private files and folders -----------------------------------------------------------------


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` (and missing parents) as 0700 and tighten it if it is looser.

    Only the folder itself is tightened, not its parents (they may be ``~/.local/share``).
    A folder we cannot chmod (not ours, a read-only disk) is left as it is: reading still works.
    """
    folder.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    tighten(folder, PRIVATE_DIR_MODE)


def tighten(path: Path, mode: int) -> None:
    """Remove group and other permissions from ``path`` beyond ``mode`` (POSIX only).

    Does nothing on Windows, where ``chmod`` cannot express privacy and would only toggle the
    read-only flag; nor when the path is missing or is not ours to change."""
    if not POSIX:
        return
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
        if current & ~mode:
            os.chmod(path, current & mode)
    except OSError as exc:
        if exc.errno not in (errno.ENOENT, errno.EPERM, errno.EROFS, errno.EACCES):
            import logging  # here: the hand-over to a running app imports this module

            logging.getLogger(__name__).warning("Could not make %s private: %s", path, exc)


# --- what the OS says about a path, as named errors ------------------------------------------


def file_error(path: Path | str, exc: OSError, what: str = "the file") -> AssistantError:
    """The named error for ``exc``, raised while using ``path`` as ``what`` ("the model file",
    "the export file"). An ``OSError`` with no better name becomes a ``FileAccessError`` with the
    system's words."""
    path = Path(path)
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return FilePermissionError(
            path,
            f"No permission to use {what} {path}.",
            hint="Check the file's permissions, or pick a file of your own.",
        )
    if code == errno.ELOOP:
        return SymlinkLoopError(
            path,
            f"{path} is a symbolic link that leads back to itself, so {what} cannot be found.",
            hint="Point the link at a real file, or pick the file itself.",
        )
    if code == errno.EISDIR:
        return NotARegularFileError(
            path, f"{path} is a folder, not {_a_file(what)}.", hint="Pick a file inside it."
        )
    if code == errno.ENOENT:
        return FileAccessError(
            path, f"There is no {_bare(what)} at {path}.", hint="Check the path and try again."
        )
    if code == errno.ENOTDIR:
        return FileAccessError(
            path,
            f"{path} is not a valid path: a part of it that should be a folder is a file.",
            hint="Check the path and try again.",
        )
    if code in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(
            f"The disk holding {path.parent} is full; {what} {path} could not be written.",
            hint="Free some space and try again.",
        )
    if code == errno.EROFS:
        return FilePermissionError(
            path,
            f"{path.parent} is on a read-only disk; {what} cannot be written there.",
            hint="Pick a folder on a disk that can be written.",
        )
    if code == errno.ENAMETOOLONG:
        return FileAccessError(
            path, f"The path of {what} is too long.", hint="Pick a shorter name or folder."
        )
    reason = exc.strerror or str(exc)
    return FileAccessError(
        path, f"Could not use {what} {path} ({reason}).", hint="Check the path and try again."
    )


def check_regular_file(path: Path | str, what: str = "the file") -> os.stat_result:
    """Stat ``path`` (following links) and raise a named error unless it is a regular file.

    Folders, FIFOs, devices and sockets are refused here, before anything opens them: opening a
    FIFO for reading would wait forever for a writer. Returns the ``stat`` result."""
    path = Path(path)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise file_error(path, exc, what) from None
    except ValueError:  # an embedded NUL byte
        raise FileAccessError(
            path, f"{what.capitalize()} path is not valid.", hint="Check the path and try again."
        ) from None
    if stat.S_ISDIR(info.st_mode):
        raise NotARegularFileError(
            path, f"{path} is a folder, not {_a_file(what)}.", hint="Pick a file inside it."
        )
    if not stat.S_ISREG(info.st_mode):
        raise NotARegularFileError(
            path,
            f"{path} is not a regular file (it is {_kind(info.st_mode)}), so it cannot be "
            f"used as {what}.",
            hint="Pick an ordinary file.",
        )
    return info


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _bare(what: str) -> str:
    return what.removeprefix("the ").removeprefix("a ")


def _a_file(what: str) -> str:
    return "a " + _bare(what)


def is_windows() -> bool:
    return sys.platform.startswith("win")
