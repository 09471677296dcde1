"""The terminal front end: ``offline-assistant`` and ``python -m assistant``.

Each sub-command group lives in its own module with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (called with the parsed ``argparse.Namespace``, returns an exit code).
"""

from __future__ import annotations

# Only what the hand-over to a running app needs is imported here (see ``main``): the rest
# of the terminal front end, logging and argparse come after it.
import contextlib
import os
import sys
from typing import TYPE_CHECKING

from assistant import APP_NAME, __version__

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from assistant.errors import AssistantError

EXIT_ERROR = 1
EXIT_USAGE = 2  # as argparse exits for a bad argument
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    import argparse

    from assistant.cli import ask_cmd, cloud_cmd, doctor_cmd, history_cmd, models_cmd, serve_cmd

    parser = argparse.ArgumentParser(
        prog="offline-assistant",
        description=f"{APP_NAME}: a private assistant that runs on this computer.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details to stderr")
    parser.add_argument(
        "--quick-ask",
        action="store_true",
        help="open the quick-ask popup (in the running app, or start it)",
    )
    parser.add_argument(
        "--hidden", action="store_true", help="start in the tray without opening the window"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    ask_cmd.register(subparsers)
    models_cmd.register(subparsers)
    history_cmd.register(subparsers)
    serve_cmd.register(subparsers)
    cloud_cmd.register(subparsers)
    doctor_cmd.register(subparsers)
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


GUI_FLAGS = frozenset({"--quick-ask", "--hidden", "-v", "--verbose"})
"""Arguments of a start of the desktop app (no sub-command)."""


def _gui_command(quick_ask: bool, hidden: bool) -> str:
    from assistant import ipc

    return ipc.QUICK_ASK if quick_ask else ipc.START if hidden else ipc.SHOW


def main(argv: Sequence[str] | None = None) -> int:
    from assistant.paths import app_paths

    given = list(sys.argv[1:] if argv is None else argv)
    if set(given) <= GUI_FLAGS:
        # A running app takes over before the sub-commands (and their imports) or any
        # widget are loaded: that is what makes `--quick-ask` instant.
        from assistant import ipc

        command = _gui_command("--quick-ask" in given, "--hidden" in given)
        if ipc.hand_over(command, app_paths()):
            return 0
        return _start_gui(given)
    import logging

    from assistant.cli.arguments import check_argv
    from assistant.errors import AssistantError
    from assistant.logs import setup_logging

    parser = build_parser()
    try:
        check_argv(sys.argv[1:] if argv is None else argv)
    except AssistantError as exc:
        error(describe(exc))
        return EXIT_USAGE
    args = parser.parse_args(argv)
    setup_logging(verbose=args.verbose)
    if not getattr(args, "func", None):  # only GUI flags, handled above
        return _start_gui(given)
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
        # The file, or stderr with -v.
        logging.getLogger(__name__).exception("unexpected failure in %r", args.command)
        error(
            "something went wrong (a bug, not your mistake). The details are in the log: "
            f"{app_paths().logs}"
        )
        return EXIT_ERROR


def _offline() -> contextlib.AbstractContextManager[None]:
    from assistant.models.hub import offline_guard

    return offline_guard()


def _start_gui(given: Sequence[str]) -> int:
    """The desktop app's start, without the sub-commands' parser: building it imports every
    sub-command's module (the API server, the Hub client, the cloud client…), a sixth of the
    time to the first painted window. Only the flags in ``GUI_FLAGS`` reach this."""
    from assistant.logs import setup_logging

    setup_logging(verbose=bool({"-v", "--verbose"} & set(given)))
    try:
        from assistant.ui.app import run_app
    except ImportError:
        build_parser().print_help()
        return 0
    hidden = "--hidden" in given
    return run_app(command=_gui_command("--quick-ask" in given, hidden), hidden=hidden)
