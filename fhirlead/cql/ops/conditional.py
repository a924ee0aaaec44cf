"""Conditional operators: If and Case (with or without a comparand). Message lives here too."""

from __future__ import annotations

from typing import Any

from fhirlead.cql.compare import equal
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.errors import CqlEvaluationError


@handles("If")
def if_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    cond = lc.compile(node["condition"])
    then = lc.compile(node["then"])
    else_ = lc.compile(node["else"])
    return lambda ctx: then(ctx) if cond(ctx) is True else else_(ctx)


@handles("Case")
def case(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    items = [(lc.compile(i["when"]), lc.compile(i["then"])) for i in node.get("caseItem", ())]
    else_ = lc.compile(node["else"])
    if node.get("comparand") is not None:
        comparand = lc.compile(node["comparand"])

        def with_comparand(ctx: Any) -> Any:
            value = comparand(ctx)
            for when, then in items:
                if equal(value, when(ctx)) is True:
                    return then(ctx)
            return else_(ctx)

        return with_comparand

    def searched(ctx: Any) -> Any:
        for when, then in items:
            if when(ctx) is True:
                return then(ctx)
        return else_(ctx)

    return searched


@handles("Message")
def message(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    source = lc.compile(node["source"])
    condition = lc.compile(node["condition"]) if node.get("condition") else (lambda ctx: False)
    code = lc.compile(node["code"]) if node.get("code") else (lambda ctx: None)
    severity = lc.compile(node["severity"]) if node.get("severity") else (lambda ctx: "Message")
    text = lc.compile(node["message"]) if node.get("message") else (lambda ctx: None)
    where = f"{lc.name} {node.get('locator', '')}".strip()

    def f(ctx: Any) -> Any:
        value = source(ctx)
        if condition(ctx) is True:
            sev = severity(ctx) or "Message"
            msg = text(ctx)
            if str(sev).lower() == "error":
                raise CqlEvaluationError(f"{code(ctx)}: {msg} ({where})")
            ctx.messages.append((str(sev), str(code(ctx)), str(msg)))
        return value

    return f
