"""CQL Quantity and Ratio values with UCUM-aware comparison and arithmetic.

Calendar duration keywords (`year`, `months`, `day`...) are kept apart from UCUM definite durations:
days and below are interchangeable with `d`, `h`, `min`..., but years and months only convert
between themselves, and comparing `1 year` with `1 'a'` is unknown (null), as the CQL reference says.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhirlead.cql import ucum

_CALENDAR = {
    "year": "year",
    "years": "year",
    "month": "month",
    "months": "month",
    "week": "week",
    "weeks": "week",
    "day": "day",
    "days": "day",
    "hour": "hour",
    "hours": "hour",
    "minute": "minute",
    "minutes": "minute",
    "second": "second",
    "seconds": "second",
    "millisecond": "millisecond",
    "milliseconds": "millisecond",
}
_CALENDAR_TO_UCUM = {
    "week": "wk",
    "day": "d",
    "hour": "h",
    "minute": "min",
    "second": "s",
    "millisecond": "ms",
}
_VARIABLE = {"year": 12, "month": 1}  # in months
_UCUM_VARIABLE = {"a", "mo"}


class Quantity:
    """A decimal value with a UCUM unit or calendar duration keyword ('1' when unitless)."""

    __slots__ = ("unit", "value")

    def __init__(self, value: Decimal | int, unit: str | None = "1") -> None:
        self.value = value if isinstance(value, Decimal) else Decimal(value)
        self.unit = unit or "1"

    def __repr__(self) -> str:
        return f"{self.value} '{self.unit}'"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Quantity) and compare(self, other) == 0

    def __hash__(self) -> int:
        return hash("Quantity")

    def __lt__(self, other: Quantity) -> bool:
        return compare(self, other) == -1


class Ratio:
    """Numerator and denominator quantities (CQL Ratio)."""

    __slots__ = ("denominator", "numerator")

    def __init__(self, numerator: Quantity, denominator: Quantity) -> None:
        self.numerator = numerator
        self.denominator = denominator

    def __repr__(self) -> str:
        return f"{self.numerator!r}:{self.denominator!r}"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Ratio)
            and self.numerator == other.numerator
            and self.denominator == other.denominator
        )

    def __hash__(self) -> int:
        return hash("Ratio")


def calendar_unit(unit: str) -> str | None:
    """The singular calendar keyword for a unit, or None if it is not one."""
    return _CALENDAR.get(unit)


def _comparable_values(a: Quantity, b: Quantity) -> tuple[Decimal, Decimal] | None:
    """Both values in one unit, or None when the units cannot be compared."""
    ua, ub = a.unit, b.unit
    if ua == ub:
        return a.value, b.value
    ca, cb = _CALENDAR.get(ua), _CALENDAR.get(ub)
    if ca is not None or cb is not None:
        if ca in _VARIABLE or cb in _VARIABLE:
            if ca in _VARIABLE and cb in _VARIABLE:
                return a.value * _VARIABLE[ca], b.value * _VARIABLE[cb]
            return None
        ua = _CALENDAR_TO_UCUM[ca] if ca else ua
        ub = _CALENDAR_TO_UCUM[cb] if cb else ub
        if ua == ub:
            return a.value, b.value
    converted = ucum.convert(b.value, ub, ua)
    if converted is None:
        return None
    return a.value, converted


def compare(a: Quantity, b: Quantity) -> int | None:
    pair = _comparable_values(a, b)
    if pair is None:
        return None
    x, y = pair
    return -1 if x < y else (1 if x > y else 0)


def equal(a: Quantity, b: Quantity) -> bool | None:
    c = compare(a, b)
    return None if c is None else c == 0


def equivalent(a: Quantity, b: Quantity) -> bool:
    c = compare(a, b)
    if c is not None:
        return c == 0
    # 1 year ~ 1 'a', 1 month ~ 1 'mo'
    pairs = {("year", "a"), ("month", "mo")}
    ca, cb = _CALENDAR.get(a.unit), _CALENDAR.get(b.unit)
    if (ca, b.unit) in pairs or (cb, a.unit) in pairs:
        return a.value == b.value
    return False


def convert(q: Quantity, unit: str) -> Quantity | None:
    """The quantity expressed in another unit, or None when not convertible."""
    target = Quantity(0, unit)
    pair = _comparable_values(target, Quantity(q.value, q.unit))
    if pair is None:
        return None
    if unit in _CALENDAR and _CALENDAR[unit] in _VARIABLE and q.unit in _CALENDAR:
        return Quantity(ucum.round8(pair[1] / _VARIABLE[_CALENDAR[unit]]), unit)
    return Quantity(pair[1], unit)


def add(a: Quantity, b: Quantity) -> Quantity | None:
    pair = _comparable_values(a, b)
    if pair is None:
        return None
    if a.unit in _CALENDAR and _CALENDAR[a.unit] in _VARIABLE and a.unit != b.unit:
        months = pair[0] + pair[1]
        return Quantity(ucum.round8(months / _VARIABLE[_CALENDAR[a.unit]]), a.unit)
    return Quantity(pair[0] + pair[1], a.unit)


def subtract(a: Quantity, b: Quantity) -> Quantity | None:
    return add(a, Quantity(-b.value, b.unit))


def _unit_product(ua: str, ub: str, op: str) -> str:
    ua = _CALENDAR_TO_UCUM.get(_CALENDAR.get(ua, ""), ua)
    ub = _CALENDAR_TO_UCUM.get(_CALENDAR.get(ub, ""), ub)
    if op == "/":
        if ua == ub:
            return "1"
        if ub == "1":
            return ua
        if ua == "1":
            return f"/{ub}" if "/" not in ub and "." not in ub else f"/({ub})"
        return f"{ua}/{ub}" if "/" not in ub and "." not in ub else f"{ua}/({ub})"
    if ua == "1":
        return ub
    if ub == "1":
        return ua
    return f"{ua}.{ub}"


def multiply(a: Any, b: Any) -> Quantity:
    if not isinstance(a, Quantity):
        return Quantity(Decimal(a) * b.value, b.unit)
    if not isinstance(b, Quantity):
        return Quantity(a.value * Decimal(b), a.unit)
    return Quantity(a.value * b.value, _unit_product(a.unit, b.unit, "."))


def divide(a: Any, b: Any) -> Quantity | None:
    if not isinstance(b, Quantity):
        divisor = Decimal(b)
        return None if divisor == 0 else Quantity(ucum.round8(a.value / divisor), a.unit)
    if b.value == 0:
        return None
    if not isinstance(a, Quantity):
        return Quantity(ucum.round8(Decimal(a) / b.value), _unit_product("1", b.unit, "/"))
    converted = _comparable_values(a, b)
    if converted is not None and a.unit != b.unit:
        return Quantity(ucum.round8(converted[0] / converted[1]), "1")
    return Quantity(ucum.round8(a.value / b.value), _unit_product(a.unit, b.unit, "/"))


def is_valid_unit(unit: str) -> bool:
    return unit in _CALENDAR or ucum.is_valid(unit)
