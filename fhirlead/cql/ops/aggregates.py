"""Aggregate functions over lists: Count, Sum, Min, Max, Avg, Median, Mode, AllTrue, AnyTrue...

Nulls in the source are ignored; an empty (or null) source gives null, except Count (0), AllTrue
(true) and AnyTrue (false), as the CQL reference specifies.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirlead.cql import compare as cmp
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.ops.arithmetic import add, divide, multiply, subtract
from fhirlead.cql.ucum import round8


def _aggregate(fn: Callable[[list[Any]], Any], keep_nulls: bool = False) -> Any:
    def compile_agg(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        src = lc.compile(node["source"])
        path = node.get("path")
        if path:  # AggregateExpression.path: aggregate that property of each element
            from fhirlead.cql.ops.structured import getter_for

            getters = [getter_for(p) for p in path.split(".")]
            whole = src

            def src(ctx: Any) -> Any:
                items = whole(ctx)
                if items is None:
                    return None
                out = []
                for x in items:
                    for g in getters:
                        x = None if x is None else g(x, ctx)
                    out.append(x)
                return out

        def f(ctx: Any) -> Any:
            items = src(ctx)
            if items is None:
                items = []
            values = items if keep_nulls else [x for x in items if x is not None]
            return fn(values)

        return f

    return compile_agg


def _sum(values: list[Any]) -> Any:
    if not values:
        return None
    return functools.reduce(add, values)


def _min(values: list[Any]) -> Any:
    if not values:
        return None
    best = values[0]
    for v in values[1:]:
        if cmp.less(v, best):
            best = v
    return best


def _max(values: list[Any]) -> Any:
    if not values:
        return None
    best = values[0]
    for v in values[1:]:
        if cmp.less(best, v):
            best = v
    return best


def _avg(values: list[Any]) -> Any:
    if not values:
        return None
    return divide(_sum(values), Decimal(len(values)))


def _sorted(values: list[Any]) -> list[Any]:
    return sorted(values, key=functools.cmp_to_key(lambda a, b: cmp.compare(a, b) or 0))


def _median(values: list[Any]) -> Any:
    if not values:
        return None
    s = _sorted(values)
    n = len(s)
    if n % 2:
        return s[n // 2]
    return divide(add(s[n // 2 - 1], s[n // 2]), Decimal(2))


def _mode(values: list[Any]) -> Any:
    if not values:
        return None
    best, best_count = None, 0
    for v in values:
        c = sum(1 for w in values if cmp.equal(v, w) is True)
        if c > best_count:
            best, best_count = v, c
    return best


def _variance(values: list[Any], population: bool) -> Any:
    n = len(values)
    if n == 0 or (n == 1 and not population):
        return None
    mean = _avg(values)
    total = _sum([multiply(subtract(v, mean), subtract(v, mean)) for v in values])
    return divide(total, Decimal(n if population else n - 1))


def _stddev(values: list[Any], population: bool) -> Any:
    v = _variance(values, population)
    if v is None:
        return None
    return round8(Decimal(v).sqrt()) if not hasattr(v, "unit") else None


def _product(values: list[Any]) -> Any:
    if not values:
        return None
    return functools.reduce(multiply, values)


def _geometric_mean(values: list[Any]) -> Any:
    if not values:
        return None
    product = Decimal(_product(values))
    return round8(product ** (Decimal(1) / Decimal(len(values))))


handles("Count")(_aggregate(len))
handles("Sum")(_aggregate(_sum))
handles("Min")(_aggregate(_min))
handles("Max")(_aggregate(_max))
handles("Avg")(_aggregate(_avg))
handles("Median")(_aggregate(_median))
handles("Mode")(_aggregate(_mode))
handles("Variance")(_aggregate(lambda v: _variance(v, False)))
handles("PopulationVariance")(_aggregate(lambda v: _variance(v, True)))
handles("StdDev")(_aggregate(lambda v: _stddev(v, False)))
handles("PopulationStdDev")(_aggregate(lambda v: _stddev(v, True)))
handles("Product")(_aggregate(_product))
handles("GeometricMean")(_aggregate(_geometric_mean))
handles("AllTrue")(_aggregate(lambda v: all(x is True for x in v)))
handles("AnyTrue")(_aggregate(lambda v: any(x is True for x in v)))
