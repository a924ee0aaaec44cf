"""Comparison operators: =, !=, ~, !~, <, <=, >, >= over every comparable type."""

from __future__ import annotations

from typing import Any

from fhirlead.cql import compare as cmp
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles


@handles("Equal")
def equal(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    eq = cmp.equal
    return lambda ctx: eq(a(ctx), b(ctx))


@handles("NotEqual")
def not_equal(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)

    def f(ctx: Any) -> bool | None:
        r = cmp.equal(a(ctx), b(ctx))
        return None if r is None else not r

    return f


@handles("Equivalent")
def equivalent(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    eqv = cmp.equivalent
    return lambda ctx: eqv(a(ctx), b(ctx))


@handles("NotEquivalent")
def not_equivalent(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)
    return lambda ctx: not cmp.equivalent(a(ctx), b(ctx))


def _ordering(fn: Any) -> Any:
    def compile_ordering(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        a, b = lc.operands(node)
        return lambda ctx: fn(a(ctx), b(ctx))

    return compile_ordering


handles("Less")(_ordering(cmp.less))
handles("LessOrEqual")(_ordering(cmp.less_or_equal))
handles("Greater")(_ordering(cmp.greater))
handles("GreaterOrEqual")(_ordering(cmp.greater_or_equal))
