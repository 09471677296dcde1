"""The terminal front end: ``offline-assistant`` and ``python -m assistant``.

Each sub-command group lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed ``argparse.Namespace``, returns an exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from assistant import APP_NAME, __version__
from assistant.errors import AssistantError
from assistant.logs import setup_logging
from assistant.paths import app_paths

log = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from assistant.cli import ask_cmd, cloud_cmd, history_cmd, models_cmd

    parser = argparse.ArgumentParser(
        prog="offline-assistant",
        description=f"{APP_NAME}: a private assistant that runs on this computer.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    ask_cmd.register(subparsers)
    models_cmd.register(subparsers)
    history_cmd.register(subparsers)
    cloud_cmd.register(subparsers)
    return parser


def error(text: str) -> None:
    """Print one clear line to stderr."""
    print(f"offline-assistant: error: {text}", file=sys.stderr)


def describe(exc: AssistantError) -> str:
    """A known problem for the terminal: the sentence and the hint, then the command that fixes
    it on a line of its own (easy to copy), when there is one."""
    text = exc.full_text()
    if exc.command:
        text += f"\n  Run: {exc.command}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    if not getattr(args, "func", None):
        return _open_gui(parser)
    # Only `models pull` and `models search` may reach the Hub; that group guards itself.
    guard = contextlib.nullcontext() if args.command == "models" else _offline()
    try:
        with guard:
            return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`... | head`); stop quietly and keep Python from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except AssistantError as exc:
        error(describe(exc))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        log.exception("unexpected failure in %r", args.command)  # the file, or stderr with -v
        error(
            "something went wrong (a bug, not your mistake). The details are in the log: "
            f"{app_paths().logs}"
        )
        return EXIT_ERROR


def _offline() -> contextlib.AbstractContextManager[None]:
    from assistant.models.hub import offline_guard

    return offline_guard()


def _open_gui(parser: argparse.ArgumentParser) -> int:
    try:
        from assistant.ui.app import run_app
    except ImportError:
        parser.print_help()
        return 0
    return run_app()
