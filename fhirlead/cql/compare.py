"""Equality, equivalence and ordering across every CQL value type (three-valued where CQL says so).

`equal` is CQL `=` (null when either side is null or the comparison is uncertain), `equivalent` is `~`
(always true or false), and `compare` orders values with an optional date/time precision.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhirlead.cql import quantity as q
from fhirlead.cql import uncertainty as u
from fhirlead.cql.clinical import Code, Concept
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import Node
from fhirlead.cql.quantity import Quantity, Ratio
from fhirlead.cql.tuples import Tuple
from fhirlead.cql.uncertainty import Uncertainty

_NUMBER = (int, Decimal)
_TEMPORAL = (Date, DateTime, Time)


def compare(a: Any, b: Any, precision: int | None = None) -> int | None:
    """-1, 0 or 1 ordering a and b; None when unknown (null operands or uncertain precision)."""
    if a is None or b is None:
        return None
    ta = type(a)
    tb = type(b)
    if ta is Uncertainty or tb is Uncertainty:
        return _compare_uncertain(a, b, precision)
    if ta is DateTime or ta is Date:
        if tb is DateTime or tb is Date:
            return a.compare(b, precision)
        raise CqlEvaluationError(f"cannot compare {ta.__name__} with {tb.__name__}")
    if ta is int or ta is Decimal:
        if tb is not int and tb is not Decimal:
            raise CqlEvaluationError(f"cannot compare {ta.__name__} with {tb.__name__}")
        return -1 if a < b else (1 if a > b else 0)
    if ta is str:
        if tb is not str:
            raise CqlEvaluationError(f"cannot compare String with {tb.__name__}")
        return -1 if a < b else (1 if a > b else 0)
    if ta is Quantity:
        if tb is not Quantity:
            raise CqlEvaluationError(f"cannot compare Quantity with {tb.__name__}")
        return q.compare(a, b)
    if ta is Time:
        return a.compare(b, precision)
    if ta is bool:
        return (a > b) - (a < b)
    raise CqlEvaluationError(f"values of type {ta.__name__} are not ordered")


def _compare_uncertain(a: Any, b: Any, precision: int | None) -> int | None:
    a_lo, a_hi = u.bounds(a)
    b_lo, b_hi = u.bounds(b)
    if compare(a_hi, b_lo, precision) == -1:
        return -1
    if compare(a_lo, b_hi, precision) == 1:
        return 1
    if (
        compare(a_lo, a_hi, precision) == 0
        and compare(b_lo, b_hi, precision) == 0
        and compare(a_lo, b_lo, precision) == 0
    ):
        return 0
    return None


def less(a: Any, b: Any, precision: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    if type(a) is Uncertainty or type(b) is Uncertainty:
        a_lo, a_hi = u.bounds(a)
        b_lo, b_hi = u.bounds(b)
        if compare(a_hi, b_lo, precision) == -1:
            return True
        c = compare(a_lo, b_hi, precision)
        return False if c is not None and c >= 0 else None
    c = compare(a, b, precision)
    return None if c is None else c < 0


def less_or_equal(a: Any, b: Any, precision: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    if type(a) is Uncertainty or type(b) is Uncertainty:
        a_lo, a_hi = u.bounds(a)
        b_lo, b_hi = u.bounds(b)
        c = compare(a_hi, b_lo, precision)
        if c is not None and c <= 0:
            return True
        return False if compare(a_lo, b_hi, precision) == 1 else None
    c = compare(a, b, precision)
    return None if c is None else c <= 0


def greater(a: Any, b: Any, precision: int | None = None) -> bool | None:
    return less(b, a, precision)


def greater_or_equal(a: Any, b: Any, precision: int | None = None) -> bool | None:
    return less_or_equal(b, a, precision)


def equal(a: Any, b: Any) -> bool | None:
    """CQL `=`."""
    if a is None or b is None:
        return None
    ta = type(a)
    tb = type(b)
    if ta is str or ta is bool:
        return a == b if tb is ta else False
    if ta in _NUMBER and tb in _NUMBER:
        return a == b
    if ta is Uncertainty or tb is Uncertainty:
        c = _compare_uncertain(a, b, None)
        return None if c is None else c == 0
    if ta in _TEMPORAL:
        if ta is Time or tb is Time:
            if ta is not tb:
                return False
        elif tb not in _TEMPORAL:
            return False
        c = a.compare(b)
        return None if c is None else c == 0
    if ta is Quantity:
        return q.equal(a, b) if tb is Quantity else False
    if ta is list:
        if tb is not list:
            return False
        if len(a) != len(b):
            return False
        result: bool | None = True
        for x, y in zip(a, b, strict=True):
            if x is None and y is None:
                continue
            r = equal(x, y)
            if r is False:
                return False
            if r is None:
                result = None
        return result
    if ta is Interval:
        if tb is not Interval:
            return False
        return _interval_equal(a, b)
    if ta is Code:
        if tb is not Code:
            return False
        return _fields_equal(
            (a.code, a.system, a.version, a.display), (b.code, b.system, b.version, b.display)
        )
    if ta is Concept:
        if tb is not Concept:
            return False
        return _fields_equal((a.codes, a.display), (b.codes, b.display))
    if ta is Tuple:
        if tb is not Tuple:
            return False
        return _tuple_equal(a, b, equal)
    if ta is Ratio:
        if tb is not Ratio:
            return False
        return _and(equal(a.numerator, b.numerator), equal(a.denominator, b.denominator))
    if ta is dict or ta is Node:
        return a is b or a == b
    return a == b


def _and(x: bool | None, y: bool | None) -> bool | None:
    if x is False or y is False:
        return False
    if x is None or y is None:
        return None
    return True


def _fields_equal(xs: tuple[Any, ...], ys: tuple[Any, ...]) -> bool | None:
    result: bool | None = True
    for x, y in zip(xs, ys, strict=True):
        if x is None and y is None:
            continue
        if x is None or y is None:
            return None
        r = equal(x, y)
        if r is False:
            return False
        if r is None:
            result = None
    return result


def _tuple_equal(a: Tuple, b: Tuple, fn: Any) -> bool | None:
    keys = set(a) | set(b)
    result: bool | None = True
    for k in keys:
        x, y = a.get(k), b.get(k)
        if x is None and y is None:
            continue
        if fn is equal:
            r = equal(x, y)
            if r is False:
                return False
            if r is None:
                result = None
        elif not equivalent(x, y):
            return False
    return result


def _interval_equal(a: Interval, b: Interval) -> bool | None:
    from fhirlead.cql.ops.intervals import closed_bounds

    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    return _and(equal(alo, blo), equal(ahi, bhi))


def equivalent(a: Any, b: Any) -> bool:
    """CQL `~`: never null."""
    if a is None or b is None:
        return a is None and b is None
    ta = type(a)
    tb = type(b)
    if ta is str:
        return tb is str and (a == b or " ".join(a.split()).casefold() == " ".join(b.split()).casefold())
    if ta is bool:
        return a == b if tb is bool else False
    if ta in _NUMBER and tb in _NUMBER:
        return _decimal_equivalent(a, b)
    if ta is Code or ta is Concept:
        if tb is not Code and tb is not Concept:
            return False
        return codes_equivalent(a, b)
    if ta in _TEMPORAL:
        if tb not in _TEMPORAL:
            return False
        if (ta is Time) != (tb is Time):
            return False
        return a.compare(b) == 0
    if ta is Quantity:
        return tb is Quantity and q.equivalent(a, b)
    if ta is list:
        if tb is not list or len(a) != len(b):
            return False
        return all(equivalent(x, y) for x, y in zip(a, b, strict=True))
    if ta is Interval:
        if tb is not Interval:
            return False
        from fhirlead.cql.ops.intervals import closed_bounds

        alo, ahi = closed_bounds(a)
        blo, bhi = closed_bounds(b)
        return equivalent(alo, blo) and equivalent(ahi, bhi)
    if ta is Tuple:
        return tb is Tuple and _tuple_equal(a, b, equivalent) is True
    if ta is Ratio:
        return (
            tb is Ratio and equivalent(a.numerator, b.numerator) and equivalent(a.denominator, b.denominator)
        )
    if ta is Uncertainty:
        return _compare_uncertain(a, b, None) == 0
    return a is b or a == b


def _decimal_equivalent(a: int | Decimal, b: int | Decimal) -> bool:
    if a == b:
        return True
    if type(a) is int and type(b) is int:
        return False
    da, db = Decimal(a), Decimal(b)
    places = min(-da.normalize().as_tuple().exponent, -db.normalize().as_tuple().exponent)  # type: ignore[operator]
    places = max(places, 0)
    quantum = Decimal(1).scaleb(-places)
    return da.quantize(quantum) == db.quantize(quantum)


def codes_equivalent(a: Code | Concept, b: Code | Concept) -> bool:
    """Code/Concept equivalence: any code of one matches a code of the other on (code, system)."""
    if type(a) is Code and type(b) is Code:
        return a.key == b.key
    ka = {c.key for c in ((a.codes or ()) if type(a) is Concept else [a]) if c is not None}
    for c in (b.codes or ()) if type(b) is Concept else [b]:
        if c is not None and c.key in ka:
            return True
    if type(a) is Concept and type(b) is Concept:
        return a.codes == b.codes and not ka and all(c is None for c in (a.codes or ()))
    return False


def dedupe(values: list[Any]) -> list[Any]:
    """Distinct elements in order, using CQL equality with nulls equal (for union, distinct...)."""
    out: list[Any] = []
    seen_hashable: set[Any] = set()
    has_null = False
    for v in values:
        if v is None:
            if not has_null:
                has_null = True
                out.append(None)
            continue
        tv = type(v)
        if tv is str or tv is int or tv is bool:
            key = (tv, v)
            if key in seen_hashable:
                continue
            seen_hashable.add(key)
            out.append(v)
            continue
        if tv is dict:
            key = ("id", id(v))
            if key in seen_hashable:
                continue
            seen_hashable.add(key)
            # a different dict may still be an identical resource
            if any(type(o) is dict and o == v for o in out):
                continue
            out.append(v)
            continue
        if any(_same(o, v) for o in out):
            continue
        out.append(v)
    return out


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return False
    r = equal(a, b)
    return r is True
