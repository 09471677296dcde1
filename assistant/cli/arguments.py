"""Arguments checked where they are read: numbers in the settings schema's ranges, ids that
fit the database, text that is valid UTF-8. Each check is an ``argparse`` type, so a bad value
ends in argparse's one-line usage error (exit 2) before anything is loaded.

Invalid UTF-8 in an argument reaches Python as lone surrogates (``surrogateescape``); text read
from stdin the same way. :func:`check_text` names the byte where the text stops being UTF-8.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from typing import Any

from assistant.errors import InvalidTextError
from assistant.settings import setting

# SQLite's INTEGER is 64-bit signed: a larger id can match no conversation.
MAX_ID = 2**63 - 1
# llama.cpp's seed is a 32-bit unsigned number.
MAX_SEED = 2**32 - 1


def bad_utf8_position(text: str) -> int | None:
    """The byte offset of the first byte that is not UTF-8 (a lone surrogate from
    ``surrogateescape``), or None when the text is clean."""
    for index, char in enumerate(text):
        if "\udc80" <= char <= "\udcff" or "\ud800" <= char <= "\udfff":
            return len(text[:index].encode("utf-8", errors="surrogateescape"))
    return None


def check_text(text: str, what: str) -> str:
    """``text``, or ``InvalidTextError`` naming ``what`` and the position of the bad byte."""
    position = bad_utf8_position(text)
    if position is not None:
        raise InvalidTextError(
            f"{what[:1].upper()}{what[1:]} is not valid UTF-8 text "
            f"(an invalid byte at position {position}).",
            hint="Use UTF-8 text; set the terminal or the file to UTF-8.",
        )
    return text


def check_argv(argv: Sequence[str]) -> None:
    """Every command-line argument must be valid text; the first that is not is named."""
    for number, argument in enumerate(argv, start=1):
        check_text(argument, f"argument {number}")


def text_argument(value: str) -> str:
    """An ``argparse`` type for free text (a question, a search)."""
    position = bad_utf8_position(value)
    if position is not None:
        raise argparse.ArgumentTypeError(
            f"not valid UTF-8 text (an invalid byte at position {position})"
        )
    return value


def record_id(value: str) -> int:
    """A conversation (or message) number: a whole number from 1 to 2^63-1."""
    return _whole(value, 1, MAX_ID)


def positive_count(value: str) -> int:
    """A count of things to show: 1 or more."""
    return _whole(value, 1, MAX_ID)


def seed(value: str) -> int:
    return _whole(value, 0, MAX_SEED)


def setting_value(key: str) -> Callable[[str], Any]:
    """An ``argparse`` type for the setting ``key``: its kind and range, as the settings schema
    declares them (the one declaration the Settings dialog also reads)."""
    declared = setting(key)

    def parse(value: str) -> Any:
        text = value.strip()
        if declared.kind is int:
            number: float = _whole(text, declared.minimum, declared.maximum)
        else:
            try:
                number = float(text)
            except ValueError:
                raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
            if not math.isfinite(number):
                raise argparse.ArgumentTypeError(f"{value!r} is not a finite number")
            _check_range(number, declared.minimum, declared.maximum)
        return declared.coerce(number)

    parse.__name__ = key.replace("_", "-")  # argparse names the type in its messages
    return parse


def range_text(key: str) -> str:
    """``from 0 to 2`` for the setting ``key``, for help texts."""
    declared = setting(key)
    assert declared.minimum is not None and declared.maximum is not None
    return f"from {_shown(declared.minimum)} to {_shown(declared.maximum)}"


def _whole(value: str, minimum: float | None, maximum: float | None) -> int:
    text = value.strip()
    if len(text) > 40 or not text.lstrip("+-").isascii() or not text.lstrip("+-").isdigit():
        raise argparse.ArgumentTypeError(f"{value[:40]!r} is not a whole number")
    number = int(text)
    _check_range(number, minimum, maximum)
    return number


def _shown(number: float) -> str:
    if isinstance(number, int) or float(number).is_integer():
        return str(int(number))
    return f"{number:g}"


def _check_range(number: float, minimum: float | None, maximum: float | None) -> None:
    low = _shown(minimum) if minimum is not None else None
    high = _shown(maximum) if maximum is not None else None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if low is not None and high is not None:
            span = f"from {low} to {high}"
        elif low is not None:
            span = f"{low} or more"
        else:
            span = f"{high} or less"
        raise argparse.ArgumentTypeError(f"{_shown(number)} is out of range: use a value {span}")
