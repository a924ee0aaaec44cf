"""number parameters (https://hl7.org/fhir/R4/search.html#number), and the decimal rules quantity shares.

A stored number is indexed as [low, high] (a single value has low == high; a Range keeps its bounds).
A search value's precision sets its implicit range for `eq`/`ne` (`100` = [99.5, 100.5),
`100.00` = [99.995, 100.005)); the other prefixes compare with the exact value, and `ap` uses ±10%.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.query import RangeMatch
from fhirlead.search.types.date import split_prefix

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def decimal_range(text: str, name: str) -> tuple[float, float, float]:
    """(value, low, high) of a search number: the implicit range from its significant digits."""
    if not _NUMBER.fullmatch(text):
        raise bad_request(f"Invalid number '{text}' for parameter '{name}'", name)
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise bad_request(f"Invalid number '{text}' for parameter '{name}'", name) from None
    exponent = value.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    result = float(value), float(value - half), float(value + half)
    if not all(math.isfinite(x) for x in result):
        raise bad_request(f"Number '{text}' for parameter '{name}' is out of range", name)
    return result


def parse(key: str, raw: str, name: str) -> RangeMatch:
    prefix, text = split_prefix(raw)
    value, low, high = decimal_range(text, name)
    return RangeMatch(key, "number", prefix, low, high, value)


# -- write time --------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return None
        return None
    return float(value)


def _add_number(key: str, value: Any, out: IndexEntries) -> None:
    number = _number(value)
    if number is not None and math.isfinite(number):
        out.number.append((key, number, number))


def _add_range(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    low = _number((value.get("low") or {}).get("value"))
    high = _number((value.get("high") or {}).get("value"))
    if low is None and high is None:
        return
    out.number.append((key, -math.inf if low is None else low, math.inf if high is None else high))


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, dict):
        if "low" in value or "high" in value:
            _add_range(key, value, out)
        elif "value" in value:
            _add_number(key, value["value"], out)
        else:
            for name, inner in value.items():
                if name in ("valueInteger", "valueDecimal", "valuePositiveInt", "valueUnsignedInt"):
                    _add_number(key, inner, out)
                elif name == "valueRange":
                    _add_range(key, inner, out)
    else:
        _add_number(key, value, out)


def _add_quantity_value(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, dict):
        _add_number(key, value.get("value"), out)


CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    "integer": _add_number,
    "decimal": _add_number,
    "positiveInt": _add_number,
    "unsignedInt": _add_number,
    "Range": _add_range,
    "Quantity": _add_quantity_value,
    "Duration": _add_quantity_value,
    "Age": _add_quantity_value,
}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension", "Resource", "string"):
        return _add_dynamic
    return None
