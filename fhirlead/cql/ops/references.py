"""References: expression, function, parameter, operand, alias and terminology references.

Expression definitions are evaluated at most once per patient (cached in the context). Function
calls bind operands in a fresh frame; calls on a single resource argument are memoised per patient,
which is safe because CQL functions are side-effect free and resources are immutable during a run.
Overloads are chosen at compile time from the ELM signature or arity, else at run time by type.
"""

from __future__ import annotations

from typing import Any

from fhirlead.cql.compiler import CompiledFunction, Fn, LibraryCompiler, handles, new_key, type_key
from fhirlead.cql.errors import CqlEvaluationError, UnsupportedElmError
from fhirlead.cql.ops.types import tester

_MISSING = object()


@handles("ExpressionRef")
def expression_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    target = lc.library(node.get("libraryName"))
    d = target.definition(node["name"])
    if d.context not in (None, "Patient"):
        raise lc.unsupported(node, f"reference to {d.context}-context definition {node['name']}")
    key = d.key

    def f(ctx: Any) -> Any:
        cache = ctx.cache
        v = cache.get(key, _MISSING)
        if v is _MISSING:
            saved = ctx.frame
            ctx.frame = {}
            try:
                v = d.fn(ctx)  # type: ignore[misc]
            finally:
                ctx.frame = saved
            cache[key] = v
        return v

    return f


def _select_overload(node: dict[str, Any], lc: LibraryCompiler, nargs: int) -> list[CompiledFunction]:
    target = lc.library(node.get("libraryName"))
    candidates = [f for f in target.functions(node["name"]) if len(f.operand_names) == nargs]
    if not candidates:
        raise lc.unsupported(node, f"no overload of {node['name']} takes {nargs} argument(s)")
    if len(candidates) == 1:
        return candidates
    signature = node.get("signature")
    if signature:
        keys = [type_key(s, f"{lc.name} {lc.version}") for s in signature]
        exact = [f for f in candidates if f.operand_types == keys]
        if len(exact) == 1:
            return exact
    return candidates


def _invoke(fn: CompiledFunction, lc: LibraryCompiler, node: dict[str, Any]) -> Any:
    """A callable (ctx, args) -> value for one resolved overload."""
    native = fn.native
    if native is not None:
        return lambda ctx, args: native(ctx, *args)
    try:
        body = fn.compiled_body()
    except UnsupportedElmError:
        raise
    names = fn.operand_names

    if len(names) == 1:
        (name,) = names
        key = fn.key

        def call1(ctx: Any, args: list[Any]) -> Any:
            arg = args[0]
            memo = type(arg) is dict
            if memo:
                mk = (key, id(arg))
                v = ctx.cache.get(mk, _MISSING)
                if v is not _MISSING:
                    return v
            saved = ctx.frame
            ctx.frame = {name: arg}
            try:
                v = body(ctx)
            finally:
                ctx.frame = saved
            if memo:
                ctx.cache[mk] = v
            return v

        return call1

    def call(ctx: Any, args: list[Any]) -> Any:
        saved = ctx.frame
        ctx.frame = dict(zip(names, args, strict=True))
        try:
            return body(ctx)
        finally:
            ctx.frame = saved

    return call


@handles("FunctionRef")
def function_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    arg_nodes = node.get("operand") or []
    args = [lc.compile(a) for a in arg_nodes]
    overloads = _select_overload(node, lc, len(args))
    if len(overloads) == 1:
        invoke = _invoke(overloads[0], lc, node)
        if len(args) == 1:
            (a0,) = args
            return lambda ctx: invoke(ctx, [a0(ctx)])
        return lambda ctx: invoke(ctx, [a(ctx) for a in args])
    # Run-time dispatch on operand types (ELM without signatures).
    table = [
        ([tester(t) if t is not None else (lambda v: True) for t in f.operand_types], _invoke(f, lc, node))
        for f in overloads
    ]
    name = node["name"]

    def dispatch(ctx: Any) -> Any:
        values = [a(ctx) for a in args]
        for tests, invoke in table:
            if all(v is None or t(v) for t, v in zip(tests, values, strict=True)):
                return invoke(ctx, values)
        raise CqlEvaluationError(f"no overload of {name} accepts the given arguments")

    return dispatch


@handles("ParameterRef")
def parameter_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    target = lc.library(node.get("libraryName"))
    name, default = target.parameter(node["name"])
    key = new_key(f"param:{target.name}.{name}")

    def f(ctx: Any) -> Any:
        params = ctx.params
        if name in params:
            return params[name]
        if default is None:
            return None
        v = ctx.cache.get(key, _MISSING)
        if v is _MISSING:
            v = ctx.cache[key] = default(ctx)
        return v

    return f


def _frame_lookup(kind: str) -> Any:
    def compile_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        name = node["name"]
        where = f"{lc.name} {node.get('locator', '')}"

        def f(ctx: Any) -> Any:
            try:
                return ctx.frame[name]
            except KeyError:
                raise CqlEvaluationError(f"{kind} {name!r} is not in scope ({where})") from None

        return f

    return compile_ref


handles("OperandRef")(_frame_lookup("operand"))
handles("AliasRef")(_frame_lookup("alias"))
handles("QueryLetRef")(_frame_lookup("let"))


@handles("CodeRef")
def code_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    value = lc.library(node.get("libraryName")).code(node["name"])
    return lambda ctx: value


@handles("ConceptRef")
def concept_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    value = lc.library(node.get("libraryName")).concept(node["name"])
    return lambda ctx: value


@handles("CodeSystemRef")
def codesystem_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    value = lc.library(node.get("libraryName")).codesystem(node["name"])
    return lambda ctx: value


@handles("ValueSetRef")
def valueset_ref(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    value = lc.library(node.get("libraryName")).valueset(node["name"])
    return lambda ctx: value
