"""``history``: list, show, search, export, import, check and recover saved conversations."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path

from assistant.atomic import atomic_write_text
from assistant.chat import recovery
from assistant.chat.history import HistoryStore
from assistant.cli.arguments import positive_count, record_id, text_argument
from assistant.errors import (
    HistoryDamagedError,
    ImportFormatError,
    InvalidTextError,
    NotARegularFileError,
)
from assistant.paths import app_paths, check_regular_file, file_error

# A conversation export is a few megabytes at most; a bigger "export" is not one.
MAX_IMPORT_BYTES = 256 * 1024 * 1024


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = subparsers.add_parser("history", help="saved conversations")
    commands = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="recent conversations")
    listing.add_argument("--limit", type=positive_count, default=50)
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="print one conversation")
    show.add_argument("id", type=record_id)
    show.set_defaults(func=run_show)

    search = commands.add_parser("search", help="full-text search in all conversations")
    search.add_argument("text", type=text_argument)
    search.set_defaults(func=run_search)

    export = commands.add_parser("export", help="export a conversation as Markdown or JSON")
    export.add_argument("id", type=record_id)
    export.add_argument("--format", choices=("md", "json"), default="md")
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        help="write to a file instead of stdout (a symbolic link is followed: its target is "
        "written, the link stays)",
    )
    export.set_defaults(func=run_export)

    importing = commands.add_parser("import", help="import a conversation exported as JSON")
    importing.add_argument("file", type=Path)
    importing.set_defaults(func=run_import)

    check = commands.add_parser("check", help="check the history file for damage (reads it all)")
    check.set_defaults(func=run_check)

    recover = commands.add_parser(
        "recover",
        help="move a damaged history aside (kept, not deleted), start a fresh one and copy "
        "into it every conversation that can still be read",
    )
    recover.add_argument(
        "--no-salvage", action="store_true", help="start empty; do not copy anything over"
    )
    recover.add_argument("--force", action="store_true", help="do it even if no damage is found")
    recover.set_defaults(func=run_recover)


def _store() -> HistoryStore:
    return HistoryStore.open(app_paths().ensure().history_db)


def run_list(args: argparse.Namespace) -> int:
    conversations = _store().list_conversations(limit=args.limit)
    if not conversations:
        print("No conversations yet.", file=sys.stderr)
        return 0
    for item in conversations:
        updated = str(item.updated_at)[:16].replace("T", " ")
        print(f"{item.id:>5}  {updated}  {item.model or '-':<28}  {item.title or '(untitled)'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(_store().export_markdown(args.id))
    return 0


def run_search(args: argparse.Namespace) -> int:
    hits = _store().search(args.text)
    if not hits:
        print("No matches.", file=sys.stderr)
        return 0
    for hit in hits:
        print(f"{hit.conversation_id:>5}  {hit.conversation_title}: {hit.snippet}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    store = _store()
    if args.format == "md":
        text = store.export_markdown(args.id)
    else:
        text = json.dumps(store.export_json(args.id), indent=2, ensure_ascii=False)
    if args.output:
        target = export_target(args.output)
        try:
            atomic_write_text(target, text + "\n")
        except OSError as exc:
            raise file_error(target, exc, "the export file") from exc
        print(f"Wrote {target}", file=sys.stderr)
    else:
        print(text)
    return 0


def export_target(output: Path) -> Path:
    """Where an export to ``output`` is written.

    A symbolic link is followed, and its target written, so the link stays a link (replacing
    it by a file would silently break whatever it was for). A folder, a device, a FIFO or a
    file of the system (``/proc/version``) is refused before anything is written, as is a
    folder that does not exist."""
    target = Path(os.path.realpath(output)) if output.is_symlink() else output
    try:
        info = os.stat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise file_error(output, exc, "the export file") from exc
    if info is not None:
        check_regular_file(target, "the export file")
        if info.st_dev == _proc_device() or not stat.S_IMODE(info.st_mode) & stat.S_IWUSR:
            raise NotARegularFileError(
                output,
                f"{output} is not a file an export can replace.",
                hint="Pick another file name.",
            )
    folder = target.parent
    if not folder.is_dir():
        raise file_error(folder, FileNotFoundError(2, "No such file or directory"), "the folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise file_error(target, PermissionError(13, "Permission denied"), "the export file")
    return target


def _proc_device() -> int | None:
    """The device of ``/proc`` (its files look regular but are the kernel's), if any."""
    try:
        return os.stat("/proc").st_dev
    except OSError:
        return None


def run_import(args: argparse.Namespace) -> int:
    info = check_regular_file(args.file, "the file to import")
    if info.st_size > MAX_IMPORT_BYTES:
        raise ImportFormatError(
            f"{args.file} is far too large to be a conversation export.",
            hint="Pick a file exported by Offline Assistant (JSON format).",
        )
    try:
        raw = args.file.read_bytes()
    except OSError as exc:
        raise file_error(args.file, exc, "the file to import") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidTextError(
            f"{args.file} is not valid UTF-8 text (an invalid byte at position {exc.start}).",
            hint="Pick a file exported by Offline Assistant (JSON format).",
        ) from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ImportFormatError(f"Could not read {args.file} as JSON ({exc}).") from exc
    except RecursionError:
        raise ImportFormatError(
            f"Could not read {args.file} as JSON: it is nested too deeply.",
            hint="Pick a file exported by Offline Assistant (JSON format).",
        ) from None
    created = _store().import_json(data)
    print(f"Imported as conversation {created.id}: {created.title}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    path = app_paths().ensure().history_db
    if not path.exists():
        print("There is no chat history yet; nothing to check.", file=sys.stderr)
        return 0
    problems = recovery.check(path)
    if not problems:
        print(f"The chat history {path} is whole.")
        return 0
    raise HistoryDamagedError(
        path,
        f"The chat history {path} is damaged: {problems[0]}"
        + (f" (and {len(problems) - 1} more problems)." if len(problems) > 1 else "."),
        hint="Move it aside, start a fresh history and recover what can still be read; the "
        "damaged file is kept.",
        command="offline-assistant history recover",
    )


def run_recover(args: argparse.Namespace) -> int:
    path = app_paths().ensure().history_db
    if not path.exists():
        print("There is no chat history yet; nothing to recover.", file=sys.stderr)
        return 0
    if not args.force:
        problems = recovery.check(path)
        if not problems:
            print(
                f"The chat history {path} is whole; nothing was changed (--force recovers anyway).",
                file=sys.stderr,
            )
            return 0
    store, result = recovery.start_fresh(path, salvage_from_old=not args.no_salvage)
    store.close()
    print(f"The damaged history was moved to {result.moved_to} (kept, not deleted).")
    if result.report is not None:
        print(result.report.summary())
    else:
        print("A fresh, empty history was started.")
    return 0
