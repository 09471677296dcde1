"""``cloud …``: set up cloud providers and their keys; ``ask --cloud NAME``: ask one.

Nothing leaves the computer unless cloud models are on (``cloud on``, or adding a provider)
and the user confirms the exact messages on a terminal, or passes ``--yes``. Off a terminal
without ``--yes`` the request is refused before anything is sent.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from assistant import secrets
from assistant.chat import conversation
from assistant.chat.consent import MODE_LABELS, Preview, build_preview, decide
from assistant.chat.history import HistoryStore
from assistant.chat.ledger import CloudLedger
from assistant.cloud import PRESETS, CloudConfig, from_preset, make_endpoint, open_provider
from assistant.engine.base import ChatMessage
from assistant.engine.cloud import CloudDisabledError, CloudError, MissingKeyError, mask_key
from assistant.errors import AssistantError, SecretStoreError
from assistant.paths import app_paths
from assistant.settings import Settings

EXIT_REFUSED = 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cloud = subparsers.add_parser(
        "cloud", help="cloud models with your own API key (only sent with your consent)"
    )
    commands = cloud.add_subparsers(dest="cloud_command", metavar="COMMAND", required=True)

    add = commands.add_parser("add", help="add or change a cloud provider")
    add.add_argument("name", help="a short name, e.g. openai or team-server")
    add.add_argument("--kind", choices=("openai", "anthropic"), help="the API it speaks")
    add.add_argument("--base-url", metavar="URL", help="e.g. https://api.openai.com/v1")
    add.add_argument("--model", metavar="MODEL", help="the model to ask")
    add.add_argument("--preset", choices=sorted(PRESETS), help="a known provider's URL and kind")
    add.add_argument("--label", default="", help="the name shown in the app")
    add.set_defaults(func=run_add)

    key = commands.add_parser("key", help="store a provider's API key (from stdin or a prompt)")
    key.add_argument("name")
    key.set_defaults(func=run_key)

    listing = commands.add_parser("list", help="the cloud providers and whether a key is stored")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run_list)

    remove = commands.add_parser("rm", help="forget a provider and its key")
    remove.add_argument("name")
    remove.set_defaults(func=run_rm)

    test = commands.add_parser("test", help="test the connection (sends no conversation)")
    test.add_argument("name")
    test.set_defaults(func=run_test)

    for state in ("on", "off"):
        switch = commands.add_parser(state, help=f"turn every cloud path {state}")
        switch.set_defaults(func=run_switch, enabled=state == "on")

    ledger = commands.add_parser("ledger", help="what was sent to cloud models")
    ledger.add_argument("--json", action="store_true", help="everything, messages included")
    ledger.add_argument("--csv", action="store_true", help="one line per request")
    ledger.set_defaults(func=run_ledger)


def add_ask_options(parser: argparse.ArgumentParser) -> None:
    """The options ``ask`` gets for asking a cloud model."""
    parser.add_argument("--cloud", metavar="NAME", help="ask this cloud provider instead")
    parser.add_argument(
        "--yes", action="store_true", help="send to the cloud without asking for confirmation"
    )
    parser.add_argument(
        "--latest-only", action="store_true", help="send only the question, not the chat"
    )
    parser.add_argument(
        "--redact",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="replace e-mail addresses, phone numbers, keys and paths before sending",
    )


def _config() -> CloudConfig:
    return CloudConfig.for_paths(app_paths().ensure())


def _settings() -> Settings:
    return Settings.load(app_paths().ensure().settings_file)


# --- providers -----------------------------------------------------------------------------------


def run_add(args: argparse.Namespace) -> int:
    config = _config()
    existing = config.find(args.name)
    if args.preset:
        endpoint = from_preset(args.name, args.preset, args.model)
        if args.base_url:
            endpoint = make_endpoint(
                args.name, endpoint.kind, args.base_url, endpoint.model, endpoint.label
            )
    else:
        kind = args.kind or (existing.kind if existing else "openai")
        base_url = args.base_url or (existing.base_url if existing else "")
        model = args.model or (existing.model if existing else "")
        if not base_url or not model:
            raise CloudError(
                "A base URL and a model are needed.",
                hint="Give --base-url and --model, or --preset for a known provider.",
            )
        endpoint = make_endpoint(args.name, kind, base_url, model, args.label)
    config.save(endpoint)
    settings = _settings()
    if not settings["cloud_enabled"]:
        settings.update({"cloud_enabled": True})  # adding a provider is the user's opt-in
        print("Cloud models are now on. `offline-assistant cloud off` turns them all off.")
    print(f"Saved {endpoint.name}: {endpoint.kind} API at {endpoint.base_url}, {endpoint.model}.")
    if not secrets.get_cloud_key(endpoint.name):
        print(f"Next, store its key: offline-assistant cloud key {endpoint.name}")
    return 0


def run_key(args: argparse.Namespace) -> int:
    _config().get(args.name)
    if sys.stdin.isatty():
        key = getpass.getpass(f"API key for {args.name} (not shown): ")
    else:
        key = sys.stdin.readline()
    key = key.strip()
    if not key:
        raise CloudError("No key was given, so nothing was stored.")
    try:
        secrets.set_cloud_key(args.name, key)
    except SecretStoreError as exc:
        # A terminal command ends with its process: a key held in memory would be gone.
        raise SecretStoreError(
            exc.message,
            hint="Without a keyring the key cannot be kept between commands. The app can "
            "hold it in memory while it runs, or set the environment variable "
            f"{secrets.cloud_key_env(args.name)} in your own shell.",
        ) from None
    print(f"Stored the key for {args.name} in the system keyring ({mask_key(key)}).")
    return 0


def run_list(args: argparse.Namespace) -> int:
    settings = _settings()
    rows = []
    for endpoint in _config().list():
        key = secrets.get_cloud_key(endpoint.name)
        rows.append(
            {
                "name": endpoint.name,
                "kind": endpoint.kind,
                "base_url": endpoint.base_url,
                "model": endpoint.model,
                "key": mask_key(key),
            }
        )
    if args.json:
        print(json.dumps({"enabled": settings["cloud_enabled"], "providers": rows}, indent=2))
        return 0
    print(f"Cloud models are {'on' if settings['cloud_enabled'] else 'off'}.")
    if not rows:
        print("No cloud provider yet. Add one: offline-assistant cloud add NAME --preset openai")
    for row in rows:
        print(f"{row['name']}\t{row['kind']}\t{row['base_url']}\t{row['model']}\tkey: {row['key']}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    if not _config().remove(args.name):
        raise CloudError(f"There is no cloud provider called {args.name!r}.")
    print(f"Removed {args.name} and its key.")
    return 0


def run_test(args: argparse.Namespace) -> int:
    provider = open_provider(_config(), args.name, allowed=lambda: _settings()["cloud_enabled"])
    try:
        models = provider.test_connection()
    finally:
        provider.close()
    wanted = provider.model_name
    print(f"{args.name} answered and accepted the key; it offers {len(models)} model(s).")
    if models and wanted not in models:
        print(f"note: {wanted} is not among them; check the model name.", file=sys.stderr)
    return 0


def run_switch(args: argparse.Namespace) -> int:
    _settings().update({"cloud_enabled": args.enabled})
    print("Cloud models are on." if args.enabled else "Cloud models are off: nothing is sent.")
    return 0


def run_ledger(args: argparse.Namespace) -> int:
    with HistoryStore(app_paths().ensure().history_db):
        pass  # creates the database (and its tables) if this is the first command ever
    ledger = CloudLedger(app_paths().history_db)
    try:
        if args.json:
            print(json.dumps(ledger.export_json(), indent=2, ensure_ascii=False))
        elif args.csv:
            sys.stdout.write(ledger.export_csv())
        else:
            entries = ledger.entries()
            if not entries:
                print("Nothing has been sent to a cloud model.")
            for e in entries:
                print(
                    f"{e.created_at[:19]}  {e.provider}/{e.model}  chat {e.conversation_id}  "
                    f"sent {e.sent_chars} chars, got {e.received_chars}  {e.status}"
                )
    finally:
        ledger.close()
    return 0


# --- ask --cloud ----------------------------------------------------------------------------------


def _show_preview(name: str, model: str, preview: Preview) -> None:
    out = sys.stderr
    print(f"About to send to {name} ({model}) — exactly this:", file=out)
    for message in preview.messages:
        print(f"--- {message.role} ---", file=out)
        print(message.content, file=out)
    print("---", file=out)
    notes = []
    if preview.left_out:
        notes.append(f"{preview.left_out} earlier message(s) left out")
    if preview.redacted:
        notes.append("redacted: " + ", ".join(f"{n} {k}" for k, n in preview.redacted.items()))
    if notes:
        print("(" + "; ".join(notes) + ")", file=out)


def _confirmed(args: argparse.Namespace, name: str) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"Send this to {name}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def run_cloud_ask(args: argparse.Namespace) -> int:
    """``ask --cloud NAME "QUESTION"``: preview, confirm, send, save, record in the ledger."""
    paths = app_paths().ensure()
    settings = Settings.load(paths.settings_file)
    config = CloudConfig(paths.config / "cloud.json")
    endpoint = config.get(args.cloud)
    if not settings["cloud_enabled"]:
        raise CloudDisabledError(
            "Cloud models are switched off, so nothing was sent.",
            command="offline-assistant cloud on",
        )
    if not secrets.get_cloud_key(endpoint.name):
        raise MissingKeyError(
            f"No API key is stored for {endpoint.display_name}, so nothing was sent.",
            command=f"offline-assistant cloud key {endpoint.name}",
        )
    history = HistoryStore(paths.history_db)
    ledger = CloudLedger(paths.history_db)
    try:
        return _ask(args, settings, config, endpoint.name, history, ledger)
    finally:
        ledger.close()
        history.close()


def _ask(
    args: argparse.Namespace,
    settings: Settings,
    config: CloudConfig,
    name: str,
    history: HistoryStore,
    ledger: CloudLedger,
) -> int:
    endpoint = config.get(name)
    model = args.model or endpoint.model
    if args.conversation is not None:
        conversation_id = history.get_conversation(args.conversation).id
        context = conversation.context_for(history, conversation_id)
        mode, allowed_for = ledger.mode(conversation_id)
        created = False
    else:
        system = args.system if args.system is not None else settings["system_prompt"]
        context = [ChatMessage("system", system)] if system else []
        mode, allowed_for, conversation_id, created = "ask", None, None, True
    verdict = decide(True, mode, name, allowed_for)
    if verdict.decision == "blocked":
        raise CloudError(
            f"Not sent: conversation {conversation_id} is {MODE_LABELS[mode]}.",
            hint="Choose \u201cCloud: ask each time\u201d for it in the app, or ask in a new chat.",
        )
    redact = settings["cloud_redact"] if args.redact is None else args.redact
    preview = build_preview(
        [*context, ChatMessage("user", args.question)],
        latest_only=args.latest_only,
        redact_details=redact,
    )
    _show_preview(name, model, preview)
    if verdict.decision == "preview" and not _confirmed(args, name):
        print(
            "Not sent. Off a terminal, add --yes to send without being asked."
            if not sys.stdin.isatty() and not args.yes
            else "Not sent.",
            file=sys.stderr,
        )
        return EXIT_REFUSED
    provider = open_provider(
        config, name, allowed=lambda: bool(settings["cloud_enabled"]), model=model
    )
    if conversation_id is None:
        conversation_id = history.create_conversation(
            model=model, system_prompt=context[0].content if context else None
        ).id
        ledger.set_mode(conversation_id, "ask")
    question = history.add_message(conversation_id, "user", args.question)
    entry = ledger.start(conversation_id, name, model, endpoint.base_url, preview.messages)
    generation = settings.generation_settings()
    try:
        exchange = conversation.answer(
            history,
            provider,
            conversation_id,
            generation,
            messages=preview.messages,
            on_chunk=None if args.json else _write,
        )
    except KeyboardInterrupt:
        ledger.finish(entry, status="interrupted", error="stopped")  # the part received stays
        raise
    except AssistantError as exc:
        ledger.finish(entry, status="error", error=str(exc))
        # The chat is left as it was before: the question (and any failed answer) go.
        history.delete_messages_from(conversation_id, question.id)
        if created:
            history.delete_conversation(conversation_id)
        raise
    finally:
        provider.close()
    ledger.finish(
        entry,
        status=exchange.message.status,
        received=exchange.text,
        stats=exchange.stats,
        message_id=exchange.message.id,
    )
    if args.json:
        print(
            json.dumps(
                {
                    "text": exchange.text,
                    "provider": name,
                    "model": model,
                    "conversation_id": conversation_id,
                    "message_id": exchange.message.id,
                    "prompt_tokens": exchange.stats.prompt_tokens,
                    "completion_tokens": exchange.stats.completion_tokens,
                    "ledger_id": entry,
                },
                ensure_ascii=False,
            )
        )
    else:
        print()
        print(f"[answered by {name} ({model}), a cloud model]", file=sys.stderr)
    return 0


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()
