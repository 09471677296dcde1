"""What this installation is and whether it can run: ``offline-assistant doctor`` and the
details the window shows when the engine cannot run.

The report is a list of :class:`Section` s, each made by one function of :data:`SECTIONS`
from a :class:`DoctorContext`. To add a section, write ``def my_section(context) -> Section``
and append it to ``SECTIONS`` (or pass it to :func:`collect` in ``extra``); the text and the
JSON output follow. A section that fails to collect becomes a section saying so, never a
crash: the doctor runs precisely when something is broken.

Qt-free: the CLI prints it, the GUI shows it (passing Qt's runtime version in).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from assistant import APP_ID, APP_NAME, __version__
from assistant.engine import diagnose
from assistant.engine.cpu import SHOWN_FEATURES, CpuInfo, cpu_info
from assistant.engine.diagnose import EngineReport
from assistant.paths import HOME_ENV, AppPaths, hf_home, program_command

log = logging.getLogger(__name__)

ENGINE_PROBE_ARGS = ["doctor", "--engine-probe"]
"""What the program runs in a child to load llama.cpp safely (see ``engine.diagnose``)."""


@dataclass
class Section:
    """One part of the report. ``rows`` are shown as ``label: value`` lines; ``data`` is the
    JSON of it; ``problems`` are sentences that say what is wrong and what to do."""

    key: str
    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass
class DoctorContext:
    """What every section may read."""

    paths: AppPaths
    engine: EngineReport
    cpu: CpuInfo
    qt_version: str | None = None  # the GUI knows Qt's runtime version; None: look it up


SectionMaker = Callable[[DoctorContext], Section]


def engine_probe_command() -> list[str]:
    """This program, asked to load llama.cpp and report (the child of ``check_engine``)."""
    command = program_command()
    if getattr(sys, "frozen", False) and os.name == "nt":
        # The Windows bundle's windowed program may have no stdout to report on; its console
        # twin in the same folder does (started without a window by the check).
        console = Path(sys.executable).with_name(f"{APP_ID}.exe")
        if console.is_file():
            command = [str(console)]
    return [*command, *ENGINE_PROBE_ARGS]


def check_engine(paths: AppPaths, *, fresh: bool = False) -> EngineReport:
    """The engine's state, found in a child process (cached in the app's cache folder)."""
    return diagnose.check_engine(engine_probe_command(), paths.cache, fresh=fresh)


# --- sections ---------------------------------------------------------------------------------


def _package_version(*names: str) -> str:
    """The first of ``names`` installed (PySide6 comes as "PySide6" or only its
    "PySide6_Essentials" part), read from the package metadata without importing it."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def app_section(context: DoctorContext) -> Section:
    frozen = bool(getattr(sys, "frozen", False))
    qt = context.qt_version or _package_version("PySide6", "PySide6_Essentials") or "unknown"
    data = {
        "version": __version__,
        "python": platform.python_version(),
        "qt": qt,
        "system": platform.platform(),
        "program": sys.executable,
        "bundle": frozen,
    }
    return Section(
        "app",
        APP_NAME,
        [
            ("Version", f"{__version__} ({'installed bundle' if frozen else 'from source'})"),
            ("Python", f"{data['python']} ({sys.executable})"),
            ("Qt (PySide6)", qt),
            ("System", platform.platform()),
        ],
        data,
    )


def cpu_section(context: DoctorContext) -> Section:
    cpu = context.cpu
    data: dict[str, Any] = {
        "model": cpu.model,
        "machine": cpu.machine,
        "source": cpu.source,
        "features": sorted(cpu.features) if cpu.features is not None else None,
    }
    rows = [("Model", f"{cpu.model} ({cpu.machine})")]
    if cpu.features is None:
        rows.append(("Features", f"unknown (could not read them from {cpu.source})"))
        return Section("cpu", "Processor", rows, data)
    states = {name: cpu.has(name) for name in SHOWN_FEATURES}
    relevant = _relevant_features(cpu)
    shown = [name for name in SHOWN_FEATURES if name in relevant]
    present = [n.upper() for n in shown if states[n]]
    absent = [n.upper() for n in shown if states[n] is False]
    unknown = [n.upper() for n in shown if states[n] is None]
    data["shown"] = {name: states[name] for name in shown}
    rows.append(("Has", ", ".join(present) or "none of the listed"))
    if absent:
        rows.append(("Lacks", ", ".join(absent)))
    if unknown:
        rows.append(("Cannot tell", f"{', '.join(unknown)} (not reported by {cpu.source})"))
    return Section("cpu", "Processor", rows, data)


def _relevant_features(cpu: CpuInfo) -> set[str]:
    arm = cpu.machine.lower() in {"arm64", "aarch64"}
    arm_names = {"neon", "dotprod", "sve"}
    return arm_names if arm else set(SHOWN_FEATURES) - arm_names


def engine_section(context: DoctorContext) -> Section:
    engine = context.engine
    data = engine.to_dict()
    data["usable"] = engine.usable
    if engine.usable:
        status = "ready"
    elif engine.problem:
        status = "cannot run"
    else:
        status = "not checked"
    how = "in a separate process" if engine.isolated else "in this process"
    rows = [("Status", f"{status} (checked {how})")]
    if engine.version:
        rows.append(("llama-cpp-python", engine.version))
    if engine.library:
        rows.append(("Library", engine.library))
    if engine.loaded:
        rows.append(("Backends", ", ".join(engine.backends) or "none registered"))
        devices = [f"{d['name']} ({d['type']}: {d['description']})" for d in engine.devices]
        rows.append(("Devices", "; ".join(devices) or "none"))
        offload = {True: "supported", False: "not supported by this build", None: "unknown"}
        rows.append(("GPU offload", offload[engine.gpu_offload]))
        if engine.cpu_kernels:
            rows.append(("CPU kernels", engine.cpu_kernels))
        if engine.system_info:
            rows.append(("System info", engine.system_info))
    if engine.error:
        rows.append(("Error", engine.error))
    problems = [f"{engine.problem} {engine.hint}".strip()] if engine.problem else []
    return Section("engine", "llama.cpp engine", rows, data, problems)


def folders_section(context: DoctorContext) -> Section:
    paths = context.paths
    folders = {
        "data": paths.data,
        "cache": paths.cache,
        "config": paths.config,
        "logs": paths.logs,
        "models": paths.models_dir,
        "huggingface": hf_home(),
    }
    data: dict[str, Any] = {name: str(path) for name, path in folders.items()}
    data["portable_home"] = os.environ.get(HOME_ENV) or None
    rows = [(name.capitalize(), _folder_line(path)) for name, path in folders.items()]
    if data["portable_home"]:
        rows.append(("Portable", f"everything under {data['portable_home']} ({HOME_ENV})"))
    return Section("folders", "Folders", rows, data)


def _folder_line(path: Path) -> str:
    if not path.exists():
        return f"{path} (not created yet)"
    if not os.access(path, os.W_OK):
        return f"{path} (not writable)"
    return str(path)


def models_section(context: DoctorContext) -> Section:
    from assistant.models.store import ModelStore  # the registry, not the catalog's network

    store = ModelStore(context.paths)
    installed = store.list_installed()
    missing = [model.id for model in installed if model.missing]
    default = store.default_id()
    data = {"installed": len(installed), "missing_files": missing, "default": default}
    rows = [("Installed", str(len(installed))), ("Default", default or "none")]
    problems = []
    if missing:
        rows.append(("Files missing", ", ".join(missing)))
        problems.append(
            f"The files of {len(missing)} installed model(s) are gone: {', '.join(missing)}. "
            "Download them again or remove them."
        )
    return Section("models", "Models", rows, data, problems)


def model_memory_section(context: DoctorContext) -> Section:
    """The saved model states (issue 15): how much disk they take and how often they saved a
    conversation from being read again."""
    from assistant.disk import format_bytes
    from assistant.providers import saved_states
    from assistant.settings import Settings

    settings = Settings.load(context.paths.settings_file)
    stats = saved_states(settings, context.paths).stats()
    rate = stats.hit_rate
    data = {
        "disk_bytes": stats.disk_bytes,
        "disk_states": stats.disk_states,
        "hits": stats.hits,
        "misses": stats.misses,
        "hit_rate": rate,
    }
    rows = [
        ("Saved states", f"{stats.disk_states}, {format_bytes(stats.disk_bytes)}"),
        (
            "Hit rate",
            "no long conversation continued yet"
            if rate is None
            else f"{rate:.0%} ({stats.hits} of {stats.hits + stats.misses})",
        ),
    ]
    return Section("model_memory", "Model memory", rows, data)


SECTIONS: list[SectionMaker] = [
    app_section,
    cpu_section,
    engine_section,
    folders_section,
    models_section,
    model_memory_section,
]
"""The report's sections, in order. Append a function to add one."""


# --- the report -------------------------------------------------------------------------------


def collect(
    paths: AppPaths,
    engine: EngineReport,
    *,
    cpu: CpuInfo | None = None,
    qt_version: str | None = None,
    extra: Iterable[SectionMaker] = (),
) -> list[Section]:
    """Every section, in order; one that fails says why instead of stopping the others."""
    context = DoctorContext(paths, engine, cpu or cpu_info(), qt_version)
    sections = []
    for make in [*SECTIONS, *extra]:
        try:
            sections.append(make(context))
        except Exception as exc:
            log.debug("doctor section %s failed", make.__name__, exc_info=True)
            key = make.__name__.removesuffix("_section")
            error = f"{type(exc).__name__}: {exc}"
            rows = [("Error", error)]
            problem = [f"Could not check {key}: {error}"]
            sections.append(Section(key, key.capitalize(), rows, {"error": error}, problem))
    return sections


def problems(sections: Sequence[Section]) -> list[str]:
    return [problem for section in sections for problem in section.problems]


def to_text(sections: Sequence[Section]) -> str:
    """The report for people: a heading per section, aligned ``label: value`` lines, and
    the problems (or that there are none) at the end."""
    lines: list[str] = []
    for section in sections:
        lines.append(section.title)
        width = max((len(label) for label, _ in section.rows), default=0)
        for label, value in section.rows:
            lines.append(f"  {label + ':':<{width + 1}} {value}")
        lines.append("")
    found = problems(sections)
    if found:
        lines.append("Problems")
        lines.extend(f"  - {problem}" for problem in found)
    else:
        lines.append("No problems found.")
    return "\n".join(lines) + "\n"


def to_json(sections: Sequence[Section]) -> dict[str, Any]:
    """The report for programs: each section's data under its key, and ``problems``."""
    report: dict[str, Any] = {section.key: section.data for section in sections}
    report["problems"] = problems(sections)
    return report
