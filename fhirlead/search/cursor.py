"""Opaque, validated paging cursors.

A cursor records where a page ended (or began, for `previous`): the sort-key values of that boundary
row and its backend position, plus the direction. It is bound to the query that produced it by a
keyed hash over the payload and the query's canonical signature, so a cursor that was altered, or
that is replayed on a different search, is refused with a 400 instead of giving wrong pages (or a 500).
Values are tagged so floats (including infinities) and integers survive the round trip exactly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
from dataclasses import dataclass

import orjson

from fhirlead.errors import bad_request

_VERSION = 1
_KEY = b"fhirlead-search-cursor-v1"

Value = str | int | float | None


@dataclass(frozen=True, slots=True)
class Cursor:
    forward: bool  # True: the page after `keys`; False: the page before them
    keys: tuple[Value, ...]  # sort-key values of the boundary row, then its position


def _tag(value: Value) -> list:
    if value is None:
        return ["n"]
    if isinstance(value, bool):
        raise TypeError("booleans are not sort keys")
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", repr(value)]
    return ["s", value]


def _untag(item: object) -> Value:
    if not isinstance(item, list) or not item or not isinstance(item[0], str):
        raise ValueError("bad key")
    tag = item[0]
    if tag == "n" and len(item) == 1:
        return None
    if len(item) != 2:
        raise ValueError("bad key")
    if tag == "i" and isinstance(item[1], int):
        return item[1]
    if tag == "f" and isinstance(item[1], str):
        number = float(item[1])
        if math.isnan(number):
            raise ValueError("nan")
        return number
    if tag == "s" and isinstance(item[1], str):
        return item[1]
    raise ValueError("bad key")


def _mac(payload: bytes, signature: str) -> str:
    digest = hmac.new(_KEY, payload + b"\x00" + signature.encode(), hashlib.blake2b).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode(cursor: Cursor, signature: str) -> str:
    payload = orjson.dumps([_VERSION, 1 if cursor.forward else 0, [_tag(v) for v in cursor.keys]])
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{_mac(payload, signature)}"


def decode(text: str, signature: str, key_count: int) -> Cursor:
    """The cursor in `text`, checked against the query signature and the expected number of keys."""
    invalid = bad_request(
        "Invalid or expired paging cursor: repeat the search from its first page", "_cursor"
    )
    body, _, mac = text.partition(".")
    if not body or not mac or len(text) > 8192:
        raise invalid
    try:
        payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    if not hmac.compare_digest(mac, _mac(payload, signature)):
        raise invalid
    try:
        version, direction, items = orjson.loads(payload)
        if version != _VERSION or direction not in (0, 1) or not isinstance(items, list):
            raise ValueError("shape")
        keys = tuple(_untag(item) for item in items)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise invalid from None
    if len(keys) != key_count:
        raise invalid
    return Cursor(direction == 1, keys)
