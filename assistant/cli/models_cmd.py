"""``models``: list, pull, search, import, remove and choose models; store the Hub token.

Only ``pull`` and ``search`` may talk to the Hugging Face Hub. Every other action runs inside
:func:`assistant.models.hub.offline_guard`, so it works with the network unplugged and never
phones home.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from assistant.cli import EXIT_INTERRUPTED, models_check_cmd
from assistant.cli.arguments import bad_utf8_position
from assistant.disk import format_bytes
from assistant.errors import AssistantError, Cancelled, DownloadError, InvalidTextError
from assistant.models import hub
from assistant.models.hub_cache import HubCache
from assistant.models.speed import format_rate
from assistant.models.store import InstalledModel, ModelStore
from assistant.paths import app_paths

if TYPE_CHECKING:
    from assistant.models.catalog import Catalog
    from assistant.models.downloads import DownloadProgress, DownloadResult


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = subparsers.add_parser("models", help="get, list and manage models")
    commands = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    listing = commands.add_parser("list", help="catalog and installed models, and what fits here")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(func=_offline(run_list))

    pull = commands.add_parser(
        "pull", help="download a catalog model (ID) or any GGUF file (REPO_ID --file FILE)"
    )
    pull.add_argument("model", metavar="ID|REPO_ID", help="catalog id, or Hub repository id")
    pull.add_argument("--file", metavar="FILENAME", help="the .gguf file in the repository")
    pull.add_argument(
        "--anyway",
        action="store_true",
        help="download even if the model is too large for this computer's memory",
    )
    pull.set_defaults(func=run_pull)

    search = commands.add_parser("search", help="list a Hub repository's GGUF files")
    search.add_argument("repo", metavar="REPO_ID", help="owner/name on the Hugging Face Hub")
    search.set_defaults(func=run_search)

    importing = commands.add_parser("import", help="use a .gguf file you already have")
    importing.add_argument("path", type=Path, metavar="PATH")
    importing.add_argument(
        "--copy", action="store_true", help="copy it into the app's folder (default: use in place)"
    )
    importing.add_argument("--id", dest="model_id", metavar="ID", help="the id to give it")
    importing.set_defaults(func=_offline(run_import))

    remove = commands.add_parser("rm", help="remove a model and free its disk space")
    remove.add_argument("model_id", metavar="ID")
    remove.add_argument(
        "--keep-file", action="store_true", help="only forget it; leave the file on disk"
    )
    remove.set_defaults(func=_offline(run_rm))

    default = commands.add_parser("default", help="choose the model `ask` uses by default")
    default.add_argument("model_id", metavar="ID")
    default.set_defaults(func=_offline(run_default))

    models_check_cmd.register(commands)

    token = commands.add_parser("token", help="the Hugging Face token (kept in the OS keyring)")
    token.add_argument("action", choices=("set", "clear", "status"))
    token.set_defaults(func=_offline(run_token))

    from assistant.cli import state_cmd

    state_cmd.register(commands)


def _offline(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def guarded(args: argparse.Namespace) -> int:
        with hub.offline_guard():
            return handler(args)

    guarded.__doc__ = handler.__doc__
    return guarded


def _catalog() -> Catalog:
    from assistant.models.catalog import load_catalog

    return load_catalog()


def _store(catalog: Catalog | None = None) -> ModelStore:
    return ModelStore(app_paths().ensure(), catalog=catalog)


# --- list ----------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from assistant.models import hardware, speed
    from assistant.models.gguf_file import read_gguf_info
    from assistant.settings import Settings

    catalog = _catalog()
    store = _store(catalog)
    paths = app_paths()
    settings = Settings.load(paths.settings_file)
    hw = hardware.detect_hardware()
    if speed.load_profile(paths.cache, hw) is None:
        print("Measuring this computer's speed (once)…", file=sys.stderr)
    estimator = speed.SpeedEstimator.measured_now(
        paths.cache, hw, threads=settings["threads"], gpu_layers=settings["gpu_layers"]
    )
    threshold = float(settings["usable_tokens_per_s"])
    advice = speed.recommend_by_speed(catalog, estimator, min_tokens_per_s=threshold)
    best = advice.spec if advice.fits and advice.usable else None
    default_id = store.default_id()
    installed = {model.id: model for model in store.list_installed()}
    cache = HubCache()
    rows: list[dict[str, Any]] = []
    for spec in catalog:
        model = installed.pop(spec.id, None)
        if model is not None:
            status = "missing" if model.missing else "installed"
        elif cache.cached_file(spec.repo, spec.filename) is not None:
            status = "in-hf-cache"
        else:
            status = "available"
        expected = estimator.for_spec(spec)
        rows.append(
            {
                "id": spec.id,
                "name": spec.name,
                "size_bytes": model.size_bytes if model else spec.size_bytes,
                "fit": hardware.fit_for_spec(spec, hw),
                "expected_tokens_per_s": round(expected.decode_tokens_per_s, 1),
                "expected_prompt_tokens_per_s": round(expected.prompt_tokens_per_s, 1),
                "status": status,
                "default": spec.id == default_id,
                "recommended": best is not None and spec.id == best.id,
                "path": str(model.path) if model else None,
                "source": "catalog",
            }
        )
    others = []
    for model in installed.values():
        try:
            expected = estimator.for_gguf(read_gguf_info(model.path))
        except AssistantError:  # missing or damaged: judge it by its recorded size
            expected = estimator.for_size(max(model.size_bytes, 1))
        others.append(
            {
                "id": model.id,
                "name": model.name,
                "size_bytes": model.size_bytes,
                "fit": hardware.fit_for_size(max(model.size_bytes, 1), hw),
                "expected_tokens_per_s": round(expected.decode_tokens_per_s, 1),
                "expected_prompt_tokens_per_s": round(expected.prompt_tokens_per_s, 1),
                "status": "missing" if model.missing else "installed",
                "default": model.id == default_id,
                "recommended": False,
                "path": str(model.path),
                "source": model.source,
            }
        )
    if args.json:
        document = {
            "catalog": rows,
            "installed_elsewhere": others,
            "recommendation": {
                "id": advice.spec.id if advice.spec else None,
                "reason": advice.reason,
                "usable_tokens_per_s": threshold,
            },
            "speed": {
                "device": estimator.device,
                "threads": estimator.threads,
                "measured": estimator.measured,
                "learnt": estimator.factors.get(estimator.device).decode_samples > 0,
            },
        }
        print(json.dumps(document, indent=2))
        return 0
    print(
        f"This computer: {format_bytes(hw.total_ram)} memory, "
        f"{format_bytes(hw.available_ram)} available now."
    )
    print(f"Recommended: {advice.reason}.")
    print()
    _print_table(rows, hardware.fit_label)
    if others:
        print()
        print("Other installed models:")
        _print_table(others, hardware.fit_label)
    print()
    print("* default model (used by `ask` without --model)   + recommended for this computer")
    print(
        "SPEED: expected tokens/s writing an answer here"
        + ("" if estimator.measured else " (a first guess: the measurement failed)")
    )
    if any(row["status"] == "missing" for row in rows + others):
        print(
            "MISSING: the file was deleted or moved outside the app; pull it again or "
            "`models rm ID`."
        )
    if any(row["status"] == "in-hf-cache" for row in rows):
        print("in HF cache: already downloaded by another tool; `models pull ID` registers it.")
    if not any(row["status"] in ("installed", "missing") for row in rows + others):
        # Where "no model is installed" errors send the user: say how to get one.
        print(
            "No model is installed yet. Get one with `offline-assistant models pull ID`, or "
            "use a .gguf file you have with `offline-assistant models import PATH`."
        )
    return 0


_STATUS_WORDS = {
    "installed": "installed",
    "missing": "MISSING",
    "in-hf-cache": "in HF cache",
    "available": "-",
}


def _print_table(rows: list[dict[str, Any]], fit_label: Callable[[Any], str]) -> None:
    id_width = max([len(row["id"]) for row in rows] + [2]) + 1
    print(
        f"  {'ID':<{id_width}} {'SIZE':>9}  {'FIT':<9}  {'SPEED':>10}  {'STATUS':<11}  "
        "LOCATION / NAME"
    )
    for row in rows:
        mark = ("*" if row["default"] else " ") + ("+" if row["recommended"] else " ")
        where = row["path"] or row["name"]
        rate = f"~{format_rate(row['expected_tokens_per_s'])} tok/s"
        print(
            f"{mark}{row['id']:<{id_width}} {format_bytes(row['size_bytes']):>9}  "
            f"{fit_label(row['fit']):<9}  {rate:>10}  {_STATUS_WORDS[row['status']]:<11}  "
            f"{where}"
        )


# --- pull ----------------------------------------------------------------------------------------


class ProgressBar:
    """Bytes, percentage, speed and time left on one redrawn line (or a line per 10 % if stderr
    is not a terminal). It draws every report it gets: the job's meter already sends at most
    ten a second, besides the ones that must be seen (paused, verifying, done)."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_decile = -1
        self._drawn = False

    def __call__(self, progress: DownloadProgress) -> None:
        if progress.phase == "retrying":  # a wait of many seconds must not look like a hang
            self.stream.write(("\r" if self.tty else "") + progress.note)
            self.stream.write("\x1b[K\n" if self.tty else "\n")
            self.stream.flush()
            self._drawn = False
            return
        if self.tty:
            self.stream.write("\r" + self.render(progress) + "\x1b[K")
            self._drawn = True
        else:
            decile = int((progress.fraction or 0) * 10)
            if decile == self._last_decile or progress.phase != "downloading":
                return
            self._last_decile = decile
            self.stream.write(self.render(progress) + "\n")
        self.stream.flush()

    def render(self, progress: DownloadProgress) -> str:
        total = progress.total
        if progress.phase == "verifying":
            head = "verifying"
        elif progress.phase == "paused":
            head = "paused"
        else:
            head = self.label
        if total:
            fraction = min(progress.done / total, 1.0)
            filled = int(fraction * 24)
            bar = "#" * filled + "-" * (24 - filled)
            amount = f"{format_bytes(progress.done)} / {format_bytes(total)}"
            text = f"{head} [{bar}] {fraction * 100:5.1f}%  {amount}"
        else:
            text = f"{head} {format_bytes(progress.done)}"
        if progress.phase == "downloading":
            text += f"  {format_bytes(progress.speed_bps)}/s  ETA {_clock(progress.eta_s)}"
        return text

    def finish(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def run_pull(args: argparse.Namespace) -> int:
    from assistant.models.downloads import Downloader

    catalog = _catalog()
    store = _store(catalog)
    downloader = Downloader(
        store, catalog=catalog, endpoint=models_check_cmd.configured_hub_address()
    )
    if args.file is None and args.model not in catalog and "/" in args.model:
        raise DownloadError(
            f"{args.model} looks like a repository: name the file to get with --file.",
            hint="Pick one of its .gguf files.",
            command=f"offline-assistant models search {args.model}",
        )
    target = downloader.target_for(args.model, args.file)
    bar = ProgressBar(target.filename)
    job = downloader.job(
        target,
        on_progress=bar,
        on_warning=lambda text: print(f"warning: {text}", file=sys.stderr),
        allow_large=args.anyway,
    )
    pinned = f" (commit {target.revision[:12]})" if target.revision != "main" else ""
    print(f"Getting {target.filename} from {target.repo}{pinned}", file=sys.stderr)
    job.start()
    result: DownloadResult | None = None
    try:
        while result is None:
            result = job.wait(timeout=0.2)
    except KeyboardInterrupt:
        job.cancel()
        with contextlib.suppress(Cancelled):
            job.wait()
    finally:
        bar.finish()
    if result is None:
        print(
            f"Cancelled. The {format_bytes(job.progress.done)} downloaded so far are kept: "
            "run the same command again to continue.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    model = result.model
    if result.already_installed:
        print(f"{model.id} is already installed at {model.path}")
    elif result.from_cache:
        print(
            f"Found {target.filename} in the Hugging Face cache; verified it and installed it "
            f"as {model.id} (nothing downloaded)."
        )
    else:
        resumed = (
            f" (continued from {format_bytes(result.resumed_from)})" if result.resumed_from else ""
        )
        print(
            f"Installed {model.id} ({format_bytes(model.size_bytes)}, verified){resumed} "
            f"at {model.path}"
        )
    if store.default_id() == model.id:
        print(f"{model.id} is the default model: `offline-assistant ask QUESTION` uses it.")
    return 0


# --- search --------------------------------------------------------------------------------------


def run_search(args: argparse.Namespace) -> int:
    from assistant.models import hardware
    from assistant.secrets import get_hf_token

    catalog = _catalog()
    store = _store(catalog)
    files = hub.list_gguf_files(
        args.repo, token=get_hf_token(), endpoint=models_check_cmd.configured_hub_address()
    )
    if not files:
        print(f"{args.repo} has no .gguf files.", file=sys.stderr)
        return 0
    hw = hardware.detect_hardware()
    installed = {(m.repo, m.filename): m for m in store.list_installed()}
    width = max(len(f.filename) for f in files) + 1
    print(f"{'FILE':<{width}} {'SIZE':>9}  {'QUANT':<8}  {'FIT':<9}  NOTE")
    for item in files:
        notes = []
        spec = catalog.find_by_file(args.repo, item.filename)
        if spec is not None:
            notes.append(f"catalog: {spec.id}")
        if (args.repo, item.filename) in installed:
            notes.append(f"installed as {installed[(args.repo, item.filename)].id}")
        if item.split is not None:
            notes.append(f"part {item.split[0]} of {item.split[1]}")
        fit = "?"
        if item.size_bytes:
            fit = hardware.fit_label(hardware.fit_for_size(item.size_bytes, hw))
        size = format_bytes(item.size_bytes) if item.size_bytes else "?"
        print(
            f"{item.filename:<{width}} {size:>9}  {item.quantization or '?':<8}  {fit:<9}  "
            f"{', '.join(notes)}".rstrip()
        )
    print(f"\nGet one with: offline-assistant models pull {args.repo} --file FILENAME")
    return 0


# --- import, rm, default -----------------------------------------------------------------------


def run_import(args: argparse.Namespace) -> int:
    store = _store(_catalog())
    model = store.import_file(args.path, copy=args.copy, model_id=args.model_id)
    _describe_import(model)
    if store.default_id() == model.id:
        print(f"{model.id} is the default model.")
    return 0


def _describe_import(model: InstalledModel) -> None:
    if model.owned:
        print(f"Imported {model.id}: copied to {model.path} ({format_bytes(model.size_bytes)}).")
    else:
        print(
            f"Imported {model.id}: using {model.path} in place. The file stays yours; "
            "`models rm` only forgets it."
        )


def run_rm(args: argparse.Namespace) -> int:
    store = _store()
    removal = store.remove(args.model_id, delete_file=not args.keep_file)
    line = f"Removed {removal.model.id}."
    if removal.deleted is not None:
        line += f" Deleted {removal.deleted} (freed {format_bytes(removal.freed_bytes)})."
    print(" ".join(part for part in (line, removal.note) if part))
    default_id = store.default_id()
    if default_id is not None and default_id != removal.model.id:
        print(f"The default model is {default_id}.")
    return 0


def run_default(args: argparse.Namespace) -> int:
    model = _store().set_default(args.model_id)
    print(f"{model.id} is now the default model.")
    return 0


# --- token ---------------------------------------------------------------------------------------


def run_token(args: argparse.Namespace) -> int:
    from assistant import secrets

    if args.action == "set":
        try:
            token = getpass.getpass("Hugging Face token (input hidden): ").strip()
        except EOFError:  # Ctrl-D, or stdin closed: nothing was typed
            print(file=sys.stderr)
            token = ""
        except UnicodeDecodeError as exc:
            raise InvalidTextError(
                f"The token typed is not valid UTF-8 text (an invalid byte at position "
                f"{exc.start}).",
                hint="Copy the token again from your Hugging Face account page.",
            ) from None
        if (
            bad_utf8_position(token) is not None
            or not token.isascii()
            or any(ch.isspace() for ch in token)
        ):
            raise InvalidTextError(
                "That is not a Hugging Face token: a token is one word of plain letters and "
                "digits.",
                hint="Copy the token again from your Hugging Face account page.",
            )
        if not token:
            print("No token entered; nothing changed.", file=sys.stderr)
            return 1
        secrets.set_hf_token(token)
        print("Token saved in the system keyring. Gated models you were granted can be pulled.")
    elif args.action == "clear":
        removed = secrets.clear_hf_token()
        print("Token removed from the keyring." if removed else "No token was stored.")
    else:
        source = secrets.hf_token_source()
        print(f"A Hugging Face token is set ({source})." if source else "No token is set.")
    return 0
