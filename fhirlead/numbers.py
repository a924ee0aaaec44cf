"""Integers from the wire: `_count`, version ids, cursors, JSON Patch indexes, Content-Length.

One strict reader for all of them: ASCII digits only (Python's `str.isdigit` and regex `\\d` accept
`²` or `٣`, which `int()` then refuses or reads as something else) and at most 18 of them (a longer
number is no count, version or index this server could hold, and `int()` of thousands of digits is
itself a denial of service). Anything else is None, for the caller to answer with a 400.
"""

from __future__ import annotations

from fhirlead.errors import bad_request

MAX_DIGITS = 18


def ascii_int(text: str | None) -> int | None:
    """The non-negative integer `text` spells in ASCII digits (1 to 18 of them), else None."""
    if not text or len(text) > MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def shown(text: str, limit: int = 40) -> str:
    """`text` as diagnostics may quote it: a client's thousands of characters are not echoed back."""
    return text if len(text) <= limit else text[:limit] + "…"


def count_param(raw: str, maximum: int, name: str = "_count") -> int:
    """`_count`: a non-negative integer, capped at the server's maximum (the spec lets a server return
    fewer than asked); anything else is a 400 naming the parameter."""
    value = ascii_int(raw)
    if value is None:
        raise bad_request(f"Invalid {name} '{shown(raw)}': expected a non-negative integer (ASCII digits)", name)
    return min(value, maximum)
