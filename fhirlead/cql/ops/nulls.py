"""Nullological operators: IsNull, IsTrue, IsFalse, Coalesce."""

from __future__ import annotations

from typing import Any

from fhirlead.cql.compiler import Fn, LibraryCompiler, handles


@handles("IsNull")
def is_null(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: a(ctx) is None


@handles("IsTrue")
def is_true(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: a(ctx) is True


@handles("IsFalse")
def is_false(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    return lambda ctx: a(ctx) is False


@handles("Coalesce")
def coalesce(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    fns = lc.operands(node)
    if len(fns) == 1:
        (only,) = fns

        def first_in_list(ctx: Any) -> Any:
            items = only(ctx)
            if type(items) is not list:
                return items
            for v in items:
                if v is not None:
                    return v
            return None

        return first_in_list

    def f(ctx: Any) -> Any:
        for fn in fns:
            v = fn(ctx)
            if v is not None:
                return v
        return None

    return f
