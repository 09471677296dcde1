"""``models check``: does the Hub have a different file than an installed model's? Nothing is
downloaded; one HEAD request per model that came from a Hub repository."""

from __future__ import annotations

import argparse
import json
import sys

from assistant.models import hub
from assistant.models.store import ModelStore
from assistant.models.updates import UpdateCheck, check_for_updates
from assistant.paths import app_paths
from assistant.settings import Settings

_WORDS = {
    "current": "up to date",
    "changed": "CHANGED",
    "unknown": "?",
    "failed": "failed",
    "not_from_hub": "-",
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check", help="ask the Hub whether installed models' files changed (downloads nothing)"
    )
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.set_defaults(func=run_check)


def configured_hub_address() -> str:
    """The Hub (or mirror) the user chose in the settings; ``HF_ENDPOINT`` wins."""
    settings = Settings.load(app_paths().settings_file)
    return hub.hub_address(settings["hub_address"])


def run_check(args: argparse.Namespace) -> int:
    from assistant.secrets import get_hf_token

    store = ModelStore(app_paths().ensure())
    models = [m for m in store.list_installed() if not m.missing]
    endpoint = configured_hub_address()
    if not models:
        print("No model is installed; nothing to check.", file=sys.stderr)
        return 0
    if not args.json:
        print(f"Asking {endpoint} about {len(models)} installed model(s)…", file=sys.stderr)
    results = check_for_updates(models, endpoint=endpoint, token=get_hf_token())
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=2))
        return 0
    _print(results)
    return 0


def _print(results: list[UpdateCheck]) -> None:
    width = max([len(r.model.id) for r in results] + [2]) + 1
    print(f"{'ID':<{width}} {'STATUS':<11} NOTE")
    for result in results:
        print(f"{result.model.id:<{width}} {_WORDS[result.status]:<11} {result.note}")
    if any(r.status == "changed" for r in results):
        print(
            "\nA changed file is not downloaded. Catalog models stay on the file the catalog "
            "verified; to get the new file of a repository: "
            "offline-assistant models pull REPO_ID --file FILENAME"
        )
