"""quantity parameters (https://hl7.org/fhir/R4/search.html#quantity).

Search values are `[prefix]number|system|code`, `[prefix]number||code` (code or unit text, any system)
or `[prefix]number` (any unit). Numbers follow the number rules (precision range for eq/ne).

UCUM: every quantity in UCUM units is also indexed once more in canonical base units (a marker system
and the unit's dimension vector as code, value scaled), so `5|http://unitsofmeasure.org|g` finds a
stored `5000 mg`. A UCUM search value is compared on those canonical entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

from fhirlead.cql import ucum
from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.query import RangeMatch
from fhirlead.search.types.date import split_prefix
from fhirlead.search.types.number import decimal_range
from fhirlead.search.values import split_unescaped, unescape

UCUM = "http://unitsofmeasure.org"
CANONICAL = "urn:fhirlead:ucum-canonical"
CURRENCY = "urn:iso:std:iso:4217"


# Units on an offset scale: value in kelvin = value * factor + offset (the converter's factors are for
# temperature differences only, so these are handled here).
_OFFSET_UNITS = {"Cel": (1.0, 273.15), "[degF]": (5 / 9, 459.67 * 5 / 9), "[degRe]": (1.25, 273.15)}


@lru_cache(maxsize=4096)
def canonical(unit: str) -> tuple[float, float, str] | None:
    """(factor, offset, canonical code) of a UCUM unit (canonical value = value * factor + offset), or
    None when the converter does not know the unit."""
    if unit in _OFFSET_UNITS:
        factor, offset = _OFFSET_UNITS[unit]
        return factor, offset, "Θ1"
    try:
        factor, dims = ucum.parse(unit)
    except (ucum.UcumError, ValueError, ArithmeticError, KeyError, IndexError):
        return None
    code = ".".join(f"{name}{power}" for name, power in dims) or "1"
    return float(factor), 0.0, code


def parse(key: str, raw: str, name: str) -> RangeMatch:
    parts = split_unescaped(raw, "|")
    if len(parts) not in (1, 3):
        raise bad_request(
            f"Invalid quantity '{raw}' for parameter '{name}': expected [prefix]number[|system|code]", name
        )
    prefix, text = split_prefix(unescape(parts[0]))
    value, low, high = decimal_range(text, name)
    if len(parts) == 1:
        return RangeMatch(key, "quantity", prefix, low, high, value)
    system, code = unescape(parts[1]), unescape(parts[2])
    if not code:
        raise bad_request(f"Invalid quantity '{raw}' for parameter '{name}': the unit code is empty", name)
    if not system:
        return RangeMatch(key, "quantity", prefix, low, high, value, unit=code)
    if system == UCUM:
        found = canonical(code)
        if found is not None:
            factor, offset, canonical_code = found
            return RangeMatch(
                key,
                "quantity",
                prefix,
                low * factor + offset,
                high * factor + offset,
                value * factor + offset,
                system=CANONICAL,
                code=canonical_code,
            )
    return RangeMatch(key, "quantity", prefix, low, high, value, system=system, code=code)


# -- write time --------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, Decimal):  # fhirpathpy hands decimals over as Decimal
        value = float(value)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _add_quantity(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    number = _number(value.get("value"))
    if number is None:
        return
    system, code, unit = value.get("system") or "", value.get("code") or "", value.get("unit") or ""
    out.quantity.append((key, system, code, unit, number, number))
    if system == UCUM and code:
        found = canonical(code)
        if found is not None:
            scaled = number * found[0] + found[1]
            out.quantity.append((key, CANONICAL, found[2], "", scaled, scaled))


def _add_money(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, dict):
        number = _number(value.get("value"))
        if number is not None:
            currency = value.get("currency") or ""
            out.quantity.append((key, CURRENCY if currency else "", currency, currency, number, number))


def _add_range(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    low, high = value.get("low") or {}, value.get("high") or {}
    low_value, high_value = _number(low.get("value")), _number(high.get("value"))
    if low_value is None and high_value is None:
        return
    unit_of = low if low_value is not None else high
    system, code = unit_of.get("system") or "", unit_of.get("code") or ""
    low_value = -math.inf if low_value is None else low_value
    high_value = math.inf if high_value is None else high_value
    out.quantity.append((key, system, code, unit_of.get("unit") or "", low_value, high_value))
    if system == UCUM and code:
        found = canonical(code)
        if found is not None:
            factor, offset, canonical_code = found
            out.quantity.append(
                (
                    key,
                    CANONICAL,
                    canonical_code,
                    "",
                    low_value * factor + offset,
                    high_value * factor + offset,
                )
            )


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    if "low" in value or "high" in value:
        _add_range(key, value, out)
    elif "currency" in value:
        _add_money(key, value, out)
    elif "value" in value:
        _add_quantity(key, value, out)
    else:
        for name, inner in value.items():
            if name in ("valueQuantity", "valueAge", "valueDuration", "valueDistance", "valueCount"):
                _add_quantity(key, inner, out)
            elif name == "valueRange":
                _add_range(key, inner, out)
            elif name == "valueMoney":
                _add_money(key, inner, out)


CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    "Quantity": _add_quantity,
    "SimpleQuantity": _add_quantity,
    "Age": _add_quantity,
    "Duration": _add_quantity,
    "Distance": _add_quantity,
    "Count": _add_quantity,
    "MoneyQuantity": _add_quantity,
    "Money": _add_money,
    "Range": _add_range,
}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension", "Resource"):
        return _add_dynamic
    return None
