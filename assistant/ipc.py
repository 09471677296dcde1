"""One running app per home: a second start hands its command to the first and exits.

The running app listens on a local socket (``assistant.ui.instance``, a ``QLocalServer``). A new
start first tries to connect; when someone answers it sends one line and is done, having paid
for nothing but this module (no Qt: on Linux and macOS the socket is a plain Unix-domain socket,
on Windows a named pipe, so the hand-over takes milliseconds). Only when nobody answers does it
go on to build windows and become the server itself.

Two starts at the same moment must not both become the server: whoever wants to become it
takes ``instance_lock`` first, tries to connect once more under the lock, and keeps the lock
until its server listens. A socket file left by a crash answers nobody; the new server removes
it before listening.

The protocol is one JSON line each way: ``{"command": "quick-ask"|"show"|"start"}`` and the
server's ``{"ok": true}``.
"""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from assistant import APP_ID

if TYPE_CHECKING:
    from filelock import FileLock

    from assistant.paths import AppPaths

# The sending side imports no more than it needs (no json, logging or tempfile): a hand-over
# is most of the time between `offline-assistant --quick-ask` and the popup.

QUICK_ASK = "quick-ask"
SHOW = "show"
START = "start"
"""``show`` brings the chat window forward; ``start`` (a start at login, ``--hidden``) leaves the
running app as it is."""
COMMANDS = (QUICK_ASK, SHOW, START)

CONNECT_TIMEOUT_S = 2.0
LOCK_TIMEOUT_S = 15.0


def server_name(paths: AppPaths) -> str:
    """The server's name: a path on Unix (short enough for ``sun_path``'s 108 bytes), a pipe
    name on Windows. One per app home, so a portable home (and every test) has its own."""
    digest = hashlib.sha1(str(paths.config.resolve()).encode("utf-8")).hexdigest()[:12]
    name = f"{APP_ID}-{digest}"
    if sys.platform.startswith("win"):
        return name
    return str(_runtime_dir() / f"{name}.sock")


def _runtime_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return Path(runtime)
    import tempfile

    # A per-user folder in /tmp: another user must not be able to answer for this one.
    folder = Path(tempfile.gettempdir()) / f"{APP_ID}-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def lock_path(paths: AppPaths) -> Path:
    return paths.config / "instance.lock"


def encode(command: str) -> bytes:
    """The request line for one of ``COMMANDS`` (as ``json.dumps`` writes it)."""
    if command not in COMMANDS:
        raise ValueError(f"not a command of the hand-over: {command!r}")
    return b'{"command": "' + command.encode("ascii") + b'"}\n'


def decode(line: bytes) -> str | None:
    """The command of one request line, ``None`` when it is not one this version knows."""
    import json

    try:
        data = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    command = data.get("command") if isinstance(data, dict) else None
    return command if command in COMMANDS else None


OK_REPLY = b'{"ok": true}\n'


def hand_over(command: str, paths: AppPaths, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
    """Send ``command`` to the app running for ``paths``; whether it took it.

    ``False`` when no app listens (no socket, or a stale one left by a crash) or when it did not
    confirm in time."""
    name = server_name(paths)
    if sys.platform.startswith("win"):
        return _hand_over_pipe(name, command)
    if not os.path.exists(name):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(name)
            sock.sendall(encode(command))
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = sock.recv(256)
                if not chunk:
                    break
                reply += chunk
        except OSError as exc:  # refused: a stale socket; timeout: an app that hangs
            _debug("No running app answered on %s: %s", name, exc)
            return False
    return reply.strip() == OK_REPLY.strip()


def _hand_over_pipe(name: str, command: str) -> bool:
    """Windows: ``QLocalServer`` listens on the named pipe ``\\\\.\\pipe\\<name>``, which a
    plain file open reaches (no Qt needed here either)."""
    try:
        with open(rf"\\.\pipe\{name}", "r+b", buffering=0) as pipe:
            pipe.write(encode(command))
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = pipe.read(256)
                if not chunk:
                    break
                reply += chunk
    except OSError as exc:  # no such pipe: nobody runs
        _debug("No running app answered on %s: %s", name, exc)
        return False
    return reply.strip() == OK_REPLY.strip()


def _debug(message: str, *args: object) -> None:
    import logging

    logging.getLogger(__name__).debug(message, *args)


def instance_lock(paths: AppPaths, timeout_s: float = LOCK_TIMEOUT_S) -> FileLock:
    """The lock a start holds while it checks for a server and becomes one (not yet acquired:
    use it in a ``with``)."""
    from filelock import FileLock

    paths.config.mkdir(parents=True, exist_ok=True)
    return FileLock(str(lock_path(paths)), timeout=timeout_s)
