"""Terminology operators: InValueSet, AnyInValueSet, InCodeSystem, ExpandValueSet, Code and Concept
selectors. Membership is a hash-set lookup on (system, code) in the value set's expansion.
"""

from __future__ import annotations

from typing import Any

from fhirlead.cql.clinical import Code, CodeSystem, Concept, ValueSet
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.errors import CqlEvaluationError


def in_valueset(value: Any, vs: ValueSet | None) -> bool | None:
    """`value in vs` for a Code, Concept, String or list of those (any member matches)."""
    if vs is None:
        return None
    if value is None:
        return False
    t = type(value)
    if t is Code:
        return vs.contains(value.system, value.code)
    if t is Concept:
        return any(c is not None and vs.contains(c.system, c.code) for c in value.codes or ())
    if t is str:
        return vs.has_code(value)
    if t is list:
        return any(in_valueset(v, vs) is True for v in value)
    raise CqlEvaluationError(f"cannot test a {t.__name__} for value set membership")


def _valueset_fn(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ref = node.get("valueset")
    if ref is not None:
        vs = lc.library(ref.get("libraryName")).valueset(ref["name"])
        return lambda ctx: vs
    expr = node.get("valuesetExpression")
    if expr is None:
        raise lc.unsupported(node, "value set operand missing")
    return lc.compile(expr)


@handles("InValueSet")
def in_valueset_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    code = lc.compile(node["code"])
    vs_fn = _valueset_fn(node, lc)
    return lambda ctx: in_valueset(code(ctx), vs_fn(ctx))


@handles("AnyInValueSet")
def any_in_valueset(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    codes = lc.compile(node["codes"])
    vs_fn = _valueset_fn(node, lc)

    def f(ctx: Any) -> bool | None:
        items = codes(ctx)
        if items is None:
            return False
        vs = vs_fn(ctx)
        return any(in_valueset(c, vs) is True for c in items)

    return f


def _in_codesystem(value: Any, cs: CodeSystem) -> bool:
    if value is None:
        return False
    if type(value) is Code:
        return value.system == cs.id
    if type(value) is Concept:
        return any(c is not None and c.system == cs.id for c in value.codes or ())
    raise CqlEvaluationError("code system membership of a bare string needs a terminology server")


@handles("InCodeSystem", "AnyInCodeSystem")
def in_codesystem(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ref = node.get("codesystem")
    if ref is None:
        raise lc.unsupported(node, "code system expression operand")
    cs = lc.library(ref.get("libraryName")).codesystem(ref["name"])
    if node["type"] == "InCodeSystem":
        code = lc.compile(node["code"])
        return lambda ctx: _in_codesystem(code(ctx), cs)
    codes = lc.compile(node["codes"])
    return lambda ctx: any(_in_codesystem(c, cs) for c in (codes(ctx) or ()))


@handles("ExpandValueSet")
def expand_valueset(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (vs_fn,) = lc.operands(node)

    def f(ctx: Any) -> list[Code] | None:
        vs = vs_fn(ctx)
        return None if vs is None else vs.expansion()

    return f


@handles("Code")
def code_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ref = node.get("system") or {}
    cs = lc.library(ref.get("libraryName")).codesystem(ref["name"]) if ref else None
    value = Code(node.get("code"), cs.id if cs else None, cs.version if cs else None, node.get("display"))
    return lambda ctx: value


@handles("Concept")
def concept_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    codes = [lc.compile(c) for c in node.get("code", ())]
    display = node.get("display")
    return lambda ctx: Concept([c(ctx) for c in codes], display)
