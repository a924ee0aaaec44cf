"""The element rules of the base R4 StructureDefinitions that the JSON Schema cannot say, on every write.

- **Required elements** (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.min):
  an element with `min` 1 must be present (a primitive is present with its value or with only its
  `_element` extensions, as https://hl7.org/fhir/R4/json.html#primitive allows), in the resource and in
  every complex value, backbone element, contained resource and Bundle entry resource it holds.
- **Choice elements** (https://hl7.org/fhir/R4/formats.html#choice): at most one of `value[x]`'s types.
- **Primitive values** (https://hl7.org/fhir/R4/datatypes.html#primitive): `integer` a whole number in
  32 bits (no fraction: `1.5` and `1.0` are not integers), `positiveInt` at least 1, `unsignedInt` at
  least 0; `date`, `dateTime` and `instant` real calendar dates (no 30 February), within the syntax the
  schema already checks; a Narrative's `div` the XHTML rules (`fhirlead.validation.narrative`: txt-1,
  txt-2, no active content).

Each type's rules are compiled once from the snapshot digest (`fhirlead.definitions.structure`) into a
`Shape`: the checks of its own elements and the shapes of the complex values below it; a value whose
shape checks nothing (a Coding, a Reference) is not walked. The JSON Schema runs first: this module
trusts JSON types and element names.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from fhirlead.definitions import structure
from fhirlead.errors import Issue
from fhirlead.validation.narrative import check_narrative

INT32 = (-(2**31), 2**31 - 1)
Check = Callable[[Any], str | None]  # a primitive value -> what is wrong with it, or None
Rule = Callable[[Any, Callable[[], str]], list[Issue]]  # a primitive value, its location (made on demand) -> issues


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(low: int, what: str) -> Check:
    def check(value: Any) -> str | None:
        if not _whole(value):
            return f"{_shown(value)} is not {what}: a whole number without a fraction or exponent"
        if not low <= value <= INT32[1]:
            return f"{value} is not {what}: it must be between {low} and {INT32[1]}"
        return None
    return check


def _real_date(value: Any) -> str | None:
    """A date's year-month-day (the part before `T`) names a day that exists."""
    if not isinstance(value, str) or len(value) < 10 or (value[8] in "012" and value[5:7] != "02"):
        return None  # a year or year-month (the schema's pattern is enough), or a day every month has
    try:
        year, month, day = int(value[:4]), int(value[5:7]), int(value[8:10])
    except ValueError:
        return None  # the schema reports the syntax
    if 1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]:
        return None
    return f"{value!r} is not a real calendar date"


def _rule(check: Check) -> Rule:
    def rule(value: Any, where: Callable[[], str]) -> list[Issue]:
        problem = check(value)
        if problem is None:
            return []
        location = where()
        return [Issue("value", f"{location}: {problem}", expression=(location,))]
    return rule


def _narrative(value: Any, where: Callable[[], str]) -> list[Issue]:
    return check_narrative(value, where()) if isinstance(value, str) else []


PRIMITIVES: dict[str, Rule] = {
    "integer": _rule(_integer(INT32[0], "an integer")),
    "positiveInt": _rule(_integer(1, "a positiveInt (at least 1)")),
    "unsignedInt": _rule(_integer(0, "an unsignedInt (at least 0)")),
    "date": _rule(_real_date),
    "dateTime": _rule(_real_date),
    "instant": _rule(_real_date),
    "xhtml": _narrative,  # Narrative.div: the XHTML rules (fhirlead.validation.narrative)
}


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, int | float | Decimal) else repr(value)


@dataclass(eq=False)
class Child:
    """One JSON property of a shape: what it holds."""

    type_code: str
    check: Rule | None = None  # a primitive's value rule
    shape: Shape | None = None  # a complex value's rules (None: nothing to check below)
    resource: bool = False  # holds a whole resource (contained, Bundle.entry.resource, ...)
    datatype: str | None = None  # a datatype whose shape is compiled when first needed (`inner`)

    def inner(self) -> Shape | None:
        """The rules below this property, None when there are none (a datatype's, resolved once)."""
        if self.datatype is not None:
            found = shape_of(self.datatype)
            self.shape, self.datatype = (found if found is not None and not found.empty else None), None
        return self.shape


@dataclass(eq=False)
class Shape:
    """The rules of one type or backbone element."""

    name: str  # for messages: "Observation", "Observation.component"
    required: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (element, its JSON names)
    choices: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)  # (value[x], JSON names)
    children: dict[str, Child] = field(default_factory=dict)
    empty: bool = True  # nothing to check here or below

    def settle(self) -> None:
        """Drop the children with nothing to check; `empty` when nothing is left."""
        self.children = {k: c for k, c in self.children.items() if c.check or c.resource or c.datatype
                         or (c.shape is not None and not c.shape.empty)}
        self.empty = not (self.required or self.choices or self.children)


@cache
def shape_of(type_name: str) -> Shape | None:
    """The compiled rules of a resource or complex datatype (None for an unknown or primitive type)."""
    definition = structure().get(type_name)
    if definition is None or definition["kind"] == "primitive-type":
        return None
    return _Builder(type_name, definition["elements"]).build("")


class _Builder:
    def __init__(self, type_name: str, paths: dict[str, list[Any]]) -> None:
        self.type_name, self.paths = type_name, paths
        self.built: dict[str, Shape] = {}

    def build(self, prefix: str) -> Shape:
        """The shape of the element at `prefix` ("" for the type itself); recursive backbones are built once."""
        if prefix in self.built:
            return self.built[prefix]
        shape = self.built[prefix] = Shape(f"{self.type_name}.{prefix}" if prefix else self.type_name)
        depth = prefix.count(".") + 1 if prefix else 0
        for path, (types, minimum, _maximum, _summary) in self.paths.items():
            if path.count(".") != depth or (prefix and not path.startswith(prefix + ".")):
                continue
            name = path.rsplit(".", 1)[-1]
            if name.endswith("[x]"):
                base = name[:-3]
                keys = tuple(base + t[:1].upper() + t[1:] for t in types)
                shape.choices.append((name, keys))
                for key, type_code in zip(keys, types, strict=True):
                    shape.children[key] = self._child(type_code, path)
            else:
                keys = (name,)
                shape.children[name] = self._child(types[0] if types else "", path)
            if minimum >= 1:
                shape.required.append((name, keys))
        shape.settle()
        return shape

    def _child(self, type_code: str, path: str) -> Child:
        if type_code in PRIMITIVES:
            return Child(type_code, check=PRIMITIVES[type_code])
        if type_code in ("BackboneElement", "Element") and any(p.startswith(path + ".") for p in self.paths):
            return Child(type_code, shape=self.build(path))
        if type_code.startswith("#"):  # contentReference: the rules of another element of this type
            return Child(type_code, shape=self.build(type_code.split(".", 1)[1]))
        if type_code == "Resource":
            return Child(type_code, resource=True)
        # compiled when first needed: datatypes refer to each other in cycles (Extension holds every
        # type, Identifier a Reference, Reference an Identifier)
        return Child(type_code, datatype=type_code)


def check(resource: dict[str, Any]) -> list[Issue]:
    """Every element rule `resource` breaks, each with its FHIRPath location."""
    issues: list[Issue] = []
    type_name = str(resource.get("resourceType"))
    shape = shape_of(type_name)
    if shape is not None:
        _walk(resource, shape, (type_name,), issues)
    return issues


Trail = tuple[Any, ...]  # a location as nested pairs: (parent trail, element name or list index); joined on demand


def _location(trail: Trail) -> str:
    parts: list[str] = []
    while len(trail) == 2:
        trail, part = trail
        parts.append(f"[{part}]" if type(part) is int else f".{part}")
    parts.append(trail[0])
    return "".join(reversed(parts))


def _walk(node: dict[str, Any], shape: Shape, trail: Trail, issues: list[Issue]) -> None:
    """The hot path: a location string is only made for an issue."""
    for name, keys in shape.required:
        if not any(key in node or f"_{key}" in node for key in keys):
            where = _location((trail, name))
            issues.append(Issue("required", f"{where} is required (at least 1 in the base R4 {shape.name}) "
                                            "but missing", expression=(where,)))
    for name, keys in shape.choices:
        given = [key for key in keys if key in node or f"_{key}" in node]
        if len(given) > 1:
            where = _location((trail, given[1]))
            issues.append(Issue("structure", f"{_location((trail, name))} takes one type only, but "
                                             f"{', '.join(given)} are given", expression=(where,)))
    children = shape.children
    for key, value in node.items():
        child = children.get(key)
        if child is None:
            continue
        here = (trail, key)
        items = enumerate(value) if type(value) is list else ((None, value),)
        if child.check is not None:
            for index, item in items:
                if item is not None:
                    at = here if index is None else (here, index)
                    issues += child.check(item, lambda at=at: _location(at))
            continue
        inner = None if child.resource else child.inner()
        if inner is None and not child.resource:
            continue
        for index, item in items:
            if type(item) is not dict:
                continue
            at = here if index is None else (here, index)
            if child.resource:
                contained = shape_of(str(item.get("resourceType")))
                if contained is not None and not contained.empty:
                    _walk(item, contained, at, issues)
            elif inner is not None:
                _walk(item, inner, at, issues)
