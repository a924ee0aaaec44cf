"""The element rules of the base R4 StructureDefinitions that the JSON Schema cannot say, on every write.

- **Required elements** (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.min):
  an element with `min` 1 must be present (a primitive is present with its value or with only its
  `_element` extensions, as https://hl7.org/fhir/R4/json.html#primitive allows), in the resource and in
  every complex value, backbone element, contained resource and Bundle entry resource it holds.
- **Choice elements** (https://hl7.org/fhir/R4/formats.html#choice): at most one of `value[x]`'s types.
- **Primitive values** (https://hl7.org/fhir/R4/datatypes.html#primitive): `integer` a whole number in
  32 bits (no fraction: `1.5` and `1.0` are not integers), `positiveInt` at least 1, `unsignedInt` at
  least 0; `date`, `dateTime` and `instant` real calendar dates (no 30 February), within the syntax the
  schema already checks; `base64Binary` valid base64 (RFC 4648: the alphabet, groups of four, `=` only as
  the final padding; whitespace between groups is allowed, as the R4 regex `(\\s*([0-9a-zA-Z\\+/=]){4}\\s*)+`
  says); a Narrative's `div` the XHTML rules (`fhirlead.validation.narrative`: txt-1, txt-2, no active
  content). (Empty strings: schema.py; strings over 1 MB and id-only elements: rules.py.)
- **Attachment.size** (https://hl7.org/fhir/R4/datatypes-definitions.html#Attachment.size): "the number
  of bytes of data that make up this attachment (before base64 encoding)": with `data` present, it is
  the number of bytes `data` decodes to.
- **Bundle.entry.fullUrl** (https://hl7.org/fhir/R4/bundle-definitions.html#Bundle.entry.fullUrl,
  https://hl7.org/fhir/R4/bundle.html#bundle-unique), on every Bundle validated as a resource (a stored
  document, message, collection, ..., and `$validate`; a batch or transaction posted to the base is read
  by fhirlead/bundles, which validates each entry's resource and never the Bundle as a whole):
  - "The Absolute URL for the resource": `urn:uuid:`, `urn:oid:` or another URI with a scheme
    (`Patient/1` is refused);
  - "The fullUrl SHALL NOT disagree with the id in the resource", which the element's comment makes
    precise: "the fullURL might be a URN or an absolute URL that does not end with the logical id of
    the resource (Resource.id). However, [...] if the fullUrl does look like a RESTful server URL (e.g.
    meets the regex [https://hl7.org/fhir/R4/references.html#regex]), then the 'id' portion of the
    fullUrl SHALL end with the Resource.id": a fullUrl of the form `http(s)://[base]/[Type]/[id]` ends
    with the entry resource's own `/[resourceType]/[id]`, version-independent (no `/_history/..`), and
    needs a resource that has an id (a transaction or batch POST entry aside: "fullUrl can be empty on
    a POST (although it does not need to when specifying a temporary id for reference in the bundle)");
    other URLs (`https://example.org/people/p1`) and URNs are the resource's identity as they are;
  - "The fullUrl element SHALL have a value except [on a POST, and for results of operations]": every
    entry with a resource of a `document` or `message` Bundle has one.
  Reported on the entry's `fullUrl`.

Each type's rules are compiled once from the snapshot digest (`fhirlead.definitions.structure`) into a
`Shape`: the checks of its own elements and the shapes of the complex values below it; a value whose
shape checks nothing (a Coding, a Reference) is not walked. The JSON Schema runs first: this module
trusts JSON types and element names.
"""

from __future__ import annotations

import binascii
import calendar
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

from fhirlead.definitions import resource_types, structure
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


def _base64_bytes(value: str) -> bytes | None:
    """What a base64Binary value decodes to (RFC 4648, padding required, whitespace between groups
    allowed), None when it is not base64. Decoding runs in C (~1 GB/s): no regex over large content."""
    try:
        return binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        pass
    stripped = "".join(value.split())
    if len(stripped) == len(value):
        return None
    try:
        return binascii.a2b_base64(stripped, strict_mode=True)
    except binascii.Error:
        return None


def _base64(value: Any) -> str | None:
    if not isinstance(value, str) or _base64_bytes(value) is not None:
        return None
    shown = repr(value) if len(value) <= 40 else f"{value[:40]!r}... ({len(value)} characters)"
    return (f"{shown} is not valid base64 (RFC 4648: groups of four of A-Z a-z 0-9 + /, "
            "'=' only as the final padding)")


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
    "base64Binary": _rule(_base64),
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
    special: Special | None = None  # a rule of the whole object (Attachment.size, Bundle.entry.fullUrl)
    empty: bool = True  # nothing to check here or below

    def settle(self) -> None:
        """Drop the children with nothing to check; `empty` when nothing is left."""
        self.children = {k: c for k, c in self.children.items() if c.check or c.resource or c.datatype
                         or (c.shape is not None and not c.shape.empty)}
        self.empty = not (self.required or self.choices or self.children or self.special)


@cache
def shape_of(type_name: str) -> Shape | None:
    """The compiled rules of a resource or complex datatype (None for an unknown or primitive type)."""
    definition = structure().get(type_name)
    if definition is None or definition["kind"] == "primitive-type":
        return None
    shape = _Builder(type_name, definition["elements"]).build("")
    special = SPECIALS.get(type_name)
    if special is not None:
        shape.special = special
        shape.settle()
    return shape


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


_ELEMENT_OF_PRIMITIVE = {"id": [["string"]], "extension": [["Extension"]]}  # a `_x` object's elements


def type_at(resource: dict[str, Any], path: list[str | int]) -> str | None:
    """The R4 type code of the value at the JSON `path` in `resource` (`['name', 0, 'family']` ->
    `string`, `['_birthDate', 'id']` -> `string`), by its definitions; None when the path leaves them.
    For the rare checks that need a type outside the walk (rules.py: strings over 1 MB)."""
    node: Any = resource
    owner: Any = resource.get("resourceType")
    prefix, element, code = "", "", None
    for step in path:
        if type(step) is int:
            node = node[step] if isinstance(node, list) and step < len(node) else None
            continue
        if code is not None:  # step into the value of the element just passed
            if code == "Resource":
                owner, prefix = (node.get("resourceType") if isinstance(node, dict) else None), ""
            elif code == "_element":
                owner, prefix = code, ""
            elif code.startswith("#"):  # contentReference: the element it names
                owner, _, target = code[1:].partition(".")
                prefix = target + "."
            elif code in ("BackboneElement", "Element"):
                prefix = element + "."
            else:
                owner, prefix = code, ""
        node = node.get(step) if isinstance(node, dict) else None
        companion = step.startswith("_")
        name = step[1:] if companion else step
        if owner == "_element":
            elements: dict[str, list[Any]] = _ELEMENT_OF_PRIMITIVE
        else:
            definition = structure().get(owner) if isinstance(owner, str) else None
            if definition is None:
                return None
            elements = definition["elements"]
        element = prefix + name
        if element in elements and not element.endswith("[x]"):
            types = elements[element][0]
            code = types[0] if types else None
        else:
            code = None
            for candidate, (types, *_rest) in elements.items():
                if candidate.endswith("[x]") and candidate.startswith(prefix) and "." not in candidate[len(prefix):]:
                    base = candidate[len(prefix):-3]
                    for type_code in types:
                        if name == base + type_code[:1].upper() + type_code[1:]:
                            element, code = candidate, type_code
        if code is None:
            return None
        if companion:
            code = "_element"
    return code


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
    if shape.special is not None:
        issues += shape.special(node, trail)
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


# Rules of a whole object of one type (Shape.special): they read several of its elements at once.


def _attachment(node: dict[str, Any], trail: Trail) -> list[Issue]:
    """Attachment.size, when `data` is present: the number of bytes `data` decodes to (R4
    datatypes-definitions.html#Attachment.size: "The number of bytes of data that make up this
    attachment (before base64 encoding, if that is done)"). Data that is not base64 is reported by the
    base64Binary rule."""
    size, data = node.get("size"), node.get("data")
    if not (_whole(size) and isinstance(data, str)):
        return []
    decoded = _base64_bytes(data)
    if decoded is None or len(decoded) == size:
        return []
    where = _location((trail, "size"))
    return [Issue("value", f"{where}: size {size} does not match the data, which holds {len(decoded)} bytes "
                           "(Attachment.size is the number of bytes before base64 encoding)", expression=(where,))]


# `scheme:` (RFC 3986 section 3.1): what makes a URI absolute
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# an absolute RESTful resource URL (https://hl7.org/fhir/R4/references.html#regex), the type checked apart
_RESTFUL = re.compile(r"(?:https?)://(?:[A-Za-z0-9\-\\.:%$]*/)+([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})"
                      r"(/_history/[A-Za-z0-9\-.]{1,64})?")
_FULL_URL_NEEDED = frozenset({"document", "message"})
_REQUESTS = frozenset({"transaction", "batch"})


def _bundle_entries(bundle: dict[str, Any], trail: Trail) -> list[Issue]:
    """Bundle.entry.fullUrl (module docstring): absolute, in agreement with the entry resource's type
    and id, and present in a document or message Bundle's entries."""
    entries = bundle.get("entry")
    if type(entries) is not list:
        return []
    kind = bundle.get("type")
    issues: list[Issue] = []
    for position, entry in enumerate(entries):
        if type(entry) is not dict:
            continue
        resource = entry.get("resource")
        full_url = entry.get("fullUrl")
        if type(resource) is not dict:
            resource = None
        if not isinstance(full_url, str):
            if kind in _FULL_URL_NEEDED and resource is not None:
                where = _location((((trail, "entry"), position), "fullUrl"))
                issues.append(Issue("required", f"{where} is required: every entry with a resource in a {kind} "
                                                "Bundle has a fullUrl, the identity of its resource (R4 "
                                                "Bundle.entry.fullUrl)", expression=(where,)))
            continue
        problem = _full_url_problem(full_url, resource, entry, kind)
        if problem is not None:
            where = _location((((trail, "entry"), position), "fullUrl"))
            issues.append(Issue("invalid", f"{where}: {problem}", expression=(where,)))
    return issues


def _full_url_problem(full_url: str, resource: dict[str, Any] | None, entry: dict[str, Any],
                      kind: Any) -> str | None:
    if not _ABSOLUTE.match(full_url):
        return (f"the fullUrl {full_url!r} must be an absolute URL (urn:uuid:, urn:oid: or a URI with a scheme, "
                "such as https://example.org/fhir/Patient/1)")
    named = _RESTFUL.fullmatch(full_url)
    if resource is None or named is None or named.group(1) not in resource_types():
        return None  # a URN, or a URL that is no RESTful URL: the resource's identity as it is
    type_name, identifier = resource.get("resourceType"), resource.get("id")
    restful = f"the fullUrl {full_url!r} looks like a RESTful server URL ([base]/[type]/[id])"
    if isinstance(identifier, str):
        if named.group(1) == type_name and named.group(2) == identifier and named.group(3) is None:
            return None
        versioned = " and be version-independent (no /_history/)" if named.group(3) else ""
        return (f"{restful}, so it must end with /{type_name}/{identifier}, the type and id of its resource"
                f"{versioned}")
    request = entry.get("request")
    if kind in _REQUESTS and isinstance(request, dict) and request.get("method") == "POST":
        return None  # a create: the server assigns the id the fullUrl stands for until then
    return f"{restful}, but the resource has no id (the fullUrl names {named.group(1)}/{named.group(2)})"


Special = Callable[[dict[str, Any], Trail], list[Issue]]
SPECIALS: dict[str, Special] = {"Attachment": _attachment, "Bundle": _bundle_entries}
