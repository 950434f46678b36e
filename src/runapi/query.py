"""Query parameters, parsed one way for every endpoint (API and web pages): ASCII only where a number or date is meant,
bounded in length and value, and a 400 naming the parameter for anything else.

`str.isdigit()` accepts Unicode digits ("²", "①") that `int()` then refuses, and `int()` refuses more
than 4,300 digits: both were 500s that dropped the keep-alive connection (issue 20.5). Every
endpoint reads its query string through these functions, never `query_params` directly.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import date

from runapi.errors import InvalidRequest

__all__ = ["MAX_TEXT", "choice_param", "date_param", "int_param", "optional_int_param", "text_param"]

MAX_TEXT = 256  # characters of any free-text parameter (IDs, cursors, search terms)
_MAX_DIGITS = 18  # fits in 63 bits: every integer parameter's bound is far below
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


def int_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer `name` in [low, high]; `default` when absent or empty (`?limit=`)."""
    value = params.get(name)
    if not value:
        return default
    number = _ascii_int(value)
    if number is None or not low <= number <= high:
        raise InvalidRequest(f"`{name}` must be an integer from {low} to {high}.", param=name)
    return number


def optional_int_param(params: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    """The integer `name` in [low, high], or None when absent or empty."""
    if not params.get(name):
        return None
    return int_param(params, name, low, low, high)


def text_param(params: Mapping[str, str], name: str, max_length: int = MAX_TEXT) -> str | None:
    """The text `name`, None when absent or empty; over `max_length` characters is a 400."""
    value = params.get(name)
    if not value:
        return None
    if len(value) > max_length:
        raise InvalidRequest(f"`{name}` must be at most {max_length} characters.", param=name)
    return value


def choice_param(params: Mapping[str, str], name: str, choices: Collection[str]) -> str | None:
    """`name` if it is one of `choices`, None when absent or empty, else a 400 listing them."""
    value = params.get(name)
    if not value:
        return None
    if value not in choices:
        raise InvalidRequest(f"`{name}` must be one of {', '.join(sorted(choices))}.", param=name)
    return value


def date_param(params: Mapping[str, str], name: str) -> date | None:
    """The day `name` as YYYY-MM-DD (ASCII digits, nothing else), None when absent; an empty value
    or any other form (`date.fromisoformat` alone also takes "20240101" and week dates) is a 400."""
    value = params.get(name)
    if value is None:
        return None
    if _DAY.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidRequest(f"`{name}` must be a date as YYYY-MM-DD, got {value[:40]!r}.", param=name)


def _ascii_int(value: str) -> int | None:
    """`value` as a non-negative integer if it is 1 to 18 ASCII digits, else None."""
    if len(value) > _MAX_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)
