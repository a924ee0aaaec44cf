"""Structured values: property access (`Property`), Tuple and Instance construction.

Property paths over FHIR data go through `fhirlead.cql.model` (typed views of raw JSON); paths over
System values (Interval.low, Quantity.unit, Code.system, Tuple elements...) are read directly. A path
applied to a list maps over the list and flattens, as FHIR path traversal does.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirlead.cql import model
from fhirlead.cql.clinical import Code, Concept, ValueSet
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import FHIR_NS, SYSTEM_NS, Node, primitive_types, strip_namespace
from fhirlead.cql.quantity import Quantity, Ratio
from fhirlead.cql.tuples import Tuple

Getter = Callable[[Any, Any], Any]

_SYSTEM_PROPERTIES: dict[type, dict[str, Callable[[Any], Any]]] = {
    Interval: {
        "low": lambda v: v.low,
        "high": lambda v: v.high,
        "lowClosed": lambda v: v.low_closed,
        "highClosed": lambda v: v.high_closed,
    },
    Quantity: {"value": lambda v: v.value, "unit": lambda v: v.unit},
    Code: {
        "code": lambda v: v.code,
        "system": lambda v: v.system,
        "version": lambda v: v.version,
        "display": lambda v: v.display,
    },
    Concept: {"codes": lambda v: v.codes, "display": lambda v: v.display},
    Ratio: {"numerator": lambda v: v.numerator, "denominator": lambda v: v.denominator},
    ValueSet: {"id": lambda v: v.id, "version": lambda v: v.version, "name": lambda v: v.name},
}


def _system_property(obj: Any, name: str) -> Any:
    props = _SYSTEM_PROPERTIES.get(type(obj))
    if props is not None and name in props:
        return props[name](obj)
    if type(obj) in (Date, DateTime, Time):
        return None
    raise CqlEvaluationError(f"{type(obj).__name__} has no property {name!r}")


def getter_for(name: str) -> Getter:
    """A function (value, ctx) -> value of property `name`."""
    get = model.get
    primitive_value = model.primitive_value
    is_value = name == "value"

    def g(obj: Any, ctx: Any) -> Any:
        if obj is None:
            return None
        t = type(obj)
        if t is dict:
            return get(obj, name)
        if t is Node:
            if is_value and type(obj.raw) is not dict and obj.t in _PRIMITIVES:
                return primitive_value(obj, ctx.tz)
            return get(obj, name)
        if t is Tuple:
            return obj.get(name)
        if t is list:
            out: list[Any] = []
            for item in obj:
                v = g(item, ctx)
                if v is None:
                    continue
                if type(v) is list:
                    out.extend(v)
                else:
                    out.append(v)
            return out
        return _system_property(obj, name)

    return g


_PRIMITIVES = primitive_types()


@handles("Property")
def property_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    parts = node["path"].split(".")
    scope = node.get("scope")
    if scope is not None:

        def src(ctx: Any) -> Any:
            return ctx.frame[scope]
    elif node.get("source") is not None:
        src = lc.compile(node["source"])
    else:
        # Translators 3.x write such a Property for the code of a referenced Medication in an expanded
        # retrieve (`[MedicationRequest: "VS"]`). It has no target, so, as in the reference engines
        # (Java and JavaScript), its value is null.
        return lambda ctx: None
    getters = [getter_for(p) for p in parts]
    if len(getters) == 1:
        (g,) = getters
        return lambda ctx: g(src(ctx), ctx)
    if len(getters) == 2:
        g1, g2 = getters
        return lambda ctx: g2(g1(src(ctx), ctx), ctx)

    def chain(ctx: Any) -> Any:
        v = src(ctx)
        for g in getters:
            v = g(v, ctx)
            if v is None:
                return None
        return v

    return chain


@handles("Tuple")
def tuple_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    elements = [(e["name"], lc.compile(e["value"])) for e in node.get("element", ())]
    return lambda ctx: Tuple({name: fn(ctx) for name, fn in elements})


def _raw(value: Any) -> Any:
    """JSON form of a value placed into a FHIR structure."""
    if type(value) is Node:
        return value.raw
    if type(value) is list:
        return [_raw(v) for v in value]
    if type(value) is Decimal:
        return float(value)
    if type(value) in (Date, DateTime, Time):
        return value.iso()
    return value


@handles("Instance")
def instance(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    ns, name = strip_namespace(node["classType"])
    elements = [(e["name"], lc.compile(e["value"])) for e in node.get("element", ())]
    if ns == SYSTEM_NS:
        if name == "Quantity":

            def make_quantity(ctx: Any) -> Quantity | None:
                vals = {k: fn(ctx) for k, fn in elements}
                value = vals.get("value")
                return None if value is None else Quantity(value, vals.get("unit") or "1")

            return make_quantity
        if name == "Code":
            return lambda ctx: Code(**{k: fn(ctx) for k, fn in elements})
        if name == "Concept":

            def make_concept(ctx: Any) -> Concept:
                vals = {k: fn(ctx) for k, fn in elements}
                return Concept(vals.get("codes"), vals.get("display"))

            return make_concept
        if name == "Ratio":
            return lambda ctx: Ratio(**{k: fn(ctx) for k, fn in elements})
        if name == "ValueSet":

            def make_valueset(ctx: Any) -> ValueSet:
                vals = {k: fn(ctx) for k, fn in elements}
                return lc.engine.valueset(vals["id"], vals.get("version"))

            return make_valueset
        if name == "Tuple":
            return lambda ctx: Tuple({k: fn(ctx) for k, fn in elements})
        raise lc.unsupported(node, f"instance of System.{name}")
    if ns == FHIR_NS:
        if name in _PRIMITIVES:
            value_fn = dict(elements).get("value", lambda ctx: None)
            return lambda ctx: Node(name, _raw(value_fn(ctx)))

        def make_fhir(ctx: Any) -> Node:
            raw = {}
            for k, fn in elements:
                v = fn(ctx)
                if v is not None:
                    raw[k] = _raw(v)
            return Node(name, raw)

        return make_fhir
    raise lc.unsupported(node, f"instance of {node['classType']}")
