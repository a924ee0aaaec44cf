"""Interval operators, and the timing operators that apply to both points and intervals.

Boundaries are first made closed (`closed_bounds`): an open boundary becomes its successor or
predecessor, a closed null boundary the minimum/maximum of the point type, and an open null boundary
an uncertainty between that extreme and the other boundary ("unknown start"). Every operator is then
a three-valued combination of point comparisons, with an optional date/time precision.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhirlead.cql import compare as cmp
from fhirlead.cql import datetime as dt
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import strip_namespace
from fhirlead.cql.ops.arithmetic import MAX_DECIMAL, MAX_INT, MIN_DECIMAL, MIN_INT, predecessor, successor
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.uncertainty import Uncertainty

less = cmp.less
less_or_equal = cmp.less_or_equal


def and3(x: bool | None, y: bool | None) -> bool | None:
    if x is False or y is False:
        return False
    if x is None or y is None:
        return None
    return True


def or3(x: bool | None, y: bool | None) -> bool | None:
    if x is True or y is True:
        return True
    if x is None or y is None:
        return None
    return False


def not3(x: bool | None) -> bool | None:
    return None if x is None else not x


def _extreme(sample: Any, point_type: str | None, low: bool) -> Any:
    t = type(sample)
    if t is DateTime or (sample is None and point_type == "DateTime"):
        tz = sample.tz if sample is not None else 0
        return dt.min_datetime(tz) if low else dt.max_datetime(tz)
    if t is Date or (sample is None and point_type == "Date"):
        return dt.MIN_DATE if low else dt.MAX_DATE
    if t is int or (sample is None and point_type == "Integer"):
        return MIN_INT if low else MAX_INT
    if t is Decimal or (sample is None and point_type == "Decimal"):
        return MIN_DECIMAL if low else MAX_DECIMAL
    if t is Quantity:
        return Quantity(MIN_DECIMAL if low else MAX_DECIMAL, sample.unit)
    if t is Time or (sample is None and point_type == "Time"):
        return dt.MIN_TIME if low else dt.MAX_TIME
    return None


def closed_bounds(iv: Interval) -> tuple[Any, Any]:
    """(low, high) as closed points; unknown (open null) boundaries become uncertainties."""
    lo, hi = iv.low, iv.high
    if iv.low_closed and iv.high_closed and lo is not None and hi is not None:
        return lo, hi
    if lo is not None and not iv.low_closed:
        lo = successor(lo)
    if hi is not None and not iv.high_closed:
        hi = predecessor(hi)
    sample = lo if lo is not None else hi
    if lo is None:
        lo_min = _extreme(sample, iv.point_type, True)
        if iv.low_closed:
            lo = lo_min
        elif lo_min is not None and hi is not None:
            lo = Uncertainty(lo_min, hi)
    if hi is None:
        hi_max = _extreme(sample, iv.point_type, False)
        if iv.high_closed:
            hi = hi_max
        elif hi_max is not None and lo is not None:
            hi = Uncertainty(lo if type(lo) is not Uncertainty else lo.low, hi_max)
    return lo, hi


def start(iv: Interval | None) -> Any:
    if iv is None:
        return None
    if iv.low is None:
        return _extreme(iv.high, iv.point_type, True) if iv.low_closed else None
    return iv.low if iv.low_closed else successor(iv.low)


def end(iv: Interval | None) -> Any:
    if iv is None:
        return None
    if iv.high is None:
        return _extreme(iv.low, iv.point_type, False) if iv.high_closed else None
    return iv.high if iv.high_closed else predecessor(iv.high)


def contains(iv: Interval | None, point: Any, p: int | None = None) -> bool | None:
    if iv is None:
        return None
    if point is None:
        return None
    lo, hi = closed_bounds(iv)
    if lo is None and hi is None:
        return None
    return and3(
        less_or_equal(lo, point, p) if lo is not None else None,
        less_or_equal(point, hi, p) if hi is not None else None,
    )


def includes(a: Interval | None, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    if type(b) is not Interval:
        return contains(a, b, p)
    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    return and3(less_or_equal(alo, blo, p), less_or_equal(bhi, ahi, p))


def proper_includes(a: Interval | None, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    if type(b) is not Interval:
        lo, hi = closed_bounds(a)
        return and3(less(lo, b, p), less(b, hi, p))
    return and3(includes(a, b, p), not3(includes(b, a, p)))


def overlaps(a: Any, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    alo, ahi = closed_bounds(a) if type(a) is Interval else (a, a)
    blo, bhi = closed_bounds(b) if type(b) is Interval else (b, b)
    return and3(less_or_equal(alo, bhi, p), less_or_equal(blo, ahi, p))


def overlaps_before(a: Interval | None, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    alo, ahi = closed_bounds(a)
    blo = closed_bounds(b)[0] if type(b) is Interval else b
    return and3(less(alo, blo, p), less_or_equal(blo, ahi, p))


def overlaps_after(a: Interval | None, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    alo, ahi = closed_bounds(a)
    bhi = closed_bounds(b)[1] if type(b) is Interval else b
    return and3(less(bhi, ahi, p), less_or_equal(alo, bhi, p))


def _adjacent(x: Any, y: Any, p: int | None) -> bool | None:
    """True when y is the successor of x (at precision p for date/times)."""
    if x is None or y is None or type(x) is Uncertainty or type(y) is Uncertainty:
        return None
    if p is not None and type(x) in (Date, DateTime, Time):
        unit = dt.PRECISION_NAMES[p]
        nxt = x.add(1, unit)
        c = nxt.compare(y, p)
        return None if c is None else c == 0
    try:
        return cmp.equal(successor(x), y)
    except CqlEvaluationError:
        return False


def meets_before(a: Interval | None, b: Interval | None, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return _adjacent(closed_bounds(a)[1], closed_bounds(b)[0], p)


def meets_after(a: Interval | None, b: Interval | None, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return _adjacent(closed_bounds(b)[1], closed_bounds(a)[0], p)


def meets(a: Interval | None, b: Interval | None, p: int | None = None) -> bool | None:
    return or3(meets_before(a, b, p), meets_after(a, b, p))


def _same(x: Any, y: Any, p: int | None) -> bool | None:
    c = cmp.compare(x, y, p)
    return None if c is None else c == 0


def starts(a: Interval | None, b: Interval | None, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    return and3(_same(alo, blo, p), less_or_equal(ahi, bhi, p))


def ends(a: Interval | None, b: Interval | None, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    return and3(less_or_equal(blo, alo, p), _same(ahi, bhi, p))


def _low(x: Any) -> Any:
    return closed_bounds(x)[0] if type(x) is Interval else x


def _high(x: Any) -> Any:
    return closed_bounds(x)[1] if type(x) is Interval else x


def before(a: Any, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return less(_high(a), _low(b), p)


def after(a: Any, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return less(_high(b), _low(a), p)


def same_or_before(a: Any, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return less_or_equal(_high(a), _low(b), p)


def same_or_after(a: Any, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    return less_or_equal(_high(b), _low(a), p)


def same_as(a: Any, b: Any, p: int | None = None) -> bool | None:
    if a is None or b is None:
        return None
    if type(a) is Interval and type(b) is Interval:
        alo, ahi = closed_bounds(a)
        blo, bhi = closed_bounds(b)
        return and3(_same(alo, blo, p), _same(ahi, bhi, p))
    return _same(a, b, p)


def union(a: Interval | None, b: Interval | None) -> Interval | None:
    if a is None or b is None:
        return None
    if or3(overlaps(a, b), meets(a, b)) is not True:
        return None
    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    lo = a if less_or_equal(alo, blo) else b
    hi = a if less_or_equal(bhi, ahi) else b
    return Interval(lo.low, hi.high, lo.low_closed, hi.high_closed, a.point_type or b.point_type)


def intersect(a: Interval | None, b: Interval | None) -> Interval | None:
    if a is None or b is None:
        return None
    if overlaps(a, b) is not True:
        return None
    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    lo = a if less_or_equal(blo, alo) else b
    hi = a if less_or_equal(ahi, bhi) else b
    return Interval(lo.low, hi.high, lo.low_closed, hi.high_closed, a.point_type or b.point_type)


def except_(a: Interval | None, b: Interval | None) -> Interval | None:
    if a is None or b is None:
        return None
    ov = overlaps(a, b)
    if ov is False:
        return a
    if ov is None:
        return None
    alo, ahi = closed_bounds(a)
    blo, bhi = closed_bounds(b)
    if less(alo, blo) and not less(bhi, ahi):
        return Interval(a.low, b.low, a.low_closed, not b.low_closed, a.point_type)
    if less(bhi, ahi) and not less(alo, blo):
        return Interval(b.high, a.high, not b.high_closed, a.high_closed, a.point_type)
    return None


def width(iv: Interval | None) -> Any:
    if iv is None:
        return None
    lo, hi = closed_bounds(iv)
    if lo is None or hi is None:
        return None
    if type(lo) in (Date, DateTime, Time):
        raise CqlEvaluationError("width of a date/time interval is not defined")
    from fhirlead.cql.ops.arithmetic import subtract

    return subtract(hi, lo)


# ------------------------------------------------------------------------------------------- compiling


def _precision(node: dict[str, Any]) -> int | None:
    return dt.precision_index(node.get("precision"))


def _point_type(node: dict[str, Any]) -> str | None:
    spec = node.get("resultTypeSpecifier")
    if spec and spec.get("type") == "IntervalTypeSpecifier":
        _ns, name = strip_namespace(spec.get("pointType", {}).get("name", ""))
        return name or None
    return None


@handles("Interval")
def interval(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    low = lc.compile(node["low"]) if node.get("low") is not None else (lambda ctx: None)
    high = lc.compile(node["high"]) if node.get("high") is not None else (lambda ctx: None)
    ptype = _point_type(node)
    lce = node.get("lowClosedExpression")
    hce = node.get("highClosedExpression")
    if lce is None and hce is None:
        lcl = node.get("lowClosed", True) is not False
        hcl = node.get("highClosed", True) is not False
        return lambda ctx: Interval(low(ctx), high(ctx), lcl, hcl, ptype)
    lcf = lc.compile(lce) if lce is not None else (lambda ctx: node.get("lowClosed", True))
    hcf = lc.compile(hce) if hce is not None else (lambda ctx: node.get("highClosed", True))

    def dynamic(ctx: Any) -> Interval:
        return Interval(low(ctx), high(ctx), lcf(ctx) is not False, hcf(ctx) is not False, ptype)

    return dynamic


@handles("Start")
def start_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: start(a(ctx))


@handles("End")
def end_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: end(a(ctx))


@handles("Width")
def width_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: width(a(ctx))


@handles("PointFrom")
def point_from(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> Any:
        iv = a(ctx)
        if iv is None:
            return None
        lo, hi = closed_bounds(iv)
        if cmp.equal(lo, hi) is not True:
            raise CqlEvaluationError("point from: the interval is not a unit interval")
        return lo

    return f


def _binary_with_precision(fn: Any) -> Any:
    def compile_op(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        a, b = lc.operands(node)
        p = _precision(node)
        return lambda ctx: fn(a(ctx), b(ctx), p)

    return compile_op


handles("Overlaps")(_binary_with_precision(overlaps))
handles("OverlapsBefore")(_binary_with_precision(overlaps_before))
handles("OverlapsAfter")(_binary_with_precision(overlaps_after))
handles("Meets")(_binary_with_precision(meets))
handles("MeetsBefore")(_binary_with_precision(meets_before))
handles("MeetsAfter")(_binary_with_precision(meets_after))
handles("Starts")(_binary_with_precision(starts))
handles("Ends")(_binary_with_precision(ends))
handles("Before")(_binary_with_precision(before))
handles("After")(_binary_with_precision(after))
handles("SameAs")(_binary_with_precision(same_as))
handles("SameOrBefore")(_binary_with_precision(same_or_before))
handles("SameOrAfter")(_binary_with_precision(same_or_after))
