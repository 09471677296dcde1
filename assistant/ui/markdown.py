"""Markdown answers turned into HTML pieces Qt's rich-text engine can show.

An answer is split into *prose* (rendered with markdown-it: headings, lists, tables, links) and
*code* blocks (highlighted with Pygments), so the chat view can give every code block its own
copy button. Raw HTML in an answer is shown as text, never interpreted, and images are turned
into links: nothing is fetched from the network.

This module imports no Qt; the chat view turns the pieces into widgets.
"""

from __future__ import annotations

import functools
import html
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from markdown_it.token import Token

log = logging.getLogger(__name__)

SegmentKind = Literal["prose", "code"]


@dataclass(frozen=True)
class Segment:
    """One piece of an answer. ``html`` is ready for ``QTextBrowser.setHtml``; ``code`` is the
    raw text of a code block (what its copy button copies)."""

    kind: SegmentKind
    html: str
    code: str = ""
    language: str = ""


@dataclass(frozen=True)
class Style:
    """Colours and fonts of the rendered HTML; built by the view from the current theme."""

    dark: bool = False
    mono_family: str = "monospace"
    border: str = "#d0d7de"
    code_inline_bg: str = "#eef0f3"


def _render_image(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    # Never load an image from an answer (privacy, and nothing leaves the machine): show a
    # link the user may open in the browser instead.
    token = tokens[idx]
    src = html.escape(str(token.attrGet("src") or ""), quote=True)
    alt = html.escape(token.content or "image")
    return f'<a href="{src}">[image: {alt}]</a>'


@functools.lru_cache(maxsize=4)
def _parser(style: Style) -> Any:
    # Imported here, not at start-up: the window shows faster, and warm_up() pays the cost.
    try:
        from markdown_it import MarkdownIt
    except ImportError:  # a declared dependency; without it answers show as plain text
        log.warning("markdown-it-py is not installed; answers are shown as plain text.")
        return None
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("image", _render_image)
    border = style.border

    def table_open(renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
        return (
            f'<table border="1" cellspacing="0" cellpadding="6" '
            f'style="border-collapse: collapse; border-color: {border}; margin: 6px 0;">'
        )

    md.add_render_rule("table_open", table_open)
    inline_bg = style.code_inline_bg
    mono = html.escape(style.mono_family, quote=True)

    def code_inline(
        renderer: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any
    ) -> str:
        text = html.escape(tokens[idx].content)
        return (
            f"<code style=\"font-family: '{mono}'; background-color: {inline_bg};\">"
            f"&#8202;{text}&#8202;</code>"
        )

    md.add_render_rule("code_inline", code_inline)
    return md


_PYGMENTS_IMPORT = threading.Lock()


@functools.lru_cache(maxsize=256)
def highlight(code: str, language: str, style: Style) -> str:
    """``code`` as HTML with inline colours, lines kept, wrapping allowed."""
    # Pygments loads its formatters and lexers lazily, in a way that is not thread-safe: the
    # warm-up thread and the UI thread importing at once got "cannot import name".
    with _PYGMENTS_IMPORT:
        from pygments import highlight as pygments_highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import TextLexer, get_lexer_by_name
        from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    formatter = HtmlFormatter(
        nowrap=True, noclasses=True, style="one-dark" if style.dark else "default"
    )
    body = pygments_highlight(code, lexer, formatter).rstrip("\n")
    # Pygments' inline styles may set a background on some tokens; the block has its own.
    mono = html.escape(style.mono_family, quote=True)
    return f"<pre style=\"white-space: pre-wrap; margin: 0; font-family: '{mono}';\">{body}</pre>"


def plain_html(text: str) -> str:
    """Text shown as it is (a question, or an answer when Markdown is unavailable)."""
    escaped = html.escape(text)
    return f'<p style="white-space: pre-wrap; margin: 0;">{escaped}</p>'


def render(text: str, style: Style | None = None) -> list[Segment]:
    """Split ``text`` into prose and code segments. An unclosed code fence (an answer still
    streaming) runs to the end, like in the finished answer."""
    style = style or Style()
    md = _parser(style)
    if md is None:
        return [Segment("prose", plain_html(text))] if text else []
    env: dict[str, Any] = {}
    tokens = md.parse(text, env)
    segments: list[Segment] = []
    prose: list[Token] = []

    def flush_prose() -> None:
        if prose:
            segments.append(Segment("prose", md.renderer.render(prose, md.options, env)))
            prose.clear()

    for token in tokens:
        if token.level == 0 and token.type in ("fence", "code_block"):
            flush_prose()
            language = token.info.strip().split(" ")[0] if token.info else ""
            code = token.content.rstrip("\n")
            segments.append(Segment("code", highlight(code, language, style), code, language))
        else:
            prose.append(token)
    flush_prose()
    return segments


def warm_up(style: Style) -> None:
    """Import and prime Markdown and Pygments for ``style`` (the parser and the highlighting
    are cached per style), so the first answer renders without a stall."""
    render("# Title\n\n- item\n\n```python\nprint('hi')\n```\n", style)


def warm_up_in_background(style: Style) -> None:
    """Run ``warm_up`` on a short-lived thread (pure Python, no Qt: safe off the UI thread)."""

    def run() -> None:
        try:
            warm_up(style)
        except Exception:  # only a head start: the first answer renders (slower) without it
            log.exception("Warming up the Markdown renderer failed")

    threading.Thread(target=run, name="markdown-warm-up", daemon=True).start()
