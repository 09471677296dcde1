"""``ask`` (one question) and ``chat`` (an interactive session) in the terminal."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from assistant import doctor
from assistant.chat import conversation
from assistant.chat.history import HistoryStore
from assistant.cli import EXIT_INTERRUPTED, describe
from assistant.cli.arguments import (
    check_text,
    range_text,
    record_id,
    seed,
    setting_value,
    text_argument,
)
from assistant.cli.load_meter import load_meter
from assistant.engine.base import ChatMessage, GenerationSettings
from assistant.errors import (
    AssistantError,
    Cancelled,
    HistoryDamagedError,
    InvalidTextError,
    NoModelError,
)
from assistant.paths import app_paths
from assistant.providers import load_gguf
from assistant.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ask = subparsers.add_parser("ask", help="ask one question; the answer streams to stdout")
    ask.add_argument("question", type=text_argument, help="the question (use quotes)")
    _add_model_options(ask)
    ask.add_argument("--conversation", type=record_id, metavar="ID", help="continue a saved chat")
    ask.add_argument(
        "--json", action="store_true", help="print one JSON object at the end instead of streaming"
    )
    from assistant.cli.cloud_cmd import add_ask_options

    add_ask_options(ask)
    ask.set_defaults(func=run_ask)

    chat = subparsers.add_parser(
        "chat", help="interactive chat in the terminal (/new, /model ID, /exit)"
    )
    _add_model_options(chat)
    chat.add_argument("--conversation", type=record_id, metavar="ID", help="continue a saved chat")
    chat.set_defaults(func=run_chat)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="ID", help="an installed model (see `models list`)")
    parser.add_argument("--model-path", type=Path, metavar="FILE.gguf", help="a GGUF file")
    parser.add_argument(
        "--system", type=text_argument, metavar="TEXT", help="system prompt for a new chat"
    )
    parser.add_argument(
        "--temperature",
        type=setting_value("temperature"),
        help=f"0 = always the most likely word ({range_text('temperature')})",
    )
    parser.add_argument(
        "--max-tokens",
        type=setting_value("max_tokens"),
        metavar="N",
        help=f"longest answer in tokens ({range_text('max_tokens')})",
    )
    parser.add_argument("--seed", type=seed, help="random seed, for repeatable answers")


class _Session:
    """What ``ask`` and ``chat`` share: settings, history and the loaded model."""

    def __init__(self, args: argparse.Namespace) -> None:
        paths = app_paths().ensure()
        self.settings = Settings.load(paths.settings_file)
        for warning in self.settings.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        self.history = HistoryStore.open(paths.history_db)
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
        return base.override(**changes)  # the command line's values are the user's own

    def load_model(self, model_id: str | None, model_path: Path | None) -> None:
        path, name = resolve_model(model_id, model_path)
        # Whether llama.cpp can run here, asked of a child process once per installation (kept
        # in the cache folder): an engine built for a newer processor would end this one with
        # "illegal instruction" instead of a sentence.
        report = doctor.check_engine(app_paths())
        if report.problem:
            raise report.error_for_user()
        # Load the new model before letting go of the old one: if it fails, the chat goes on.
        # A meter on a terminal, never next to --json; Ctrl+C cancels (raises ``Cancelled``).
        show = False if getattr(self.args, "json", False) else None
        try:
            with load_meter(name, show=show) as meter:
                # Through the local provider's loader: it brings the saved model states, so
                # continuing a conversation here does not read it all again.
                loaded = load_gguf(path, self.settings, name, progress=meter)
                if meter.interrupted:  # Ctrl+C after llama.cpp's last report
                    loaded.close()
                    raise Cancelled()
        except Cancelled:
            raise Cancelled(f"Loading {name} was cancelled.") from None
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

    def ask(self, conversation_id: int, question: str, *, stream: bool) -> conversation.Exchange:
        """Save and answer ``question``, holding the conversation's turn so that another
        process asking into it waits until this answer is saved."""

        def waiting() -> None:
            print(
                f"Waiting: another question in conversation {conversation_id} is being answered…",
                file=sys.stderr,
            )

        with conversation.turn(self.history, conversation_id, on_wait=waiting):
            return conversation.ask(
                self.history,
                self.engine,
                conversation_id,
                question,
                self.generation_settings(),
                on_chunk=_show if stream else None,
                on_dropped=_print_dropped,
            )

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
            hint="Download one (the list shows which fit this computer), import a .gguf file "
            "you already have, or pass --model-path FILE.gguf.",
            command="offline-assistant models list",
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
    conversation.check_question(args.question)  # before a model is loaded or a chat made
    if getattr(args, "cloud", None):
        from assistant.cli.cloud_cmd import run_cloud_ask

        return run_cloud_ask(args)
    session = _Session(args)
    try:
        return _ask(session, args)
    finally:
        session.close()


def _ask(session: _Session, args: argparse.Namespace) -> int:
    if args.conversation is not None:  # a wrong number is told before the model loads
        session.history.get_conversation(args.conversation)
    if not _load_first_model(session):
        return EXIT_INTERRUPTED
    conversation_id = session.open_conversation(args.conversation)

    try:
        exchange = session.ask(conversation_id, args.question, stream=not args.json)
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


def _load_first_model(session: _Session) -> bool:
    """Load the model asked for; ``False`` when Ctrl+C cancelled the load (said on stderr)."""
    try:
        session.load_model(session.args.model, session.args.model_path)
    except Cancelled as cancelled:
        print(cancelled, file=sys.stderr)
        return False
    return True


def _read_line() -> str:
    """One line typed at the prompt; bytes that are not UTF-8 are an ``InvalidTextError``
    (naming the position) that ends this line, not the session."""
    try:
        line = input(">>> ")
    except UnicodeDecodeError as exc:  # a UTF-8 locale decodes stdin strictly
        raise InvalidTextError(
            f"That line is not valid UTF-8 text (an invalid byte at position {exc.start}).",
            hint="Type it again in UTF-8.",
        ) from None
    return check_text(line, "that line").strip()


def run_chat(args: argparse.Namespace) -> int:
    session = _Session(args)
    try:
        return _chat(session, args)
    finally:
        session.close()


def _chat(session: _Session, args: argparse.Namespace) -> int:
    if args.conversation is not None:
        session.history.get_conversation(args.conversation)
    if not _load_first_model(session):
        return EXIT_INTERRUPTED
    # A new conversation is made with the first question, so a session that asks nothing
    # leaves no empty "(untitled)" chat behind.
    conversation_id: int | None = args.conversation
    where = f"conversation {conversation_id}" if conversation_id else "a new conversation"
    print(
        f"Chatting with {session.engine.model_name} ({where}). "
        "Commands: /new, /model ID, /exit. Ctrl-C stops an answer.",
        file=sys.stderr,
    )
    while True:
        try:
            line = _read_line()
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        except InvalidTextError as exc:
            print(f"error: {describe(exc)}", file=sys.stderr)
            continue
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return 0
        if line == "/new":
            conversation_id = None
            print("The next question starts a new conversation.", file=sys.stderr)
            continue
        if line.startswith("/model"):
            name = line.removeprefix("/model").strip()
            if not name:
                print(f"Current model: {session.engine.model_name}", file=sys.stderr)
                continue
            try:
                session.load_model(name, None)
            except Cancelled:
                print(
                    f"Loading {name} was cancelled. Still using {session.engine.model_name}.",
                    file=sys.stderr,
                )
                continue
            except AssistantError as exc:
                print(f"error: {describe(exc)}", file=sys.stderr)
                print(f"Still using {session.engine.model_name}.", file=sys.stderr)
                continue
            conversation_id = None
            print(
                f"Now using {name}; the next question starts a new conversation.", file=sys.stderr
            )
            continue
        if line.startswith("/"):
            print("Unknown command. Use /new, /model ID or /exit.", file=sys.stderr)
            continue
        try:
            if conversation_id is None:
                conversation_id = session.new_conversation()
            session.ask(conversation_id, line, stream=True)
            print()
        except KeyboardInterrupt:
            print("\n[stopped]", file=sys.stderr)
        except HistoryDamagedError:
            raise  # nothing more can be saved: end the session with the way out
        except AssistantError as exc:
            print(f"error: {describe(exc)}", file=sys.stderr)
