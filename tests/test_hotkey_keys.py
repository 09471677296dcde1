"""The global shortcut's key tables for macOS (Carbon) and Windows, checked on any OS.

The hot keys themselves need those systems (the X11 one is tested under Xvfb in
test_x11_desktop.py); what decides which key and modifiers they register is plain data.
"""

from __future__ import annotations

import string
import sys

import pytest

from assistant.ui.hotkey import GlobalHotkey, _virtual_key, parse_shortcut
from assistant.ui.hotkey_macos import CARBON_MODIFIERS, MacBackend, key_code, modifier_bits


def test_the_macos_default_is_option_space() -> None:
    shortcut = parse_shortcut("Alt+Space")  # the setting's default on macOS
    assert key_code(shortcut.key) == 0x31  # kVK_Space
    assert modifier_bits(shortcut.modifiers) == 1 << 11  # optionKey


def test_macos_modifiers_are_carbons_bits() -> None:
    # Ctrl is the Control key, Meta (or Cmd) Command: Carbon's controlKey and cmdKey.
    assert modifier_bits(parse_shortcut("Ctrl+Alt+Shift+Meta+K").modifiers) == (
        (1 << 12) | (1 << 11) | (1 << 9) | (1 << 8)
    )
    assert modifier_bits(parse_shortcut("Cmd+K").modifiers) == CARBON_MODIFIERS["meta"]


def test_every_letter_and_digit_has_its_own_macos_key_code() -> None:
    codes = [key_code(c) for c in string.ascii_lowercase + string.digits]
    assert None not in codes
    assert len(set(codes)) == len(codes)
    assert key_code("A") == key_code("a") == 0x00
    assert key_code("K") == 0x28
    assert key_code("0") == 0x1D


@pytest.mark.parametrize(
    ("key", "code"),
    [("F1", 0x7A), ("f5", 0x60), ("F12", 0x6F), ("F20", 0x5A), ("Return", 0x24), ("Esc", 0x35)],
)
def test_named_macos_keys(key: str, code: int) -> None:
    assert key_code(key) == code


@pytest.mark.parametrize("key", ["F21", "F0", "Hyper", "é", ""])
def test_keys_macos_has_no_code_for(key: str) -> None:
    assert key_code(key) is None


@pytest.mark.skipif(sys.platform == "darwin", reason="Carbon exists on macOS")
def test_without_carbon_the_backend_says_so() -> None:
    # GlobalHotkey turns this OSError into a sentence naming the command to bind instead.
    with pytest.raises(OSError):
        MacBackend(GlobalHotkey())


@pytest.mark.parametrize(
    ("key", "code"),
    [("Space", 0x20), ("k", 0x4B), ("K", 0x4B), ("7", 0x37), ("F1", 0x70), ("F24", 0x87)],
)
def test_windows_virtual_keys(key: str, code: int) -> None:
    assert _virtual_key(key) == code


def test_windows_has_no_virtual_key_for_unknown_names() -> None:
    assert _virtual_key("F25") == 0
    assert _virtual_key("Hyper") == 0
