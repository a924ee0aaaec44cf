"""The rest of the ELM operator set: iteration nodes (Filter, ForEach, Repeat, Current, Iteration, Total,
Aggregate, Sort), FHIR tree navigation (Children, Descendants), and the less common conversions and
value functions (Convert, CanConvert, ToChars, SplitOnMatches, Precision, LowBoundary,
HighBoundary, TimezoneFrom, Size); ConvertsToRatio is with the other conversions.

Iteration nodes bind the item being visited (`Current`, `$this`), its index (`Iteration`) and, in
Aggregate, the running total (`Total`) in the evaluation frame, under their `scope` name when they
have one, so nested iterations stay apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirlead.cql import compare as cmp
from fhirlead.cql import model
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles, type_key
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import Node
from fhirlead.cql.ops.queries import _compile_sort
from fhirlead.cql.ops.types import _CONVERSIONS, tester
from fhirlead.cql.quantity import Quantity

_MISSING = object()
THIS, INDEX, TOTAL = "$this", "$index", "$total"


def _key(kind: str, scope: str | None) -> str:
    return kind if scope is None else f"{kind}:{scope}"


class _Bound:
    """Binds iteration variables in the frame and restores what they hid."""

    def __init__(self, frame: dict[str, Any], names: list[str]) -> None:
        self.frame = frame
        self.saved = {n: frame.get(n, _MISSING) for n in names}

    def restore(self) -> None:
        for n, v in self.saved.items():
            if v is _MISSING:
                self.frame.pop(n, None)
            else:
                self.frame[n] = v


def _iterate(node: dict[str, Any], lc: LibraryCompiler, body_attr: str) -> tuple[Fn, Fn, str | None]:
    return lc.compile(node["source"]), lc.compile(node[body_attr]), node.get("scope")


def _names(scope: str | None) -> list[str]:
    names = [THIS, INDEX, _key(THIS, scope), _key(INDEX, scope)]
    if scope is not None:
        names.append(scope)
    return names


def _bind(frame: dict[str, Any], scope: str | None, item: Any, index: int) -> None:
    frame[THIS] = frame[_key(THIS, scope)] = item
    frame[INDEX] = frame[_key(INDEX, scope)] = index
    if scope is not None:
        frame[scope] = item


def _as_list(v: Any) -> list[Any] | None:
    if v is None:
        return None
    return v if type(v) is list else [v]


def _scoped(node: dict[str, Any], lc: LibraryCompiler, body_attr: str,
            run: Callable[[Any, list[Any], Fn, str | None], list[Any]]) -> Fn:
    """Filter, ForEach and Repeat: `run(ctx, items, body, scope)` over the source's items (null stays
    null), with `$this`, `$index` and the scope's alias bound per item and restored afterwards."""
    src, body, scope = _iterate(node, lc, body_attr)
    names = _names(scope)

    def f(ctx: Any) -> list[Any] | None:
        items = _as_list(src(ctx))
        if items is None:
            return None
        bound = _Bound(ctx.frame, names)
        try:
            return run(ctx, items, body, scope)
        finally:
            bound.restore()

    return f


@handles("Filter")
def filter_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    def run(ctx: Any, items: list[Any], cond: Fn, scope: str | None) -> list[Any]:
        out = []
        for i, x in enumerate(items):
            _bind(ctx.frame, scope, x, i)
            if cond(ctx) is True:
                out.append(x)
        return out

    return _scoped(node, lc, "condition", run)


@handles("ForEach")
def for_each(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    def run(ctx: Any, items: list[Any], element: Fn, scope: str | None) -> list[Any]:
        out = []
        for i, x in enumerate(items):
            _bind(ctx.frame, scope, x, i)
            out.append(element(ctx))
        return out

    return _scoped(node, lc, "element", run)


@handles("Repeat")
def repeat(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    """Apply `element` to the source, then to what it produced, until nothing new appears."""

    def run(ctx: Any, items: list[Any], element: Fn, scope: str | None) -> list[Any]:
        out: list[Any] = []
        todo = list(items)
        while todo:
            produced = []
            for i, x in enumerate(todo):
                _bind(ctx.frame, scope, x, i)
                for y in _as_list(element(ctx)) or ():
                    if y is not None and not any(cmp.equal(y, z) is True for z in out):
                        out.append(y)
                        produced.append(y)
            todo = produced
        return out

    return _scoped(node, lc, "element", run)


def _lookup(kind: str, what: str) -> Any:
    def compile_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        key = _key(kind, node.get("scope"))
        where = f"{lc.name} {node.get('locator', '')}"

        def f(ctx: Any) -> Any:
            v = ctx.frame.get(key, _MISSING)
            if v is _MISSING:
                raise CqlEvaluationError(f"{what} is not in scope ({where})")
            return v

        return f

    return compile_ref


handles("Current")(_lookup(THIS, "no current item"))
handles("Iteration")(_lookup(INDEX, "no iteration"))
handles("Total")(_lookup(TOTAL, "no running total"))


@handles("Aggregate")
def aggregate(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    """FHIRPath aggregate(iteration, initial): fold the source, `Total` being the running value."""
    src = lc.compile(node["source"])
    iteration = lc.compile(node["iteration"])
    initial = lc.compile(node["initialValue"]) if node.get("initialValue") is not None else (lambda ctx: None)
    scope = node.get("scope")
    names = [*_names(scope), TOTAL, _key(TOTAL, scope)]

    def f(ctx: Any) -> Any:
        items = _as_list(src(ctx))
        if items is None:
            return None
        total = initial(ctx)
        bound = _Bound(ctx.frame, names)
        try:
            for i, x in enumerate(items):
                _bind(ctx.frame, scope, x, i)
                ctx.frame[TOTAL] = ctx.frame[_key(TOTAL, scope)] = total
                total = iteration(ctx)
            return total
        finally:
            bound.restore()

    return f


@handles("Sort")
def sort(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    src = lc.compile(node["source"])
    by = _compile_sort({"by": node.get("by") or [{"type": "ByDirection", "direction": "asc"}]}, lc)
    return lambda ctx: None if (v := src(ctx)) is None else by(ctx, list(v))


# ------------------------------------------------------------------------------------ FHIR navigation


def _children(value: Any) -> list[Any]:
    """The child elements of a FHIR resource or complex element, in document order."""
    if type(value) is dict:
        raw, obj = value, value
    elif type(value) is Node and type(value.raw) is dict:
        raw, obj = value.raw, value
    else:
        return []
    out: list[Any] = []
    seen: set[str] = set()
    for k in raw:
        name = k[1:] if k.startswith("_") else k
        if name == "resourceType" or name in seen:
            continue
        seen.add(name)
        v = model.get(obj, name)
        if v is None:  # a choice element, stored under its typed key (valueQuantity -> value)
            base = re.sub(r"[A-Z].*$", "", name)
            if base and base not in seen:
                seen.add(base)
                v = model.get(obj, base)
        for x in _as_list(v) or ():
            if x is not None:
                out.append(x)
    return out


@handles("Children")
def children(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    src = lc.compile(node["source"])

    def f(ctx: Any) -> list[Any] | None:
        v = src(ctx)
        if v is None:
            return None
        out: list[Any] = []
        for x in _as_list(v) or ():
            out += _children(x)
        return out

    return f


@handles("Descendants", "Descendents")
def descendants(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    src = lc.compile(node["source"])

    def f(ctx: Any) -> list[Any] | None:
        v = src(ctx)
        if v is None:
            return None
        out: list[Any] = []
        todo = list(_as_list(v) or ())
        while todo:
            level = []
            for x in todo:
                level += _children(x)
            out += level
            todo = level
        return out

    return f


# ------------------------------------------------------------------------------------------ conversions


def _target(node: dict[str, Any], lc: LibraryCompiler) -> Any:
    spec = node.get("toTypeSpecifier")
    key = type_key(spec, f"{lc.name} {lc.version}") if spec is not None else node.get("toType")
    if key is None:
        raise lc.unsupported(node, "no toType or toTypeSpecifier")
    return key


def _system_conversion(key: Any) -> Any:
    if isinstance(key, str):
        ns, name = model.strip_namespace(key)
        if ns in ("", model.SYSTEM_NS):
            return _CONVERSIONS.get("To" + name)
    return None


@handles("Convert")
def convert(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    """`convert X to T`: the System conversion to T, else a cast (null when X is not a T)."""
    (a,) = lc.operands(node)
    key = _target(node, lc)
    conv = _system_conversion(key)
    if conv is not None:
        return lambda ctx: None if (v := a(ctx)) is None else conv(v, ctx)
    try:
        test = tester(key)
    except CqlEvaluationError as exc:
        raise lc.unsupported(node, str(exc)) from None
    return lambda ctx: v if (v := a(ctx)) is not None and test(v) else None


@handles("CanConvert")
def can_convert(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    key = _target(node, lc)
    conv = _system_conversion(key)
    try:
        test = tester(key)
    except CqlEvaluationError as exc:
        raise lc.unsupported(node, str(exc)) from None

    def f(ctx: Any) -> bool | None:
        v = a(ctx)
        if v is None:
            return None
        if test(v):
            return True
        if conv is None:
            return False
        try:
            return conv(v, ctx) is not None
        except CqlEvaluationError:
            return False

    return f


@handles("ToChars")
def to_chars(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: None if (v := a(ctx)) is None else list(v)


@handles("SplitOnMatches")
def split_on_matches(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    text = lc.compile(node["stringToSplit"])
    pattern = lc.compile(node["separatorPattern"])

    def f(ctx: Any) -> list[str] | None:
        t, p = text(ctx), pattern(ctx)
        if t is None:
            return None
        if p is None or p == "":
            return [t]
        return re.split(p, t)

    return f


# ---------------------------------------------------------------------------------- precision, boundaries

# Digits of precision of each Date/DateTime/Time component, as CQL's Precision counts them.
_DATE_DIGITS = (4, 6, 8, 10, 12, 14, 17)
_TIME_DIGITS = (2, 4, 6, 9)


def _decimal_places(d: Decimal) -> int:
    exp = d.as_tuple().exponent
    return max(0, -exp) if isinstance(exp, int) else 0


@handles("Precision")
def precision(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> int | None:
        v = a(ctx)
        if v is None:
            return None
        t = type(v)
        if t is Decimal:
            return _decimal_places(v)
        if t is int:
            return 0
        if t in (Date, DateTime):
            return _DATE_DIGITS[len(v.fields) - 1]
        if t is Time:
            return _TIME_DIGITS[len(v.fields) - 1]
        raise CqlEvaluationError(f"Precision of {t.__name__} is not defined")

    return f


def _fields_for(digits: int, table: tuple[int, ...]) -> int | None:
    """How many components a boundary precision in digits keeps (None: not a valid precision)."""
    return table.index(digits) + 1 if digits in table else None


def _boundary(high: bool) -> Any:
    def compile_boundary(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        a, p = lc.operands(node)

        def f(ctx: Any) -> Any:
            v = a(ctx)
            if v is None:
                return None
            digits = p(ctx)
            t = type(v)
            if t is Decimal or t is int:
                d = Decimal(v)
                places = 8 if digits is None else digits
                if places < 0 or places > 28 or places < _decimal_places(d):
                    return None
                q = Decimal(1).scaleb(-places)
                # the unwritten digits of d are anything from 0 to 9...9 (away from zero)
                tail = Decimal(1).scaleb(-_decimal_places(d)) - q if _decimal_places(d) < places else Decimal(0)
                if high == (d >= 0):
                    return (d + tail if d >= 0 else d - tail).quantize(q)
                return d.quantize(q)
            if t in (Date, DateTime, Time):
                table = _TIME_DIGITS if t is Time else _DATE_DIGITS
                if t is Date:
                    table = table[:3]
                n = len(table) if digits is None else _fields_for(digits, table)
                if n is None or n < len(v.fields):
                    return None
                if t is Time:
                    lows, highs = (0, 0, 0, 0), (23, 59, 59, 999)
                    fields = tuple(v.fields) + (highs if high else lows)[len(v.fields) : n]
                    return Time(*fields)
                full = v.high_fields() if high else v.low_fields()
                if t is Date:
                    return Date(*full[:n])
                return DateTime(tuple(full[:n]), v.tz)
            raise CqlEvaluationError(f"{node['type']} of {t.__name__} is not defined")

        return f

    return compile_boundary


handles("LowBoundary")(_boundary(False))
handles("HighBoundary")(_boundary(True))


@handles("TimezoneFrom")
def timezone_from(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    """The deprecated name of TimezoneOffsetFrom (translators before 1.4)."""
    (a,) = lc.operands(node)
    return lambda ctx: None if (v := a(ctx)) is None else Decimal(v.tz) / Decimal(60)


@handles("Size")
def size(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    """Size(Interval): the number of points (integers) or the width plus one step (decimals, quantities)."""
    (a,) = lc.operands(node)

    def f(ctx: Any) -> Any:
        iv = a(ctx)
        if iv is None:
            return None
        if type(iv) is not Interval:
            raise CqlEvaluationError(f"Size of {type(iv).__name__} is not defined")
        from fhirlead.cql.ops.intervals import closed_bounds

        lo, hi = closed_bounds(iv)
        if lo is None or hi is None:
            return None
        if type(lo) is int:
            return hi - lo + 1
        if type(lo) is Decimal:
            return hi - lo + Decimal("0.00000001")
        if type(lo) is Quantity:
            if lo.unit != hi.unit:
                return None
            return Quantity(hi.value - lo.value + Decimal("0.00000001"), lo.unit)
        raise CqlEvaluationError(f"Size of an interval of {type(lo).__name__} is not defined")

    return f

