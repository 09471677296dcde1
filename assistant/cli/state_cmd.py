"""``models memory`` and ``models clear-state``: the model's saved reading of conversations.

Each loaded model keeps the KV state of the conversations it read (see
``assistant.engine.state_cache``) in memory and in the cache folder. These commands show how
much that takes and how often it saved a full read, and forget it all.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from assistant.disk import format_bytes
from assistant.paths import app_paths
from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.engine.state_cache import StateCache


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the commands to ``models``' sub-commands."""
    memory = commands.add_parser(
        "memory", help="how much saved model state the app keeps, and how often it helped"
    )
    memory.add_argument("--json", action="store_true", help="print JSON")
    memory.set_defaults(func=run_memory)

    clear = commands.add_parser(
        "clear-state", help="forget the model's saved reading of every conversation"
    )
    clear.set_defaults(func=run_clear_state)


def _cache() -> tuple[StateCache, Settings]:
    # Imported here: numpy is slow to import, and every `models` command builds this parser.
    from assistant.providers import saved_states

    settings = Settings.load(app_paths().settings_file)
    return saved_states(settings), settings


def run_memory(args: argparse.Namespace) -> int:
    cache, settings = _cache()
    stats = cache.stats()
    if args.json:
        print(
            json.dumps(
                {
                    "enabled": settings["model_memory"],
                    "folder": str(cache.folder),
                    "disk_bytes": stats.disk_bytes,
                    "disk_states": stats.disk_states,
                    "disk_budget": stats.disk_budget,
                    "hits": stats.hits,
                    "misses": stats.misses,
                    "hit_rate": stats.hit_rate,
                    "tokens_restored": stats.tokens_restored,
                    "prompt_lookup": settings["prompt_lookup"],
                }
            )
        )
        return 0
    state = "on" if settings["model_memory"] else "off"
    print(f"Saved model state ({state}): {cache.folder}")
    print(
        f"  {stats.disk_states} conversation state(s), {format_bytes(stats.disk_bytes)} "
        f"of {format_bytes(stats.disk_budget)}"
    )
    if stats.hit_rate is None:
        print("  not used yet")
    else:
        print(
            f"  hit rate {stats.hit_rate:.0%} ({stats.hits} of {stats.hits + stats.misses} "
            f"long reads avoided, {stats.tokens_restored:,} tokens not read again)"
        )
    return 0


def run_clear_state(args: argparse.Namespace) -> int:
    cache, _settings = _cache()
    freed = cache.clear()
    print(f"Forgot the saved model state ({format_bytes(freed)} freed).")
    return 0
