"""``history``: list, show, search and export saved conversations."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from assistant.atomic import atomic_write_text
from assistant.chat.history import HistoryStore
from assistant.paths import app_paths


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = subparsers.add_parser("history", help="saved conversations")
    commands = history.add_subparsers(dest="history_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="recent conversations")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="print one conversation")
    show.add_argument("id", type=int)
    show.set_defaults(func=run_show)

    search = commands.add_parser("search", help="full-text search in all conversations")
    search.add_argument("text")
    search.set_defaults(func=run_search)

    export = commands.add_parser("export", help="export a conversation as Markdown or JSON")
    export.add_argument("id", type=int)
    export.add_argument("--format", choices=("md", "json"), default="md")
    export.add_argument("-o", "--output", type=Path, help="write to a file instead of stdout")
    export.set_defaults(func=run_export)

    importing = commands.add_parser("import", help="import a conversation exported as JSON")
    importing.add_argument("file", type=Path)
    importing.set_defaults(func=run_import)


def _store() -> HistoryStore:
    return HistoryStore(app_paths().ensure().history_db)


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
        atomic_write_text(args.output, text + "\n")
        print(f"Wrote {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from assistant.errors import ImportFormatError

    try:
        data = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImportFormatError(f"Could not read {args.file} as JSON ({exc}).") from exc
    created = _store().import_json(data)
    print(f"Imported as conversation {created.id}: {created.title}")
    return 0
