"""``ask`` (one question) and ``chat`` (an interactive session) in the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from assistant.chat import conversation
from assistant.chat.history import HistoryStore
from assistant.cli import EXIT_INTERRUPTED
from assistant.engine.base import ChatMessage, GenerationSettings
from assistant.errors import AssistantError, NoModelError
from assistant.paths import app_paths
from assistant.providers import load_gguf
from assistant.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = subparsers.add_parser("ask", help="ask one question; the answer streams to stdout")
    ask.add_argument("question", help="the question (use quotes)")
    _add_model_options(ask)
    ask.add_argument("--conversation", type=int, metavar="ID", help="continue a saved chat")
    ask.add_argument(
        "--json", action="store_true", help="print one JSON object at the end instead of streaming"
    )
    ask.set_defaults(func=run_ask)

    chat = subparsers.add_parser(
        "chat", help="interactive chat in the terminal (/new, /model ID, /exit)"
    )
    _add_model_options(chat)
    chat.add_argument("--conversation", type=int, metavar="ID", help="continue a saved chat")
    chat.set_defaults(func=run_chat)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="ID", help="an installed model (see `models list`)")
    parser.add_argument("--model-path", type=Path, metavar="FILE.gguf", help="a GGUF file")
    parser.add_argument("--system", metavar="TEXT", help="system prompt for a new chat")
    parser.add_argument("--temperature", type=float, help="0 = always the most likely word")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="longest answer in tokens")
    parser.add_argument("--seed", type=int, help="random seed, for repeatable answers")


class _Session:
    """What ``ask`` and ``chat`` share: settings, history and the loaded model."""

    def __init__(self, args: argparse.Namespace) -> None:
        paths = app_paths().ensure()
        self.settings = Settings.load(paths.settings_file)
        for warning in self.settings.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        self.history = HistoryStore(paths.history_db)
        self.args = args
        self.engine: Any = None

    def generation_settings(self) -> GenerationSettings:
        base = self.settings.generation_settings()
        changes: dict[str, Any] = {}
        if self.args.temperature is not None:
            changes["temperature"] = self.args.temperature
        if self.args.max_tokens is not None:
            changes["max_tokens"] = self.args.max_tokens
        if self.args.seed is not None:
            changes["seed"] = self.args.seed
        return replace(base, **changes)

    def load_model(self, model_id: str | None, model_path: Path | None) -> None:
        path, name = resolve_model(model_id, model_path)
        # Load the new model before letting go of the old one: if it fails, the chat goes on.
        # Through the local provider's loader: it brings the saved model states, so continuing
        # a conversation here does not read it all again.
        loaded = load_gguf(path, self.settings, name)
        if self.engine is not None:
            self.engine.close()
        self.engine = loaded
        for warning in self.engine.warnings:
            print(f"warning: {warning}", file=sys.stderr)

    def close(self) -> None:
        """Free the model; its state is saved and written before this returns."""
        if self.engine is not None:
            cache = getattr(self.engine, "state_cache", None)
            self.engine.close()
            self.engine = None
            if cache is not None:
                cache.flush()
        self.history.close()

    def open_conversation(self, conversation_id: int | None) -> int:
        """The saved conversation to continue, or a new one."""
        if conversation_id is not None:
            return self.history.get_conversation(conversation_id).id
        return self.new_conversation()

    def new_conversation(self) -> int:
        system = self.args.system
        if system is None:
            system = self.settings["system_prompt"]
        created = self.history.create_conversation(
            model=self.engine.model_name,
            system_prompt=system or None,
            settings=self.generation_settings().to_dict(),
        )
        return created.id


def resolve_model(model_id: str | None, model_path: Path | None) -> tuple[Path, str]:
    """The GGUF to load and the name to record, from the options or the default model."""
    if model_path is not None:
        return model_path, model_path.stem
    from assistant.models.store import ModelStore

    store = ModelStore()
    chosen = model_id or store.default_id()
    if chosen is None:
        raise NoModelError(
            "No model is installed yet.",
            hint="Run `offline-assistant models pull ID` (see `models list`), "
            "`models import FILE.gguf`, or pass --model-path FILE.gguf.",
        )
    return store.resolve(chosen), chosen


def _show(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()


def _print_dropped(dropped: list[ChatMessage]) -> None:
    print(
        f"note: {len(dropped)} oldest message(s) left out to fit the model's context window.",
        file=sys.stderr,
    )


def run_ask(args: argparse.Namespace) -> int:
    session = _Session(args)
    try:
        return _ask(session, args)
    finally:
        session.close()


def _ask(session: _Session, args: argparse.Namespace) -> int:
    session.load_model(args.model, args.model_path)
    conversation_id = session.open_conversation(args.conversation)

    try:
        exchange = conversation.ask(
            session.history,
            session.engine,
            conversation_id,
            args.question,
            session.generation_settings(),
            on_chunk=None if args.json else _show,
            on_dropped=_print_dropped,
        )
    except KeyboardInterrupt:
        if not args.json:
            print("\n[stopped]", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        stats = exchange.stats
        print(
            json.dumps(
                {
                    "text": exchange.text,
                    "model": stats.model,
                    "conversation_id": conversation_id,
                    "message_id": exchange.message.id,
                    "prompt_tokens": stats.prompt_tokens,
                    "evaluated_prompt_tokens": stats.evaluated_prompt_tokens,
                    "completion_tokens": stats.completion_tokens,
                    "ttft_s": stats.ttft_s,
                    "tokens_per_s": stats.tokens_per_s,
                    "stop_reason": stats.stop_reason,
                    "dropped_messages": stats.dropped_messages,
                },
                ensure_ascii=False,
            )
        )
    else:
        print()
    return 0


def run_chat(args: argparse.Namespace) -> int:
    session = _Session(args)
    try:
        return _chat(session, args)
    finally:
        session.close()


def _chat(session: _Session, args: argparse.Namespace) -> int:
    session.load_model(args.model, args.model_path)
    conversation_id = session.open_conversation(args.conversation)
    print(
        f"Chatting with {session.engine.model_name} (conversation {conversation_id}). "
        "Commands: /new, /model ID, /exit. Ctrl-C stops an answer.",
        file=sys.stderr,
    )
    while True:
        try:
            line = input(">>> ").strip()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/new":
            conversation_id = session.new_conversation()
            print(f"New conversation {conversation_id}.", file=sys.stderr)
            continue
        if line.startswith("/model"):
            name = line.removeprefix("/model").strip()
            if not name:
                print(f"Current model: {session.engine.model_name}", file=sys.stderr)
                continue
            try:
                session.load_model(name, None)
            except AssistantError as exc:
                print(f"error: {exc.full_text()}", file=sys.stderr)
                print(f"Still using {session.engine.model_name}.", file=sys.stderr)
                continue
            conversation_id = session.new_conversation()
            print(f"Now using {name}; new conversation {conversation_id}.", file=sys.stderr)
            continue
        if line.startswith("/"):
            print("Unknown command. Use /new, /model ID or /exit.", file=sys.stderr)
            continue
        try:
            conversation.ask(
                session.history,
                session.engine,
                conversation_id,
                line,
                session.generation_settings(),
                on_chunk=_show,
                on_dropped=_print_dropped,
            )
            print()
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)
        except AssistantError as exc:
            print(f"error: {exc.full_text()}", file=sys.stderr)
