"""A small builder for ELM JSON nodes, so tests can state CQL expressions compactly.

    run(op("Add", lit(1), lit(2)))  == 3

`run` wraps the expression in a one-definition library, compiles it and evaluates it for a patient
whose resources are given (default: none).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fhirlead.cql.engine import Engine
from fhirlead.cql.library import ElmLibrary, LibrarySet
from fhirlead.cql.retrieve import InMemoryDataSource
from fhirlead.cql.terminology import Terminology

SYS = "{urn:hl7-org:elm-types:r1}"
FHIR = "{http://hl7.org/fhir}"


def lit(value: Any) -> dict[str, Any]:
    if value is None:
        return {"type": "Null"}
    if isinstance(value, bool):
        return {"type": "Literal", "valueType": SYS + "Boolean", "value": "true" if value else "false"}
    if isinstance(value, int):
        return {"type": "Literal", "valueType": SYS + "Integer", "value": str(value)}
    if isinstance(value, Decimal | float):
        return {"type": "Literal", "valueType": SYS + "Decimal", "value": str(value)}
    return {"type": "Literal", "valueType": SYS + "String", "value": value}


def null() -> dict[str, Any]:
    return {"type": "Null"}


def op(node_type: str, *operands: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    return {"type": node_type, "operand": list(operands), **attrs}


def un(node_type: str, operand: dict[str, Any], **attrs: Any) -> dict[str, Any]:
    return {"type": node_type, "operand": operand, **attrs}


def qty(value: Any, unit: str = "1") -> dict[str, Any]:
    return {"type": "Quantity", "value": value, "unit": unit}


def dt(*parts: int, tz: float | None = None) -> dict[str, Any]:
    names = ("year", "month", "day", "hour", "minute", "second", "millisecond")
    node: dict[str, Any] = {"type": "DateTime"}
    for name, value in zip(names, parts, strict=False):
        node[name] = lit(value)
    if tz is not None:
        node["timezoneOffset"] = lit(Decimal(str(tz)))
    return node


def date(*parts: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "Date"}
    for name, value in zip(("year", "month", "day"), parts, strict=False):
        node[name] = lit(value)
    return node


def time(*parts: int) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "Time"}
    for name, value in zip(("hour", "minute", "second", "millisecond"), parts, strict=False):
        node[name] = lit(value)
    return node


def interval(
    low: dict[str, Any] | None, high: dict[str, Any] | None, low_closed: bool = True, high_closed: bool = True
) -> dict[str, Any]:
    return {
        "type": "Interval",
        "low": low or null(),
        "high": high or null(),
        "lowClosed": low_closed,
        "highClosed": high_closed,
    }


def lst(*elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "List", "element": list(elements)}


def tup(**elements: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Tuple", "element": [{"name": k, "value": v} for k, v in elements.items()]}


def code(code_value: str, system: str, display: str | None = None) -> dict[str, Any]:
    elements = [{"name": "code", "value": lit(code_value)}, {"name": "system", "value": lit(system)}]
    if display:
        elements.append({"name": "display", "value": lit(display)})
    return {"type": "Instance", "classType": SYS + "Code", "element": elements}


def concept(*codes: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Instance",
        "classType": SYS + "Concept",
        "element": [{"name": "codes", "value": lst(*codes)}],
    }


def alias(name: str) -> dict[str, Any]:
    return {"type": "AliasRef", "name": name}


def prop(path: str, source: dict[str, Any] | None = None, scope: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "Property", "path": path}
    if scope:
        node["scope"] = scope
    else:
        node["source"] = source
    return node


def query(
    sources: list[tuple[str, dict[str, Any]]],
    where: dict[str, Any] | None = None,
    ret: dict[str, Any] | None = None,
    distinct: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "Query", "source": [{"alias": a, "expression": e} for a, e in sources]}
    if where is not None:
        node["where"] = where
    if ret is not None:
        node["return"] = {"expression": ret}
        if distinct is not None:
            node["return"]["distinct"] = distinct
    node.update(extra)
    return node


def retrieve(data_type: str, **attrs: Any) -> dict[str, Any]:
    return {"type": "Retrieve", "dataType": FHIR + data_type, **attrs}


def library(
    defs: dict[str, dict[str, Any]], name: str = "Test", version: str = "1.0.0", **sections: Any
) -> dict[str, Any]:
    statements = []
    for def_name, expr in defs.items():
        if expr.get("type") == "FunctionDef":
            statements.append({"name": def_name, "context": "Patient", **expr})
        else:
            statements.append(
                {"name": def_name, "context": "Patient", "expression": expr, "locator": "1:1-1:10"}
            )
    lib: dict[str, Any] = {"identifier": {"id": name, "version": version}, "statements": {"def": statements}}
    lib.update(sections)
    return {"library": lib}


def engine_for(
    *libraries: dict[str, Any], valuesets: list[dict[str, Any]] | None = None, native_helpers: bool = True
) -> Engine:
    return Engine(
        LibrarySet(ElmLibrary(lib) for lib in libraries),
        Terminology(valuesets or []),
        native_helpers=native_helpers,
    )


def run(
    expression: dict[str, Any],
    resources: list[dict[str, Any]] | None = None,
    parameters: dict[str, Any] | None = None,
    valuesets: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> Any:
    """Evaluate one expression in a throw-away library."""
    eng = engine_for(library({"X": expression}, **sections), valuesets=valuesets)
    lib = eng.compiler_for("Test", "1.0.0")
    data = InMemoryDataSource(resources or [], require_profile=False)
    return eng.evaluate(lib, ["X"], data, parameters)["X"]
