"""FHIRPath's value semantics on FHIR JSON values, for the compiled invariants (fhirpath_compiler.py).

A FHIRPath result is a list (a collection) of JSON values: str, bool, int, Decimal (the JSON is parsed
with decimals kept exact), dicts for complex values, and `ABSENT` for a primitive that has extensions
but no value. The functions here give those values FHIRPath's meaning:

- singleton evaluation of a collection as a Boolean (`truth`, https://hl7.org/fhirpath/N1/#singleton-evaluation-of-collections);
- equality (`equal`, `contains`, `distinct`, https://hl7.org/fhirpath/N1/#equality);
- order (`order`, `compare_dates`, https://hl7.org/fhirpath/N1/#comparison): dates of different
  precisions are unordered (`2020` against `2020-05` is unknown), quantities only in the same unit.

Where a value falls outside what is decided here (several items where one is expected, quantities in
different units, a date time with a zone against one without) they raise `Fallback`, and the caller
lets fhirpathpy evaluate the whole expression.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any


class _Absent:
    """A primitive that is present only by its extensions (`"_birthDate": {...}` without `birthDate`):
    it exists, but has no value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


class Fallback(Exception):
    """This evaluation met values the compiled code will not decide on: fhirpathpy evaluates it."""


def values_of(collection: list[Any]) -> list[Any]:
    """The collection without its `ABSENT` items (the same list when it has none)."""
    for item in collection:
        if item is ABSENT:
            return [item for item in collection if item is not ABSENT]
    return collection


def truth(collection: list[Any]) -> bool | None:
    """A collection as a Boolean (FHIRPath singleton evaluation): empty is unknown (None)."""
    if not collection:
        return None
    if len(collection) == 1:
        value = collection[0]
        return value if value is True or value is False else True
    raise Fallback


def single(collection: list[Any]) -> Any:
    """The one value of a collection, None when it has none; `Fallback` when it has several."""
    values = values_of(collection)
    if len(values) > 1:
        raise Fallback
    return values[0] if values else None


def is_number(value: Any) -> bool:
    """A number (int, Decimal, float), not a Boolean (which Python counts as an int)."""
    return isinstance(value, int | Decimal | float) and not isinstance(value, bool)


def equal(a: Any, b: Any) -> bool:
    """FHIRPath `=` on two values (numbers across int and Decimal; a Boolean only equals a Boolean)."""
    if type(a) is str and type(b) is str:
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if is_number(a) and is_number(b):
        return Decimal(str(a)) == Decimal(str(b)) if isinstance(a, float) or isinstance(b, float) else a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a == b
    return False


def contains(collection: list[Any], value: Any) -> bool:
    """Whether an item of the collection equals `value` (FHIRPath `in`)."""
    return any(equal(item, value) for item in collection)


def _hashable(value: Any) -> Any:
    """A key equal for values FHIRPath finds equal (strings, numbers, booleans); None for the others."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, int | Decimal):
        return value
    return None


def distinct(collection: list[Any]) -> list[Any]:
    """The collection without repeats (FHIRPath equality), in order."""
    seen: set[Any] = set()
    out: list[Any] = []
    for item in collection:
        key = _hashable(item)
        if key is None:
            if not contains(out, item):
                out.append(item)
        elif key not in seen:
            seen.add(key)
            out.append(item)
    return out


_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _date_parts(text: str) -> tuple[list[int], Decimal | None, str | None]:
    match = _DATE.fullmatch(text)
    if match is None:
        raise Fallback
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    parts = [int(p) for p in (year, month, day, hour, minute) if p is not None]
    seconds = Decimal(second + (fraction or "")) if second is not None else None
    return parts, seconds, zone


def _instant(parts: list[int], seconds: Decimal, zone: str) -> datetime:
    micro = int((seconds - int(seconds)) * 1_000_000)
    offset = timedelta(0) if zone == "Z" else (1 if zone[0] == "+" else -1) * timedelta(
        hours=int(zone[1:3]), minutes=int(zone[4:6]))
    year, month, day, hour, minute = parts
    return datetime(year, month, day, hour, minute, int(seconds), micro, tzinfo=timezone(offset))


def compare_dates(a: str, b: str) -> int | None:
    """FHIRPath's order of two FHIR date/dateTime/instant values: -1, 0, 1, or None when their
    precisions differ before they do (`2020` against `2020-05`: unknown)."""
    a_parts, a_seconds, a_zone = _date_parts(a)
    b_parts, b_seconds, b_zone = _date_parts(b)
    if a_seconds is not None and b_seconds is not None and a_zone and b_zone and a_zone != b_zone:
        left, right = _instant(a_parts, a_seconds, a_zone), _instant(b_parts, b_seconds, b_zone)
        return (left > right) - (left < right)
    if (a_zone is None) != (b_zone is None) and len(a_parts) > 3 and len(b_parts) > 3:
        raise Fallback  # a time with a zone against one without: FHIRPath takes the local zone
    a_all = [*a_parts, *([a_seconds] if a_seconds is not None else [])]
    b_all = [*b_parts, *([b_seconds] if b_seconds is not None else [])]
    for left, right in zip(a_all, b_all, strict=False):
        if left != right:
            return -1 if left < right else 1
    return 0 if len(a_all) == len(b_all) else None


def order(a: Any, b: Any, dates: bool) -> int | None:
    """-1, 0, 1 for FHIRPath `<`/`>` on two values (`dates`: FHIR date/dateTime/instant strings), None when
    unknown; `Fallback` for values not ordered here (quantities in different units, mixed types)."""
    if dates:
        if not isinstance(a, str) or not isinstance(b, str):
            raise Fallback
        return compare_dates(a, b)
    if is_number(a) and is_number(b):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, dict) and isinstance(b, dict):  # Quantities: native only in the same unit
        unit_a, unit_b = (a.get("system"), a.get("code")), (b.get("system"), b.get("code"))
        value_a, value_b = a.get("value"), b.get("value")
        if (unit_a == unit_b and is_number(value_a) and is_number(value_b)
                and (unit_a[1] or a.get("unit") == b.get("unit"))):
            return (value_a > value_b) - (value_a < value_b)
    raise Fallback

