"""Date and time operators: constructors, Now/Today, component extraction, durations and ages.

The timing comparisons (same as, before, after...) are in `intervals`, as CQL defines them for both
points and intervals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhirlead.cql import datetime as dt
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError

_DT_PARTS = ("year", "month", "day", "hour", "minute", "second", "millisecond")


def _parts(node: dict[str, Any], lc: LibraryCompiler, names: tuple[str, ...]) -> list[Fn]:
    out = []
    for name in names:
        if node.get(name) is None:
            break
        out.append(lc.compile(node[name]))
    return out


def _values(fns: list[Fn], ctx: Any) -> tuple[int, ...]:
    vals: list[int] = []
    for fn in fns:
        v = fn(ctx)
        if v is None:
            break
        vals.append(int(v))
    return tuple(vals)


@handles("DateTime")
def datetime_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    parts = _parts(node, lc, _DT_PARTS)
    tz_fn = lc.compile(node["timezoneOffset"]) if node.get("timezoneOffset") is not None else None

    def f(ctx: Any) -> DateTime | None:
        fields = _values(parts, ctx)
        if not fields:
            return None
        tz = ctx.tz
        if tz_fn is not None:
            offset = tz_fn(ctx)
            if offset is not None:
                tz = int(Decimal(offset) * 60)
        if not dt._valid(fields):
            raise CqlEvaluationError(f"invalid DateTime components {fields}")
        return DateTime(fields, tz)

    return f


@handles("Date")
def date_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    parts = _parts(node, lc, _DT_PARTS[:3])

    def f(ctx: Any) -> Date | None:
        fields = _values(parts, ctx)
        if not fields:
            return None
        if not dt._valid(fields):
            raise CqlEvaluationError(f"invalid Date components {fields}")
        return Date(*fields)

    return f


@handles("Time")
def time_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    parts = _parts(node, lc, _DT_PARTS[3:])

    def f(ctx: Any) -> Time | None:
        fields = _values(parts, ctx)
        return Time(*fields) if fields else None

    return f


@handles("Now")
def now(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return lambda ctx: ctx.now


@handles("Today")
def today(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return lambda ctx: ctx.now.to_date()


@handles("TimeOfDay")
def time_of_day(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return lambda ctx: Time(*ctx.now.fields[3:])


def _unary(fn: Any) -> Any:
    def compile_unary(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        (a,) = lc.operands(node)
        return lambda ctx: None if (v := a(ctx)) is None else fn(v, ctx)

    return compile_unary


def _date_from(v: Any, ctx: Any) -> Date:
    return v if type(v) is Date else v.to_date()


def _time_from(v: DateTime, ctx: Any) -> Time | None:
    v = v.shifted(ctx.tz) if len(v.fields) > dt.HOUR else v
    return Time(*v.fields[3:]) if len(v.fields) > dt.HOUR else None


def _tz_from(v: DateTime, ctx: Any) -> Decimal:
    return Decimal(v.tz) / Decimal(60)


handles("DateFrom")(_unary(_date_from))
handles("TimeFrom")(_unary(_time_from))
handles("TimezoneOffsetFrom")(_unary(_tz_from))


@handles("DateTimeComponentFrom")
def component_from(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    p = dt.precision_index(node["precision"])
    if p is None or p < 0:
        raise lc.unsupported(node, f"component {node['precision']}")
    return lambda ctx: None if (v := a(ctx)) is None else dt.component(v, p)


def _between(fn: Any) -> Any:
    def compile_between(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        a, b = lc.operands(node)
        unit = node["precision"].lower()

        def f(ctx: Any) -> Any:
            x, y = a(ctx), b(ctx)
            if x is None or y is None:
                return None
            if type(x) is Time:
                return _time_between(x, y, unit, fn is dt.difference_between)
            return fn(x, y, unit)

        return f

    return compile_between


def _time_between(x: Time, y: Time, unit: str, difference: bool) -> int:
    base = (2000, 1, 1)
    a = DateTime(base + x.fields, 0)
    b = DateTime(base + y.fields, 0)
    return (dt.difference_between if difference else dt.duration_between)(a, b, unit)  # type: ignore[return-value]


handles("DurationBetween")(_between(dt.duration_between))
handles("DifferenceBetween")(_between(dt.difference_between))


@handles("CalculateAgeAt")
def calculate_age_at(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    birth, as_of = lc.operands(node)
    unit = node.get("precision", "Year").lower()

    def f(ctx: Any) -> Any:
        b, a = birth(ctx), as_of(ctx)
        if b is None or a is None:
            return None
        return dt.duration_between(b, a, unit)

    return f


@handles("CalculateAge")
def calculate_age(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (birth,) = lc.operands(node)
    unit = node.get("precision", "Year").lower()

    def f(ctx: Any) -> Any:
        b = birth(ctx)
        if b is None:
            return None
        as_of = ctx.now.to_date() if type(b) is Date else ctx.now
        return dt.duration_between(b, as_of, unit)

    return f
