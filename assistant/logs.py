"""The app's log: a rotating file in the logs folder, plus stderr for the terminal."""

from __future__ import annotations

import logging
import logging.handlers
import sys

from assistant.paths import app_paths

LOG_FILE_NAME = "offline-assistant.log"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(*, verbose: bool = False) -> None:
    """Send INFO and above to the log file; warnings (or everything, if verbose) to stderr.

    Safe to call more than once: earlier handlers installed here are replaced.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_offline_assistant", False):
            root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    handlers: list[logging.Handler] = []
    try:
        logs = app_paths().logs
        logs.mkdir(parents=True, exist_ok=True)
        handlers.append(
            logging.handlers.RotatingFileHandler(
                logs / LOG_FILE_NAME, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
            )
        )
    except OSError:  # a read-only or full disk must not stop the app; stderr still works
        pass
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    if not verbose:
        # A bug's traceback belongs in the log file; the front end says one calm sentence.
        console.addFilter(lambda record: not record.exc_info)
    handlers.append(console)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._offline_assistant = True  # type: ignore[attr-defined]
        root.addHandler(handler)
