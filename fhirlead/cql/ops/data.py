"""Retrieve: fetch the patient's resources of a type/profile, with code and date filters.

Static filters (a value set or literal codes) are resolved at compile time into one `RetrieveRequest`,
which is also the per-patient cache key: the same retrieve written in several libraries runs once.
"""

from __future__ import annotations

from typing import Any

from fhirlead.cql.clinical import Code, ValueSet
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.model import FHIR_NS, strip_namespace
from fhirlead.cql.retrieve import DataRequirement, RetrieveRequest


def _static_codes(node: dict[str, Any] | None, lc: LibraryCompiler) -> ValueSet | tuple[Code, ...] | None:
    if node is None:
        return None
    t = node.get("type")
    if t == "ValueSetRef":
        return lc.library(node.get("libraryName")).valueset(node["name"])
    if t == "ToList" and node["operand"].get("type") == "CodeRef":
        ref = node["operand"]
        return (lc.library(ref.get("libraryName")).code(ref["name"]),)
    if t == "CodeRef":
        return (lc.library(node.get("libraryName")).code(node["name"]),)
    if t == "List" and all(e.get("type") == "CodeRef" for e in node.get("element", ())):
        return tuple(lc.library(e.get("libraryName")).code(e["name"]) for e in node["element"])
    return None


def _record(ctx: Any, resources: Any) -> None:
    ev = ctx.evaluated
    for r in resources:
        ev[f"{r.get('resourceType')}/{r.get('id')}"] = r


@handles("Retrieve")
def retrieve(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    for attr in ("codeFilter", "dateFilter", "otherFilter", "include"):
        if node.get(attr):
            raise lc.unsupported(node, f"retrieve with {attr}")
    if node.get("context") is not None:
        raise lc.unsupported(node, "retrieve with an explicit context")
    ns, data_type = strip_namespace(node["dataType"])
    if ns != FHIR_NS:
        raise lc.unsupported(node, f"data model {ns}")
    template = node.get("templateId")
    code_path = node.get("codeProperty")
    date_path = node.get("dateProperty")
    codes_node = node.get("codes")
    if node.get("dateLowProperty") or node.get("dateHighProperty"):
        raise lc.unsupported(node, "retrieve with dateLowProperty/dateHighProperty")
    static = _static_codes(codes_node, lc)
    if codes_node is not None and code_path is None:
        raise lc.unsupported(node, "code filter without codeProperty")
    date_fn = lc.compile(node["dateRange"]) if node.get("dateRange") is not None else None
    lc.engine.requirements.add(DataRequirement(data_type, code_path if codes_node is not None else None,
                                               static if codes_node is not None else None,
                                               codes_node is not None and static is None))

    if date_fn is None and (codes_node is None or static is not None):
        request = RetrieveRequest(data_type, template, code_path if codes_node is not None else None, static)

        def fixed(ctx: Any) -> Any:
            cache = ctx.cache
            result = cache.get(request)
            if result is None:
                result = cache[request] = ctx.data.retrieve(request)
                _record(ctx, result)
            return result

        return fixed

    codes_fn = lc.compile(codes_node) if codes_node is not None and static is None else None

    def dynamic(ctx: Any) -> Any:
        codes: Any = static
        if codes_fn is not None:
            value = codes_fn(ctx)
            if value is None:
                return []
            if type(value) is list:
                codes = tuple(c for c in value if c is not None)
            elif isinstance(value, ValueSet | Code):
                codes = value if isinstance(value, ValueSet) else (value,)
            else:
                raise CqlEvaluationError(
                    f"retrieve codes must be codes or a value set, not {type(value).__name__}"
                )
        rng = date_fn(ctx) if date_fn is not None else None
        request = RetrieveRequest(
            data_type,
            template,
            code_path if codes_node is not None else None,
            codes,
            date_path if rng is not None else None,
            rng,
        )
        result = ctx.data.retrieve(request)
        _record(ctx, result)
        return result

    return dynamic
