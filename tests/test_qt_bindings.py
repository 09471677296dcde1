"""The Qt bindings themselves: a release that leaks references to None would abort the app."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication, QLabel


def test_void_calls_keep_none_alive(qapp: QApplication) -> None:
    # PySide6 6.12.0 on Python 3.11 drops one reference to None per void C++ call and the
    # process dies with "none_dealloc" after a few thousand; pyproject pins it out.
    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(2000):
        label.setText("x")
    assert sys.getrefcount(None) >= before - 50
