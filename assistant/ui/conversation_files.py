"""File → Export and Import of a conversation: Markdown to read or share, JSON to bring back.

The history does the work (``export_markdown``, ``export_json``, ``import_json``); this module
asks where, writes the file atomically and turns failures into words for the window.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QWidget

from assistant.atomic import atomic_write_text
from assistant.chat.history import Conversation, HistoryStore
from assistant.errors import HistoryError, ImportFormatError

FORMATS = {"md": ("Markdown", "Markdown (*.md)"), "json": ("JSON", "JSON (*.json)")}


def suggested_name(title: str, fmt: str) -> str:
    """A file name from a conversation's title: letters, digits and dashes."""
    stem = re.sub(r"[^\w]+", "-", title, flags=re.UNICODE).strip("-_").lower()[:60]
    return f"{stem or 'conversation'}.{fmt}"


def export_conversation(
    parent: QWidget,
    history: HistoryStore,
    conversation_id: int,
    fmt: str,
    path: Path | None = None,
) -> Path | None:
    """Write the conversation as ``fmt`` ("md" or "json") to ``path``, asked for when
    ``None``; returns where it went, or ``None`` when the user cancelled. Raises
    ``AssistantError`` for what can go wrong (the chat is gone, the disk refuses)."""
    conversation = history.get_conversation(conversation_id)
    if path is None:
        name, pattern = FORMATS[fmt]
        chosen, _ = QFileDialog.getSaveFileName(
            parent,
            f"Export chat as {name}",
            str(Path.home() / suggested_name(conversation.title, fmt)),
            pattern,
        )
        if not chosen:
            return None
        path = Path(chosen)
        if not path.suffix:
            path = path.with_suffix(f".{fmt}")
    if fmt == "md":
        text = history.export_markdown(conversation_id)
    else:
        text = json.dumps(history.export_json(conversation_id), ensure_ascii=False, indent=2)
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise HistoryError(
            f"Could not write {path}.",
            hint=f"Pick a folder you can write to, with some free space ({exc.strerror or exc}).",
        ) from exc
    return path


def import_conversation(
    parent: QWidget, history: HistoryStore, path: Path | None = None
) -> Conversation | None:
    """Add the conversation exported (as JSON) in ``path``, asked for when ``None``; returns
    it, or ``None`` when the user cancelled. Raises ``AssistantError`` with a hint for a file
    that cannot be read or is not an export."""
    if path is None:
        chosen, _ = QFileDialog.getOpenFileName(
            parent, "Import a chat", str(Path.home()), "Exported chats (*.json)"
        )
        if not chosen:
            return None
        path = Path(chosen)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise HistoryError(
            f"Could not read {path}.", hint=f"Check that the file exists ({exc.strerror or exc})."
        ) from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFormatError(
            f"{path.name} is not a chat exported by this app (it is not JSON).",
            hint="Pick a file made with File → Export chat as JSON.",
        ) from exc
    return history.import_json(data)


__all__ = ["export_conversation", "import_conversation", "suggested_name"]
