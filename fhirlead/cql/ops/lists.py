"""List operators, and the membership/set operators CQL overloads for lists and intervals.

`In`, `Contains`, `Includes`, `Union`... take a list or an interval; the overload is chosen on the
run-time value (ELM from older translators does not always carry result types). Membership in a
literal list of strings or integers compiles to a frozenset lookup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirlead.cql import compare as cmp
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.datetime import precision_index
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.ops import intervals as iv

dedupe = cmp.dedupe


@handles("List")
def list_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    elements = [lc.compile(e) for e in node.get("element", ())]
    if not elements:
        return lambda ctx: []
    return lambda ctx: [e(ctx) for e in elements]


@handles("ToList")
def to_list(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> list[Any]:
        v = a(ctx)
        return [] if v is None else [v]

    return f


@handles("Exists")
def exists(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> bool:
        v = a(ctx)
        if type(v) is not list:
            return v is not None
        return any(x is not None for x in v)

    return f


@handles("SingletonFrom")
def singleton_from(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    where = f"{lc.name} {node.get('locator', '')}"

    def f(ctx: Any) -> Any:
        v = a(ctx)
        if v is None:
            return None
        if type(v) is not list:
            return v
        if len(v) > 1:
            raise CqlEvaluationError(f"singleton from: list has {len(v)} elements ({where})")
        return v[0] if v else None

    return f


def _source(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return lc.compile(node["source"]) if "source" in node else lc.operands(node)[0]


@handles("First")
def first(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a = _source(node, lc)
    return lambda ctx: v[0] if (v := a(ctx)) else None


@handles("Last")
def last(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a = _source(node, lc)
    return lambda ctx: v[-1] if (v := a(ctx)) else None


@handles("Distinct")
def distinct(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: None if (v := a(ctx)) is None else dedupe(v)


@handles("Flatten")
def flatten(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> list[Any] | None:
        v = a(ctx)
        if v is None:
            return None
        out: list[Any] = []
        for item in v:
            if type(item) is list:
                out.extend(item)
            else:
                out.append(item)
        return out

    return f


@handles("Length")
def length(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> int | None:
        v = a(ctx)
        if v is None:
            return 0 if _is_list_typed(node) else None
        return len(v)

    return f


def _is_list_typed(node: dict[str, Any]) -> bool:
    op = node.get("operand")
    spec = (op or {}).get("resultTypeSpecifier") if isinstance(op, dict) else None
    return bool(spec and spec.get("type") == "ListTypeSpecifier")


@handles("Indexer")
def indexer(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, i = lc.operands(node)

    def f(ctx: Any) -> Any:
        v, idx = a(ctx), i(ctx)
        if v is None or idx is None or idx < 0 or idx >= len(v):
            return None
        return v[idx]

    return f


@handles("IndexOf")
def index_of(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a = lc.compile(node["source"])
    e = lc.compile(node["element"])

    def f(ctx: Any) -> int | None:
        v, x = a(ctx), e(ctx)
        if v is None or x is None:
            return None
        for n, item in enumerate(v):
            if cmp.equal(item, x) is True:
                return n
        return -1

    return f


@handles("Slice")
def slice_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    src = lc.compile(node["source"])
    start = lc.compile(node["startIndex"]) if node.get("startIndex") else (lambda ctx: 0)
    end = lc.compile(node["endIndex"]) if node.get("endIndex") else (lambda ctx: None)

    def f(ctx: Any) -> list[Any] | None:
        v = src(ctx)
        if v is None:
            return None
        s = start(ctx) or 0
        e = end(ctx)
        return v[s:e] if e is not None else v[s:]

    return f


@handles("Times")
def times(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    from fhirlead.cql.tuples import Tuple

    a, b = lc.operands(node)

    def f(ctx: Any) -> list[Any] | None:
        x, y = a(ctx), b(ctx)
        if x is None or y is None:
            return None
        return [Tuple({**t1, **t2}) for t1 in x for t2 in y]

    return f


# ------------------------------------------------------------------------------ membership (list or interval)


def list_contains(items: list[Any] | None, element: Any) -> bool:
    if items is None:
        return False
    if element is None:
        return any(x is None for x in items)
    te = type(element)
    if te is str or te is int:
        return any(type(x) is te and x == element for x in items)
    return any(x is not None and cmp.equal(x, element) is True for x in items)


def _literal_set(node: dict[str, Any]) -> frozenset[Any] | None:
    """A constant set when the node is a List of String/Integer literals."""
    if node.get("type") != "List":
        return None
    values = []
    for el in node.get("element", ()):
        if el.get("type") != "Literal" or el.get("value") is None:
            return None
        vt = el.get("valueType", "")
        if vt.endswith("}String"):
            values.append(el["value"])
        elif vt.endswith("}Integer"):
            values.append(int(el["value"]))
        else:
            return None
    return frozenset(values)


@handles("In")
def in_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    element_node, container_node = node["operand"]
    p = precision_index(node.get("precision"))
    a = lc.compile(element_node)
    constant = _literal_set(container_node)
    if constant is not None:

        def in_constant(ctx: Any) -> bool | None:
            x = a(ctx)
            if x is None:
                return False
            return type(x) in (str, int) and x in constant

        return in_constant
    b = lc.compile(container_node)
    contains = iv.contains

    def f(ctx: Any) -> bool | None:
        x, c = a(ctx), b(ctx)
        if type(c) is Interval:
            return contains(c, x, p)
        if c is None:
            return None if _interval_typed(container_node) else False
        return list_contains(c, x)

    return f


@handles("Contains")
def contains_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    container_node, element_node = node["operand"]
    p = precision_index(node.get("precision"))
    b, a = lc.compile(container_node), lc.compile(element_node)

    def f(ctx: Any) -> bool | None:
        c, x = b(ctx), a(ctx)
        if type(c) is Interval:
            return iv.contains(c, x, p)
        if c is None:
            return None if _interval_typed(container_node) else False
        return list_contains(c, x)

    return f


def _interval_typed(node: dict[str, Any]) -> bool:
    spec = node.get("resultTypeSpecifier")
    return bool(spec and spec.get("type") == "IntervalTypeSpecifier")


def list_includes(a: list[Any] | None, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if type(b) is not list:
        return list_contains(a, b)
    return all(list_contains(a, x) for x in b)


def _includes_either(a: Any, b: Any, p: int | None) -> bool | None:
    if type(a) is Interval or (a is None and type(b) is Interval):
        return iv.includes(a, b, p)
    return list_includes(a, b)


@handles("Includes")
def includes(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    p = precision_index(node.get("precision"))
    return lambda ctx: _includes_either(a(ctx), b(ctx), p)


@handles("IncludedIn")
def included_in(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    p = precision_index(node.get("precision"))
    return lambda ctx: _includes_either(b(ctx), a(ctx), p)


def _proper_includes_either(a: Any, b: Any, p: int | None) -> bool | None:
    if type(a) is Interval or (a is None and type(b) is Interval):
        return iv.proper_includes(a, b, p)
    if a is None or b is None:
        return None
    if type(b) is not list:
        return list_contains(a, b) and len(a) > 1
    return bool(list_includes(a, b)) and len(dedupe(a)) > len(dedupe(b))


@handles("ProperIncludes", "ProperContains")
def proper_includes(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    p = precision_index(node.get("precision"))
    return lambda ctx: _proper_includes_either(a(ctx), b(ctx), p)


@handles("ProperIncludedIn", "ProperIn")
def proper_included_in(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    p = precision_index(node.get("precision"))
    return lambda ctx: _proper_includes_either(b(ctx), a(ctx), p)


# ------------------------------------------------------------------------------------ set operations


def list_union(a: list[Any] | None, b: list[Any] | None) -> list[Any]:
    return dedupe((a or []) + (b or []))


def list_intersect(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None or b is None:
        return None
    return dedupe([x for x in a if list_contains(b, x)])


def list_except(a: list[Any] | None, b: list[Any] | None) -> list[Any] | None:
    if a is None:
        return None
    if b is None:
        return dedupe(a)
    return dedupe([x for x in a if not list_contains(b, x)])


def _set_op(list_fn: Callable[[Any, Any], Any], interval_fn: Callable[[Any, Any], Any]) -> Any:
    def compile_set(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        fns = lc.operands(node)
        operand_nodes = node["operand"]
        is_interval = any(_interval_typed(o) for o in operand_nodes)

        def pair(x: Any, y: Any) -> Any:
            if type(x) is Interval or type(y) is Interval or (is_interval and x is None and y is None):
                return interval_fn(x, y)
            return list_fn(x, y)

        if len(fns) == 2:
            a, b = fns
            return lambda ctx: pair(a(ctx), b(ctx))

        def many(ctx: Any) -> Any:
            result = fns[0](ctx)
            for fn in fns[1:]:
                result = pair(result, fn(ctx))
            return result

        return many

    return compile_set


handles("Union")(_set_op(list_union, iv.union))
handles("Intersect")(_set_op(list_intersect, iv.intersect))
handles("Except")(_set_op(list_except, iv.except_))


# ------------------------------------------------------------------------------- collapse & expand


def _per(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ops = node.get("operand")
    if isinstance(ops, list) and len(ops) > 1 and ops[1] is not None:
        return lc.compile(ops[1])
    return lambda ctx: None


@handles("Collapse")
def collapse(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ops = node["operand"]
    src = lc.compile(ops[0] if isinstance(ops, list) else ops)
    per = _per(node, lc)

    def f(ctx: Any) -> list[Interval] | None:
        items = src(ctx)
        if items is None:
            return None
        quantum = per(ctx)
        p = _quantum_precision(quantum)
        ivs = [x for x in items if x is not None]
        ivs.sort(key=_sort_key_low)
        out: list[Interval] = []
        for x in ivs:
            if out:
                prev = out[-1]
                if iv.overlaps(prev, x, p) is True or iv.meets(prev, x, p) is True:
                    merged = _merge(prev, x)
                    out[-1] = merged
                    continue
            out.append(x)
        return out

    return f


def _quantum_precision(quantum: Any) -> int | None:
    if quantum is None:
        return None
    from fhirlead.cql.datetime import unit_index

    try:
        return unit_index(getattr(quantum, "unit", ""))
    except CqlEvaluationError:
        return None


def _merge(a: Interval, b: Interval) -> Interval:
    ahi = iv.closed_bounds(a)[1]
    bhi = iv.closed_bounds(b)[1]
    hi = b if cmp.less(ahi, bhi) else a
    return Interval(a.low, hi.high, a.low_closed, hi.high_closed, a.point_type or b.point_type)


def _sort_key_low(x: Interval) -> Any:
    import functools

    return functools.cmp_to_key(lambda p, q: cmp.compare(p, q) or 0)(iv.closed_bounds(x)[0])


@handles("Expand")
def expand(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ops = node["operand"]
    src = lc.compile(ops[0] if isinstance(ops, list) else ops)
    per = _per(node, lc)

    def f(ctx: Any) -> list[Any] | None:
        value = src(ctx)
        if value is None:
            return None
        quantum = per(ctx)
        if type(value) is Interval:
            return _expand_interval(value, quantum, points=True)
        out: list[Any] = []
        for x in value:
            if x is None:
                continue
            part = _expand_interval(x, quantum, points=False)
            if part is None:
                return None
            out.extend(part)
        return out

    return f


def _step(point: Any, quantum: Any) -> Any:
    """A function p -> next point, for `per` quantum (default: one unit of the point's precision)."""
    from decimal import Decimal

    from fhirlead.cql.datetime import PRECISION_NAMES, Date, DateTime, Time
    from fhirlead.cql.ops.arithmetic import add
    from fhirlead.cql.quantity import Quantity

    t = type(point)
    if t is int:
        n = 1 if quantum is None else quantum.value
        if n != int(n):
            raise CqlEvaluationError("expand: an Integer interval needs a whole-number per quantity")
        return lambda p: p + int(n)
    if t is Decimal:
        n = Decimal(1) if quantum is None else quantum.value
        return lambda p: p + n
    if t in (Date, DateTime, Time):
        q = quantum if quantum is not None else Quantity(1, PRECISION_NAMES[point.precision])
        return lambda p: add(p, q)
    if t is Quantity:
        q = quantum if quantum is not None else Quantity(1, point.unit)
        return lambda p: add(p, q)
    raise CqlEvaluationError(f"expand: unsupported point type {t.__name__}")


def _expand_interval(x: Interval, quantum: Any, points: bool) -> list[Any] | None:
    from fhirlead.cql.ops.arithmetic import predecessor

    lo, hi = iv.closed_bounds(x)
    if lo is None or hi is None or type(lo) is iv.Uncertainty or type(hi) is iv.Uncertainty:
        return None
    step = _step(lo, quantum)
    out: list[Any] = []
    p = lo
    while cmp.less_or_equal(p, hi) is True:
        nxt = step(p)
        if points:
            out.append(p)
        else:
            last = predecessor(nxt)
            if cmp.less_or_equal(last, hi) is not True:
                break
            out.append(Interval(p, last, True, True, x.point_type))
        p = nxt
    return out
