"""``serve``: the local OpenAI-compatible API without a window.

Runs ``assistant.api``'s server over an ``EngineQueue`` (one thread owns the model, no Qt) until
Ctrl+C. Loopback only unless ``--allow-network``; the token is the one kept in the keyring
(made on first use) and shown at start.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from assistant.api.engine_queue import EngineQueue
from assistant.api.server import DEFAULT_HOST, ApiServer, check_bind
from assistant.errors import SecretStoreError
from assistant.models.store import ModelStore
from assistant.paths import app_paths
from assistant.secrets import ensure_api_token
from assistant.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve", help="run the OpenAI-compatible API for other programs (no window)"
    )
    serve.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    serve.add_argument("--port", type=int, help="port (default: the one in Settings, 8765)")
    serve.add_argument("--model", metavar="ID", help="model to load first (default: the default)")
    serve.add_argument(
        "--allow-network",
        action="store_true",
        help="allow an address other computers can reach (needs the token)",
    )
    serve.add_argument(
        "--no-token",
        action="store_true",
        help="accept requests without the token (this computer only)",
    )
    serve.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    # Refuse a network address before anything else happens (no token made, no model loaded).
    check_bind(args.host, allow_network=args.allow_network, token=None if args.no_token else "-")
    paths = app_paths().ensure()
    settings = Settings.load(paths.settings_file)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    store = ModelStore(paths)
    model_id = args.model or store.default_model().id  # NoModelError says how to get one
    store.resolve(model_id)  # an unknown id or a missing file is reported now, not per request
    token = None if args.no_token else _token()

    queue = EngineQueue(store, settings, settings.generation_settings())
    server = ApiServer(
        queue,
        token=token,
        host=args.host,
        port=args.port if args.port is not None else settings["api_port"],
        allow_network=args.allow_network,
    )
    queue.preload(model_id)
    try:
        server.start()
        for warning in server.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"Local API: {server.base_url}")
        if token is None:
            print("No token: every program on this computer can use it.", file=sys.stderr)
        else:
            print(f"Token:     {token}")
        print(f"Loading {model_id}…", flush=True)
        queue.wait_loaded()
        if queue.loaded_model is None:
            print(f"warning: {model_id} did not load; requests will say why.", file=sys.stderr)
        else:
            print(f"Ready: {model_id}. Press Ctrl+C to stop.", flush=True)
        _wait_for_stop()
    finally:
        server.stop()
        queue.close()
    return 0


def _wait_for_stop() -> None:
    """Until Ctrl+C (KeyboardInterrupt) or a TERM (a service manager stopping it)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda _number, _frame: stop.set())
    try:
        while not stop.wait(0.5):  # a timed wait lets Ctrl+C through at once
            pass
    finally:
        signal.signal(signal.SIGTERM, previous)


def _token() -> str:
    try:
        return ensure_api_token()
    except SecretStoreError as exc:
        # No keyring here (a server without a desktop session): a token for this run only.
        import secrets

        print(
            f"warning: {exc.message} Using a token for this run only.",
            file=sys.stderr,
        )
        return "oa-" + secrets.token_urlsafe(32)
