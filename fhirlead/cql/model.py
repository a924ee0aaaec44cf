"""The FHIR R4 data model as CQL sees it: typed access to raw FHIR JSON.

Resources stay the plain dicts they were parsed into (the data layer never copies them). Every other
FHIR value is wrapped on access in a `Node` that remembers its FHIR type, because CQL needs that type:
`Observation.value` may be a Quantity or a CodeableConcept (`is`/`as` tests), and the `.value` of a
`date` becomes a CQL Date while the `.value` of a `dateTime` becomes a CQL DateTime. Element types come
from the R4 definitions shipped with fhirlead (`fhirlead.definitions.structure()`), indexed once.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from itertools import zip_longest
from typing import Any

from fhirlead.cql.datetime import parse_date, parse_datetime, parse_time
from fhirlead.definitions import structure

FHIR_NS = "http://hl7.org/fhir"
SYSTEM_NS = "urn:hl7-org:elm-types:r1"


class Node:
    """A FHIR element value with its type. `raw` is the JSON value; `ext` a primitive's `_name` object."""

    __slots__ = ("ext", "raw", "t")

    def __init__(self, t: str, raw: Any, ext: Any = None) -> None:
        self.t = t
        self.raw = raw
        self.ext = ext

    def __repr__(self) -> str:
        return f"Node({self.t}, {self.raw!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Node) and self.t == other.t and self.raw == other.raw and self.ext == other.ext
        )

    def __hash__(self) -> int:
        return hash(("Node", self.t))


class Element:
    """What the model knows about one element of a type."""

    __slots__ = ("choices", "is_list", "name", "type")

    def __init__(self, name: str, type: str | None, is_list: bool, choices: tuple[tuple[str, str], ...]):
        self.name = name
        self.type = type  # None for choice elements
        self.is_list = is_list
        self.choices = choices  # ((json key, type), ...) for choice elements


@cache
def _types() -> dict[str, dict[str, Any]]:
    return structure()


@cache
def primitive_types() -> frozenset[str]:
    return frozenset(n for n, sd in _types().items() if sd["kind"] == "primitive-type")


@cache
def resource_types() -> frozenset[str]:
    return frozenset(n for n, sd in _types().items() if sd["kind"] == "resource")


def _split(type_name: str) -> tuple[str, str]:
    """'Encounter.hospitalization' -> ('Encounter', 'hospitalization.'); 'Period' -> ('Period', '')."""
    root, _, rest = type_name.partition(".")
    return root, (rest + "." if rest else "")


_element_cache: dict[tuple[str, str], Element | None] = {}


def element(type_name: str, name: str) -> Element | None:
    """Element `name` of `type_name`, or None when the type has no such element."""
    key = (type_name, name)
    try:
        return _element_cache[key]
    except KeyError:
        pass
    result = _lookup(type_name, name)
    _element_cache[key] = result
    return result


def _lookup(type_name: str, name: str) -> Element | None:
    root, prefix = _split(type_name)
    sd = _types().get(root)
    if sd is None:
        return None
    elements = sd["elements"]
    path = prefix + name
    info = elements.get(path)
    if info is not None:
        types, _min, card_max, _summary = info
        is_list = card_max != "1" and card_max != "0"
        etype = types[0]
        if etype in ("BackboneElement", "Element") and any(k.startswith(path + ".") for k in elements):
            etype = f"{root}.{path}"
        elif etype.startswith("#"):
            etype = etype[1:]
        return Element(name, etype, is_list, ())
    info = elements.get(path + "[x]")
    if info is not None:
        types, _min, card_max, _summary = info
        choices = tuple((name + t[0].upper() + t[1:], t) for t in types)
        return Element(name, None, card_max not in ("1", "0"), choices)
    return None


@cache
def ancestors(type_name: str) -> frozenset[str]:
    """The type and every FHIR type it derives from (e.g. Age -> Quantity -> Element)."""
    out = {type_name}
    root = type_name.split(".")[0]
    if root != type_name:
        out.add("BackboneElement")
        out.add("Element")
        return frozenset(out)
    sd = _types().get(type_name)
    while sd is not None and sd.get("base"):
        base = sd["base"]
        out.add(base)
        sd = _types().get(base)
    return frozenset(out)


def fhir_type_of(value: Any) -> str | None:
    """The FHIR type name of a model value (resource dict or Node), else None."""
    if type(value) is dict:
        return value.get("resourceType")
    if type(value) is Node:
        return value.t
    return None


def is_fhir_type(value: Any, type_name: str) -> bool:
    """`value is FHIR.<type_name>` including derivation (a `code` is a `string`, an `Age` a `Quantity`)."""
    t = fhir_type_of(value)
    if t is None:
        return False
    return t == type_name or type_name in ancestors(t)


def wrap(type_name: str, raw: Any, ext: Any = None) -> Any:
    """Typed view of a JSON value: resources stay dicts; everything else becomes a Node."""
    if type(raw) is dict and "resourceType" in raw:
        return raw
    return Node(type_name, raw, ext)


def get(obj: Any, name: str) -> Any:
    """Element `name` of a resource dict or Node (None when absent or unknown)."""
    if type(obj) is dict:
        tname = obj.get("resourceType")
        raw = obj
        if tname is None:
            return None
    else:
        tname = obj.t
        raw = obj.raw
        if type(raw) is not dict:
            return _primitive_meta(obj, name)
    el = element(tname, name)
    if el is None:
        return None
    if el.type is None:
        for key, t in el.choices:
            v = raw.get(key)
            x = raw.get("_" + key)
            if v is not None or x is not None:
                return _wrap_value(t, v, x, el.is_list)
        return None
    v = raw.get(name)
    x = raw.get("_" + name)
    if v is None and x is None:
        return None
    return _wrap_value(el.type, v, x, el.is_list)


def _wrap_value(t: str, v: Any, x: Any, is_list: bool) -> Any:
    if is_list:
        if type(v) is not list:
            v = [] if v is None else [v]
        if x is None:
            return [wrap(t, item) for item in v]
        if type(x) is not list:
            x = [x]
        return [wrap(t, item, e) for item, e in zip_longest(v, x)]
    return wrap(t, v, x)


def _primitive_meta(node: Node, name: str) -> Any:
    """`id` and `extension` of a primitive (from its `_name` object)."""
    ext = node.ext
    if name == "value":
        raise AssertionError("primitive value is read through primitive_value()")
    if ext is None:
        return None
    if name == "id":
        v = ext.get("id")
        return None if v is None else Node("string", v)
    if name == "extension":
        items = ext.get("extension")
        return None if items is None else [Node("Extension", e) for e in items]
    return None


def primitive_value(node: Any, tz: int) -> Any:
    """The CQL System value of a FHIR primitive (`.value`), converted by its FHIR type."""
    if type(node) is not Node:
        return None
    raw = node.raw
    if raw is None:
        return None
    t = node.t
    conv = _CONVERTERS.get(t)
    if conv is None:
        if type(raw) is dict:
            return None
        return raw
    return conv(raw, tz)


def _decimal(raw: Any, _tz: int) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float):
        return Decimal(repr(raw))
    try:
        return Decimal(raw)
    except (ArithmeticError, ValueError, TypeError):
        return None


def _integer(raw: Any, _tz: int) -> int | None:
    return raw if type(raw) is int else None


def _boolean(raw: Any, _tz: int) -> bool | None:
    return raw if type(raw) is bool else None


_CONVERTERS = {
    "boolean": _boolean,
    "integer": _integer,
    "positiveInt": _integer,
    "unsignedInt": _integer,
    "decimal": _decimal,
    "date": lambda raw, tz: parse_date(raw) if type(raw) is str else None,
    "dateTime": lambda raw, tz: parse_datetime(raw, tz) if type(raw) is str else None,
    "instant": lambda raw, tz: parse_datetime(raw, tz) if type(raw) is str else None,
    "time": lambda raw, tz: parse_time(raw) if type(raw) is str else None,
}


def strip_namespace(qualified: str) -> tuple[str, str]:
    """'{http://hl7.org/fhir}Period' -> ('http://hl7.org/fhir', 'Period')."""
    if qualified.startswith("{"):
        ns, _, name = qualified[1:].partition("}")
        return ns, name
    if "." in qualified:
        model, _, name = qualified.partition(".")
        return {"FHIR": FHIR_NS, "System": SYSTEM_NS, "QICore": FHIR_NS}.get(model, model), name
    return "", qualified
