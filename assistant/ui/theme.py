"""Light and dark looks: a Fusion palette per theme plus one small stylesheet.

The stylesheet (``assistant/resources/styles/app.qss``) names colours as ``@name@``; they are
filled from the theme's ``Colors`` so one file serves both themes. "system" follows the colour
scheme the desktop reports (Qt 6.5+), light when it reports none.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from importlib import resources

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Colors:
    """The few colours the app chooses itself; everything else comes from the palette."""

    window: str
    base: str
    alt_base: str
    text: str
    muted: str
    border: str
    accent: str
    accent_text: str
    user_bubble: str
    code_bg: str
    sidebar: str
    error_bg: str
    error_border: str
    selection: str


LIGHT = Colors(
    window="#f7f7f8",
    base="#ffffff",
    alt_base="#f1f2f4",
    text="#1f2328",
    muted="#6b7280",
    border="#d9dce1",
    accent="#4f46e5",
    accent_text="#ffffff",
    user_bubble="#eef0ff",
    code_bg="#f6f8fa",
    sidebar="#eff0f3",
    error_bg="#fff4e5",
    error_border="#f0b45a",
    selection="#dcdcfb",
)
DARK = Colors(
    window="#1e1f22",
    base="#26272b",
    alt_base="#2d2f34",
    text="#e6e6e9",
    muted="#9ca3af",
    border="#3a3c42",
    accent="#8b85ff",
    accent_text="#111111",
    user_bubble="#34365a",
    code_bg="#1a1b1e",
    sidebar="#191a1d",
    error_bg="#3a2d18",
    error_border="#a8741f",
    selection="#44447a",
)


def is_dark(choice: str, app: QGuiApplication | None = None) -> bool:
    """Whether ``choice`` ("system", "light" or "dark") means dark here and now."""
    if choice == "dark":
        return True
    if choice == "light":
        return False
    app = app or QGuiApplication.instance()  # type: ignore[assignment]
    if app is None:
        return False
    return app.styleHints().colorScheme() == Qt.ColorScheme.Dark


def colors_for(dark: bool) -> Colors:
    return DARK if dark else LIGHT


def palette_for(colors: Colors) -> QPalette:
    palette = QPalette()
    c = QColor
    roles = {
        QPalette.ColorRole.Window: colors.window,
        QPalette.ColorRole.WindowText: colors.text,
        QPalette.ColorRole.Base: colors.base,
        QPalette.ColorRole.AlternateBase: colors.alt_base,
        QPalette.ColorRole.Text: colors.text,
        QPalette.ColorRole.Button: colors.alt_base,
        QPalette.ColorRole.ButtonText: colors.text,
        QPalette.ColorRole.ToolTipBase: colors.base,
        QPalette.ColorRole.ToolTipText: colors.text,
        QPalette.ColorRole.PlaceholderText: colors.muted,
        QPalette.ColorRole.Highlight: colors.accent,
        QPalette.ColorRole.HighlightedText: colors.accent_text,
        QPalette.ColorRole.Link: colors.accent,
        QPalette.ColorRole.LinkVisited: colors.accent,
        QPalette.ColorRole.Mid: colors.border,
        QPalette.ColorRole.BrightText: "#ffffff",
    }
    for role, value in roles.items():
        palette.setColor(role, c(value))
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
    ):
        palette.setColor(QPalette.ColorGroup.Disabled, role, c(colors.muted))
    return palette


def stylesheet(colors: Colors) -> str:
    try:
        text = (
            resources.files("assistant")
            .joinpath("resources/styles/app.qss")
            .read_text(encoding="utf-8")
        )
    except OSError as exc:  # a broken install: the app still works, only plainer
        log.warning("Stylesheet missing (%s); using the plain look.", exc)
        return ""
    for name, value in asdict(colors).items():
        text = text.replace(f"@{name}@", value)
    return text


def app_icon() -> QIcon:
    icon = QIcon()
    try:
        path = resources.files("assistant").joinpath("resources/icons/app.svg")
        icon = QIcon(str(path))
    except OSError as exc:
        log.warning("App icon missing: %s", exc)
    return icon


def apply_theme(app: QApplication, choice: str) -> bool:
    """Style the whole application; return whether the result is dark."""
    dark = is_dark(choice, app)
    colors = colors_for(dark)
    app.setStyle("Fusion")
    app.setPalette(palette_for(colors))
    app.setStyleSheet(stylesheet(colors))
    return dark
