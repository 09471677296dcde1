"""The app's log: a rotating file in the logs folder, plus stderr for the terminal.

Logging never disturbs the user: a log disk that is full or cannot be written silences the file
log after one warning on stderr (instead of a ``--- Logging error ---`` traceback per line), and
URLs are written without their query strings (the Hub's CDN signs its download links there: a
temporary credential for a gated file).

:func:`private_environment` (defined in the package itself, which runs it before any library is
imported, and kept importable from here) tells ``huggingface_hub`` to make no requests of its own
(telemetry, the agent-harness lookup for its user agent, update checks).
"""

from __future__ import annotations

import contextlib
import logging
import logging.handlers
import os
import re
import sys
from typing import Any

# Defined in the package (see the docstring), and importable from here as before.
from assistant import PRIVATE_ENVIRONMENT as PRIVATE_ENVIRONMENT
from assistant import private_environment as private_environment

LOG_FILE_NAME = "offline-assistant.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_URL_QUERY = re.compile(r"(https?://[^\s?#'\"<>]+)\?[^\s#'\"<>]*", re.IGNORECASE)


def strip_url_queries(text: str) -> str:
    """``https://cdn/x.gguf?X-Amz-Signature=…`` → ``https://cdn/x.gguf?…``"""
    return _URL_QUERY.sub(r"\1?…", text)


class UrlQueryFilter(logging.Filter):
    """Removes query strings from URLs in a record's message and arguments (also in the text
    of exceptions given as arguments) before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "http" in record.msg:
            record.msg = strip_url_queries(record.msg)
        if record.args:
            if isinstance(record.args, dict):
                record.args = {key: _clean(value) for key, value in record.args.items()}
            else:
                record.args = tuple(_clean(value) for value in record.args)
        return True


def _clean(value: Any) -> Any:
    if isinstance(value, str | BaseException) or type(value).__name__ in ("URL", "Request"):
        text = str(value)
        if "http" in text:
            return strip_url_queries(text)
    return value


class QuietFileHandler(logging.handlers.RotatingFileHandler):
    """The log file; when writing it fails (a full or read-only disk), one line on stderr says
    so and the file log goes quiet for the rest of the run instead of printing a traceback for
    every record."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if self.failed:
            return
        self.failed = True
        problem = sys.exc_info()[1]
        with contextlib.suppress(Exception):  # stderr itself gone: nothing left to tell
            sys.stderr.write(
                f"offline-assistant: warning: the log file {self.baseFilename} cannot be "
                f"written ({_reason(problem)}); logging to it stops for now.\n"
            )
        with contextlib.suppress(Exception):
            self.close()


def _reason(problem: BaseException | None) -> str:
    if isinstance(problem, OSError) and problem.strerror:
        return problem.strerror.lower()
    return str(problem) or type(problem).__name__


def setup_logging(*, verbose: bool = False) -> None:
    """Send INFO and above to the log file; warnings (or everything, if verbose) to stderr.

    Safe to call more than once: earlier handlers installed here are replaced.
    """
    from assistant.paths import app_paths, make_private_dir

    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_offline_assistant", False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = []
    try:
        logs = app_paths().logs
        make_private_dir(logs)
        handlers.append(
            QuietFileHandler(
                logs / LOG_FILE_NAME, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
            )
        )
        if os.name == "posix":
            os.chmod(logs / LOG_FILE_NAME, 0o600)
    except OSError:  # a read-only or full disk must not stop the app; stderr still works
        pass
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        # A bug's traceback belongs in the log file; the front end says one calm sentence.
        console.addFilter(lambda record: not record.exc_info)
    handlers.append(console)
    privacy = UrlQueryFilter()
    for handler in handlers:
        handler.setFormatter(_PrivateFormatter(_FORMAT))
        handler.addFilter(privacy)
        handler._offline_assistant = True  # type: ignore[attr-defined]
        root.addHandler(handler)


class _PrivateFormatter(logging.Formatter):
    """Also strips queries from URLs inside tracebacks (an ``HTTPStatusError`` names its URL)."""

    def format(self, record: logging.LogRecord) -> str:
        return strip_url_queries(super().format(record))
