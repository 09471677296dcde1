"""The arrows of the architecture point one way: front ends -> services -> building blocks.

Every ``import`` in the package is read from the source (also those inside functions, which a
runtime check would miss) and held against the rules in the package docstrings.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import assistant

PACKAGE_ROOT = Path(assistant.__file__).parent
FOUNDATIONS = {"paths", "settings", "state", "errors", "logs", "secrets", "atomic", "disk"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The ``assistant`` modules ``path`` imports, as dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "assistant")
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "assistant":
                continue
            found.add(node.module)
            # ``from assistant.models import hub`` imports the module assistant.models.hub
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _layer(module: str) -> str:
    """``ui``, ``cli``, ``engine``, ``models``, ``chat``, ``services`` or ``foundation``."""
    parts = module.split(".")
    if len(parts) == 1:
        return "foundation"  # the package itself: name and version
    if parts[1] == "__main__":
        return "cli"  # ``python -m assistant`` is the terminal front end's door
    if parts[1] in {"ui", "cli", "engine", "models", "chat"}:
        return parts[1]
    return "foundation" if parts[1] in FOUNDATIONS else "services"


def _violations(rule: str, sources: set[str], targets: set[str]) -> list[str]:
    graph = _graph()
    bad = []
    for module, imported in graph.items():
        if _layer(module) not in sources:
            continue
        for name in imported:
            if name in graph and _layer(name) in targets:
                bad.append(f"{module} -> {name} ({rule})")
    return sorted(bad)


def test_the_graph_is_read() -> None:
    graph = _graph()
    assert "assistant.chat.conversation" in graph
    assert "assistant.chat.history" in graph["assistant.chat.conversation"]
    assert "assistant.engine.llama_log" in graph["assistant.models.gguf_file"]


@pytest.mark.parametrize(
    ("rule", "sources", "targets"),
    [
        (
            "the core knows no front end",
            {"foundation", "services", "engine", "models", "chat"},
            {"ui", "cli"},
        ),
        ("the desktop app does not run the terminal one", {"ui"}, {"cli"}),
        ("models do not know who talks to them", {"models"}, {"chat", "services"}),
        ("a conversation does not fetch models", {"chat"}, {"models", "services"}),
        ("the engine does not know conversations", {"engine"}, {"chat", "services"}),
        ("foundations stand on nothing", {"foundation"}, {"models", "chat", "services"}),
    ],
)
def test_arrows_point_one_way(rule: str, sources: set[str], targets: set[str]) -> None:
    assert _violations(rule, sources, targets) == []


def test_the_engine_reads_model_files_but_not_the_store() -> None:
    """The engine may read a GGUF header and the hardware; what is installed and how it got
    there (store, downloads, the Hub) is none of its business."""
    allowed = {
        "assistant.models.gguf_file",
        "assistant.models.hardware",
        "assistant.models.catalog",
        # the model's recommended sampling, from its catalog entry or its header
        "assistant.models.sampling",
    }
    graph = _graph()
    used = {
        name
        for module, imported in graph.items()
        if _layer(module) == "engine"
        for name in imported
        if name in graph and _layer(name) == "models"
    }
    assert used <= allowed, used - allowed


def test_foundations_use_only_the_engines_plain_types() -> None:
    """Settings take their sampling defaults from the engine's dataclasses, and nothing else
    of a foundation reaches into the engine."""
    graph = _graph()
    used = {
        (module, name)
        for module, imported in graph.items()
        if _layer(module) == "foundation"
        for name in imported
        if name in graph and _layer(name) == "engine"
    }
    assert {name for _module, name in used} <= {"assistant.engine.base"}, used
