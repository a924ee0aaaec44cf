"""Three-valued logic: And, Or, Xor, Not, Implies (CQL reference, "Logical Operators").

And/Or evaluate their second operand only when the first does not already decide the result.
"""

from __future__ import annotations

from typing import Any

from fhirlead.cql.compiler import Fn, LibraryCompiler, handles


def _chain(fns: list[Fn], combine: Any) -> Fn:
    fn = fns[0]
    for nxt in fns[1:]:
        fn = combine(fn, nxt)
    return fn


def _and(a: Fn, b: Fn) -> Fn:
    def f(ctx: Any) -> bool | None:
        x = a(ctx)
        if x is False:
            return False
        y = b(ctx)
        if y is False:
            return False
        if x is None or y is None:
            return None
        return True

    return f


def _or(a: Fn, b: Fn) -> Fn:
    def f(ctx: Any) -> bool | None:
        x = a(ctx)
        if x is True:
            return True
        y = b(ctx)
        if y is True:
            return True
        if x is None or y is None:
            return None
        return False

    return f


@handles("And")
def and_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return _chain(lc.operands(node), _and)


@handles("Or")
def or_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return _chain(lc.operands(node), _or)


@handles("Xor")
def xor(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)

    def f(ctx: Any) -> bool | None:
        x = a(ctx)
        if x is None:
            return None
        y = b(ctx)
        if y is None:
            return None
        return x != y

    return f


@handles("Implies")
def implies(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, b = lc.operands(node)

    def f(ctx: Any) -> bool | None:
        x = a(ctx)
        if x is False:
            return True
        y = b(ctx)
        if y is True:
            return True
        if x is None or y is None:
            return None
        return False

    return f


@handles("Not")
def not_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)

    def f(ctx: Any) -> bool | None:
        x = a(ctx)
        return None if x is None else not x

    return f
