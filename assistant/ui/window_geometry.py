"""Windows that fit the screen they open on, at any scale factor.

A size chosen in code (1100×760) is in device-independent pixels: at a scale factor of 2 it
needs 2200×1520 physical pixels, more than a 1440×900 screen. Every window therefore asks for
its preferred size *clamped to the available area of its screen* (the screen minus panels and
docks), and a dialog is centred over its parent, on the parent's screen.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize
from PySide6.QtGui import QGuiApplication, QScreen
from PySide6.QtWidgets import QWidget

# Room left around a window that would fill the screen, so its frame and title bar show.
SCREEN_MARGIN = 24


def screen_of(widget: QWidget) -> QScreen | None:
    """The screen a widget is on, else its parent's, else the primary one."""
    parent = widget.parentWidget()
    window = parent.window() if parent is not None else widget
    screen = window.screen() if window is not None else None
    return screen or QGuiApplication.primaryScreen()


def available_area(widget: QWidget) -> QRect:
    """Where a window of ``widget`` may lie: its screen's available geometry, with a margin."""
    screen = screen_of(widget)
    if screen is None:  # no screen at all (should not happen): leave the size alone
        return QRect(0, 0, 10_000, 10_000)
    area = screen.availableGeometry()
    margin = min(SCREEN_MARGIN, area.width() // 20, area.height() // 20)
    return area.adjusted(margin, margin, -margin, -margin)


def fitted_size(widget: QWidget, wanted: QSize) -> QSize:
    """``wanted`` shrunk to the available area (never below the widget's minimum size, which
    is kept small enough to fit any screen the app supports)."""
    area = available_area(widget)
    minimum = widget.minimumSize()
    width = max(min(wanted.width(), area.width()), min(minimum.width(), area.width()))
    height = max(min(wanted.height(), area.height()), min(minimum.height(), area.height()))
    return QSize(width, height)


def clamp_minimum(widget: QWidget, minimum: QSize) -> None:
    """A minimum size that still shows every control, but never larger than the screen."""
    area = available_area(widget)
    widget.setMinimumSize(min(minimum.width(), area.width()), min(minimum.height(), area.height()))


def fit_window(widget: QWidget, wanted: QSize) -> None:
    """Resize ``widget`` to ``wanted`` or as much of it as the screen allows, and move it
    inside the available area (centred over its parent when it has one)."""
    size = fitted_size(widget, wanted)
    widget.resize(size)
    area = available_area(widget)
    parent = widget.parentWidget()
    if parent is not None and parent.isVisible():
        centre = parent.window().frameGeometry().center()
    else:
        centre = area.center()
    top_left = QPoint(centre.x() - size.width() // 2, centre.y() - size.height() // 2)
    widget.move(_inside(QRect(top_left, size), area).topLeft())


def keep_inside_screen(widget: QWidget) -> None:
    """Move and shrink a window (restored from a saved geometry, say) so that it lies inside
    the available area of its screen."""
    area = available_area(widget)
    frame = widget.frameGeometry()
    extra_w = frame.width() - widget.width()
    extra_h = frame.height() - widget.height()
    size = QSize(
        max(min(widget.width(), area.width() - extra_w), widget.minimumWidth()),
        max(min(widget.height(), area.height() - extra_h), widget.minimumHeight()),
    )
    if size != widget.size():
        widget.resize(size)
    frame = QRect(frame.topLeft(), QSize(size.width() + extra_w, size.height() + extra_h))
    placed = _inside(frame, area)
    if placed.topLeft() != frame.topLeft():
        widget.move(placed.topLeft())


def _inside(rect: QRect, area: QRect) -> QRect:
    """``rect`` moved (not resized) as little as possible to lie inside ``area``; its top-left
    corner stays visible when it is larger."""
    x = min(max(rect.x(), area.x()), max(area.x(), area.right() + 1 - rect.width()))
    y = min(max(rect.y(), area.y()), max(area.y(), area.bottom() + 1 - rect.height()))
    return QRect(QPoint(x, y), rect.size())


def is_inside_screen(widget: QWidget) -> bool:
    """Whether the whole window (frame included) lies inside its screen's available area."""
    screen = screen_of(widget)
    if screen is None:
        return True
    return screen.availableGeometry().contains(widget.frameGeometry())
