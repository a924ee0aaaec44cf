"""Literal values: Literal, Null, Quantity and Ratio literals (computed once at compile time)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.datetime import parse_date, parse_datetime, parse_time
from fhirlead.cql.model import strip_namespace
from fhirlead.cql.quantity import Quantity, Ratio


def constant(value: Any) -> Fn:
    return lambda ctx: value


@handles("Literal")
def literal(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    _ns, vtype = strip_namespace(node.get("valueType", ""))
    text = node.get("value")
    if text is None:
        return constant(None)
    try:
        if vtype == "Boolean":
            return constant(text.lower() == "true" if isinstance(text, str) else bool(text))
        if vtype in ("Integer", "Long"):
            return constant(int(text))
        if vtype == "Decimal":
            return constant(Decimal(str(text)))
        if vtype == "String":
            return constant(str(text))
        if vtype == "Date":
            return constant(parse_date(str(text).lstrip("@")))
        if vtype == "Time":
            return constant(parse_time(str(text).lstrip("@")))
    except (ValueError, InvalidOperation) as exc:
        raise lc.unsupported(node, f"invalid {vtype} literal {text!r}") from exc
    if vtype == "DateTime":
        text = str(text).lstrip("@")
        return lambda ctx: parse_datetime(text, ctx.tz)
    raise lc.unsupported(node, f"literal of type {vtype}")


@handles("Null")
def null(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    return constant(None)


@handles("Quantity")
def quantity(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    value = node.get("value")
    return constant(None if value is None else Quantity(Decimal(str(value)), node.get("unit") or "1"))


@handles("Ratio")
def ratio(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    num = node["numerator"]
    den = node["denominator"]
    return constant(
        Ratio(
            Quantity(Decimal(str(num["value"])), num.get("unit") or "1"),
            Quantity(Decimal(str(den["value"])), den.get("unit") or "1"),
        )
    )
