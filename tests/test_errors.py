"""Known problems speak to both front ends: a hint for everyone, a command for the terminal."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import assistant
from assistant.cli import describe, main
from assistant.errors import AssistantError, ModelNotFoundError, UnsupportedArchitectureError

PACKAGE_ROOT = Path(assistant.__file__).parent
# The front ends word their own errors: the GUI names its windows, the CLI its options.
FRONT_ENDS = {"ui", "cli"}


def test_hint_only_errors_are_built_as_before() -> None:
    err = AssistantError("The disk is full.", hint="Free some space.")
    assert err.message == "The disk is full." and err.hint == "Free some space."
    assert err.command is None
    assert err.full_text() == "The disk is full. Free some space."
    assert AssistantError("Plain.").hint == "" and AssistantError("Plain.").command is None


def test_the_command_is_for_the_terminal_only() -> None:
    err = ModelNotFoundError(
        "qwen3-4b is not downloaded yet.",
        hint="Download it first.",
        command="offline-assistant models pull qwen3-4b",
    )
    assert err.full_text() == "qwen3-4b is not downloaded yet. Download it first."  # the GUI's
    assert describe(err) == (
        "qwen3-4b is not downloaded yet. Download it first.\n"
        "  Run: offline-assistant models pull qwen3-4b"
    )
    assert describe(AssistantError("Plain.", hint="Hint.")) == "Plain. Hint."
    arch = UnsupportedArchitectureError("florp", "No florps.", hint="Update.", command="x")
    assert (arch.architecture, arch.hint, arch.command) == ("florp", "Update.", "x")


def test_the_cli_prints_the_error_then_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "--model", "qwen3-4b", "hi"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "offline-assistant: error: qwen3-4b is in the catalog but not downloaded yet. "
        "Download it first.\n"
        "  Run: offline-assistant models pull qwen3-4b\n"
    )


def _core_hints() -> list[tuple[str, int, str]]:
    """Every string literal given as ``hint=`` in the core (outside the front ends)."""
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        relative = path.relative_to(PACKAGE_ROOT)
        if relative.parts[0] in FRONT_ENDS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.keyword) or node.arg != "hint":
                continue
            text = "".join(
                part.value
                for part in ast.walk(node.value)
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
            found.append((str(relative), node.value.lineno, text))
    return found


def test_core_hints_name_no_terminal_command() -> None:
    """The GUI shows ``hint`` in its banners: a command belongs in ``command=``."""
    hints = _core_hints()
    assert len(hints) > 20  # the scan finds them
    bad = [
        f"{where}:{line}: {text}"
        for where, line, text in hints
        if "offline-assistant" in text or "`" in text or " --" in text
    ]
    assert bad == []
