"""The invariants (FHIRPath constraints) of the base R4 resources and datatypes, on every write.

https://hl7.org/fhir/R4/conformance-rules.html#constraints: every resource must meet the constraints its
StructureDefinitions declare (obs-6, per-1, bdl-7, dom-3, ...). `Invariants` is built once per process;
`Invariants.check(resource)` returns the violations as `Issue`s of code `invariant`: severity `error`
for error constraints, `warning` for warning ones (the caller decides what blocks a write). Each issue's
`expression` is the FHIRPath location of the element that breaks the rule, with indexes
(`Observation.component[1]`, `Bundle.entry[3].request`, `Observation.value.ofType(Quantity)`), and its
diagnostics say `"<key>: <the rule in the spec's words> (<location>)"`.

**Data.** `fhirlead/definitions/constraints.json` (built by tools/build_definitions.py from the R4 core
package) lists each constraint once, under the type and element that define it; `elements.json` gives
the types and cardinalities. A type's plan also holds its base types' constraints (Age gets Quantity's
qty-3), and elements the base definitions profile as `SimpleQuantity` get sqty-1.

**Where constraints run.** Each constraint runs on every instance of its element that is present (an
element-level constraint never runs where its element is absent), with `%resource` the resource that
holds the node (a contained resource, or a Bundle entry's resource, is its own `%resource`) and
`%rootResource` the resource that contains it (https://hl7.org/fhir/R4/fhirpath.html#variables).

**Speed (the guard).** The walk is typed and pruned: a plan per type or backbone element lists its
constraints and only the children whose subtree holds a constraint somewhere (a Coding, a
CodeableConcept, an Identifier without period or assigner, a HumanName without period are never
visited; a Reference or a Period is), so an element-level constraint only runs where its element is.
Extensions can sit on any element, so ext-1 is checked by one untyped pass over the resource that looks
at `extension`/`modifierExtension` arrays and sends complex extension values (a Reference, a Period,
...) into the typed walk; that pass is skipped when the resource's compact JSON has no extension key
at all. Measured after warm-up (bench: see the helper's report): a Synthea Observation ~10 us, Encounter
~8 us, Patient ~21 us, ExplanationOfBenefit ~38 us, a 49-entry transaction Bundle ~0.6 ms.

**Evaluation.** Hand-written checks for the constraints that are everywhere, slow, or wrong in R4 or in
fhirpathpy (`NATIVE` says which and why). Every other expression is compiled, once, on first use, from
fhirpathpy's parse tree into plain Python closures (`_Compiler`: paths typed from the definitions,
choice elements and `_x` primitive extensions; `exists empty count not hasValue where all select first
tail isDistinct intersect combine iif matches startsWith contains toInteger toString descendants is as
ofType memberOf(resource-types) trace`; the three-valued `and or xor implies`; `= != < <= > >=` on
strings, numbers, booleans, FHIR dates (FHIRPath's precision rules, `compare_dates`) and quantities in
the same unit; `in contains | + - &`; `%resource %rootResource %context %ucum`). That covers all but
three R4 expressions (con-3, sdf-8a, sdf-9: `children()`, `replaceMatches()`, a CodeableConcept
compared with a string), which fhirpathpy evaluates (`compile(expr, models["r4"])`, once), as it does
the rare values the compiled code will not decide (quantities in different units: `Fallback`).
fhirpathpy costs ~30 us a call where a compiled check costs ~1 us, has no `hasValue()`, cannot compare
two Quantities, and prints `trace()` output unless given a callback (it always is, here). On every
constraint evaluation over the R4 examples, compiled and fhirpathpy results agree wherever fhirpathpy
gives one, except que-7 (`answer is Boolean`: fhirpathpy says false for a FHIR boolean).

**Results.** A constraint is violated when its expression evaluates to `false`. An empty result (unknown,
e.g. comparing `2020` with `2020-05`, whose order FHIRPath leaves undefined) is not reported, nor is a
constraint that cannot be evaluated (an exception, logged at debug level): an invariant must not refuse
a resource it cannot decide on.

Not checked here (`NOT_CHECKED` says why for each): ele-1 (the JSON rules, checked before), txt-1/txt-2
(fhirlead/validation/narrative.py parses the XHTML once for both), cid-0 (a published defect), and the
best-practice constraints (dom-6, con-3), which `Invariants(best_practice=True)` reports as warnings.
Some published expressions are corrected as later releases did (`CORRECTIONS`: opd-3, the name rules,
eld-19, eld-20).

**Checked against the R4 examples.** All 5,306 resources of the R4 core package (hl7.fhir.r4.core /
hl7.fhir.r4.examples 4.0.1, the same files) were checked: 5 have errors, all in the examples themselves:
in Bundle-dataelements 12 entries repeat an earlier entry's fullUrl (bdl-7), and the logical models
StructureDefinition-Definition, -Event, -FiveWs and -Request are neither abstract nor have a
baseDefinition (sdf-4).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import constraints, resource_types, structure
from fhirlead.errors import Issue

log = logging.getLogger(__name__)

# The constraints checked by hand, and why.
NATIVE: dict[str, str] = {
    "ext-1": "on every extension, anywhere: one untyped pass over the resource (Invariants._scan)",
    "ref-1": "on every Reference; R4's expression calls trace() and fails '#' (see _Ref1)",
    "per-1": "on every Period; fhirpathpy orders dates of different precisions (see _Per1)",
    "dom-2": "on every contained resource (Invariants._contained)",
    "dom-3": "R4's expression calls trace() and reads every descendant (Invariants._dom_3)",
    "dom-4": "on every contained resource (Invariants._contained)",
    "dom-5": "on every contained resource (Invariants._contained)",
    "bdl-3": "re-reads %resource.type per entry; reported on the entry (see _BundleEntries)",
    "bdl-4": "re-reads %resource.type per entry; reported on the entry (see _BundleEntries)",
    "bdl-7": "compares every entry with every other; reported on the entry (see _Bdl7)",
    "ctm-1": "needs resolve(), which fhirpathpy lacks (see _Ctm1)",
}

# The constraints not checked here, and why.
NOT_CHECKED: dict[str, str] = {
    "ele-1": (
        "'All FHIR elements must have a @value or children': in FHIR JSON that is no empty object, empty "
        "array, null or empty string, which fhirlead/validation/rules.py (check_json_shape) and the JSON "
        "Schema (strings are at least one character) already refuse, with the path"
    ),
    "txt-1": (
        "htmlChecks() (only the allowed XHTML elements and attributes) is not FHIRPath fhirpathpy has; "
        "fhirlead/validation/narrative.py checks the rule on the parsed XHTML"
    ),
    "txt-2": (
        "htmlChecks() (some non-whitespace content) is not FHIRPath fhirpathpy has; "
        "fhirlead/validation/narrative.py checks the rule on the parsed XHTML"
    ),
    "cid-0": (
        "published R4 defect: `name.matches(...)` on ChargeItemDefinition, which has no `name` element in R4 "
        "(the rule was copied from the other canonical resources)"
    ),
}

# Published R4 expressions that say less than their rule, corrected as later releases and the Firely
# validator do; the key, and what the check runs instead:
# - the canonical resources' name rules (adf-0, cpb-0, ..., vsd-0: "Name should be usable as an identifier
#   ...") and eld-19/eld-20 (ElementDefinition.path syntax): `matches()` finds its pattern anywhere in
#   the string (FHIRPath), so `name.matches('[A-Z]...')` held for any name holding a capital; the rules
#   are about the whole string, so the patterns are anchored.
# - opd-3 (OperationDefinition.parameter): "A targetProfile can only be specified for parameters of type
#   Reference or Canonical" refused the profile of a resource-typed parameter (e.g. DEQM's care-gaps
#   `organizationResource`); R5 allows resource types too.
_NAME_RULE = "name.matches('[A-Z]([A-Za-z0-9_]){0,254}')"
_ANCHORED = frozenset({"eld-19", "eld-20"})
CORRECTIONS: dict[str, tuple[str, str]] = {
    "opd-3": (
        "targetProfile.exists() implies (type = 'Reference' or type = 'canonical')",
        "targetProfile.exists() implies (type = 'Reference' or type = 'canonical' "
        "or type.memberOf('http://hl7.org/fhir/ValueSet/resource-types'))",
    ),
}


def corrected(key: str, expression: str) -> str:
    """The expression the check runs for a published one (see CORRECTIONS)."""
    anchored = key in _ANCHORED or expression == _NAME_RULE
    if anchored and expression.count(".matches('") == 1 and expression.endswith("')"):
        return expression.replace(".matches('", ".matches('^(?:", 1)[:-2] + ")$')"
    found = CORRECTIONS.get(key)
    return found[1] if found and found[0] == expression else expression


SEVERITIES = {"error": "error", "warning": "warning"}
EXTENSION_KEYS = ("extension", "modifierExtension")
UCUM = "http://unitsofmeasure.org"
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
# The FHIR primitives a System type name stands for in `is`/`as` (`answer is Boolean`).
_SYSTEM_TYPES = {
    "Boolean": {"boolean"}, "Integer": {"integer", "positiveInt", "unsignedInt"}, "Decimal": {"decimal"},
    "String": {"string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary"},
    "Date": {"date"}, "DateTime": {"dateTime", "instant"}, "Time": {"time"},
}


def _noop_trace(*_: Any) -> None:
    """fhirpathpy prints `trace()` output to stdout unless it is given a callback."""


# -- values -----------------------------------------------------------------------------------------


class _Absent:
    """A primitive that is present only by its extensions (`"_birthDate": {...}` without `birthDate`):
    it exists, but has no value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


class Unsupported(Exception):
    """The expression uses FHIRPath the compiler does not cover: fhirpathpy evaluates it."""


class Fallback(Exception):
    """This evaluation met values the compiled code will not decide on: fhirpathpy evaluates it."""


def _values(collection: list[Any]) -> list[Any]:
    for item in collection:
        if item is ABSENT:
            return [item for item in collection if item is not ABSENT]
    return collection


def _truth(collection: list[Any]) -> bool | None:
    """A collection as a Boolean (FHIRPath singleton evaluation): empty is unknown (None)."""
    if not collection:
        return None
    if len(collection) == 1:
        value = collection[0]
        return value if value is True or value is False else True
    raise Fallback


def _single(collection: list[Any]) -> Any:
    values = _values(collection)
    if len(values) > 1:
        raise Fallback
    return values[0] if values else None


def _number(value: Any) -> bool:
    return isinstance(value, int | Decimal | float) and not isinstance(value, bool)


def _equal(a: Any, b: Any) -> bool:
    if type(a) is str and type(b) is str:
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _number(a) and _number(b):
        return Decimal(str(a)) == Decimal(str(b)) if isinstance(a, float) or isinstance(b, float) else a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a == b
    return False


def _contains(collection: list[Any], value: Any) -> bool:
    return any(_equal(item, value) for item in collection)


def _hashable(value: Any) -> Any:
    """A key equal for values FHIRPath finds equal (strings, numbers, booleans); None for the others."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return (bool, value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, int | Decimal):
        return value
    return None


def _distinct(collection: list[Any]) -> list[Any]:
    """The collection without repeats (FHIRPath equality), in order."""
    seen: set[Any] = set()
    out: list[Any] = []
    for item in collection:
        key = _hashable(item)
        if key is None:
            if not _contains(out, item):
                out.append(item)
        elif key not in seen:
            seen.add(key)
            out.append(item)
    return out


_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _date_parts(text: str) -> tuple[list[int], Decimal | None, str | None]:
    match = _DATE.fullmatch(text)
    if match is None:
        raise Fallback
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    parts = [int(p) for p in (year, month, day, hour, minute) if p is not None]
    seconds = Decimal(second + (fraction or "")) if second is not None else None
    return parts, seconds, zone


def _instant(parts: list[int], seconds: Decimal, zone: str) -> datetime:
    micro = int((seconds - int(seconds)) * 1_000_000)
    offset = timedelta(0) if zone == "Z" else (1 if zone[0] == "+" else -1) * timedelta(
        hours=int(zone[1:3]), minutes=int(zone[4:6]))
    year, month, day, hour, minute = parts
    return datetime(year, month, day, hour, minute, int(seconds), micro, tzinfo=timezone(offset))


def compare_dates(a: str, b: str) -> int | None:
    """FHIRPath's order of two FHIR date/dateTime/instant values: -1, 0, 1, or None when their
    precisions differ before they do (`2020` against `2020-05`: unknown)."""
    a_parts, a_seconds, a_zone = _date_parts(a)
    b_parts, b_seconds, b_zone = _date_parts(b)
    if a_seconds is not None and b_seconds is not None and a_zone and b_zone and a_zone != b_zone:
        left, right = _instant(a_parts, a_seconds, a_zone), _instant(b_parts, b_seconds, b_zone)
        return (left > right) - (left < right)
    if (a_zone is None) != (b_zone is None) and len(a_parts) > 3 and len(b_parts) > 3:
        raise Fallback  # a time with a zone against one without: FHIRPath takes the local zone
    a_all = [*a_parts, *([a_seconds] if a_seconds is not None else [])]
    b_all = [*b_parts, *([b_seconds] if b_seconds is not None else [])]
    for left, right in zip(a_all, b_all, strict=False):
        if left != right:
            return -1 if left < right else 1
    return 0 if len(a_all) == len(b_all) else None


# -- the compiler -----------------------------------------------------------------------------------
# A static type: ("pos", owner, path) an object whose elements are owner's at path ("" for the type
# itself), ("prim", type) a primitive, ("res", type or None) a resource, ("choice",), ("any",).

Static = tuple[Any, ...]
Fn = Callable[[list[Any], "_Env"], list[Any]]
BOOLEAN: Static = ("prim", "boolean")
INTEGER: Static = ("prim", "integer")
STRING: Static = ("prim", "string")
ANY: Static = ("any",)


@dataclass(slots=True)
class _Env:
    resource: dict[str, Any]  # %resource
    root: dict[str, Any]  # %rootResource
    context: Any = None  # %context
    _contained_ids: frozenset[str] | None = None

    def contained_ids(self) -> frozenset[str]:
        if self._contained_ids is None:
            contained = self.root.get("contained")
            self._contained_ids = frozenset(
                item.get("id") for item in contained if isinstance(item, dict) and isinstance(item.get("id"), str)
            ) if isinstance(contained, list) else frozenset()
        return self._contained_ids


def _kind_of(type_code: str) -> str | None:
    definition = structure().get(type_code)
    return definition["kind"] if definition else None


def _element_static(owner: str, key: str, types: list[str]) -> Static:
    if len(types) != 1:
        return ("choice",)
    code = types[0]
    if code.startswith("#"):
        target_owner, _, target_path = code[1:].partition(".")
        return ("pos", target_owner, target_path)
    if code in ("BackboneElement", "Element"):
        return ("pos", owner, key)
    if code == "Resource":
        return ("res", None)
    kind = _kind_of(code)
    if kind == "primitive-type":
        return ("prim", code)
    if kind == "complex-type":
        return ("pos", code, "")
    raise Unsupported(f"type {code}")


def _owner_elements(static: Static) -> tuple[str, str, dict[str, list[Any]]]:
    if static[0] == "pos":
        owner, path = static[1], static[2]
    elif static[0] == "res":
        owner, path = static[1] or "DomainResource", ""
    else:
        raise Unsupported(f"navigation from {static}")
    definition = structure().get(owner)
    if definition is None:
        raise Unsupported(f"no definition of {owner}")
    return owner, path, definition["elements"]


def _child(static: Static, name: str) -> tuple[Static, list[tuple[str, bool]]]:
    """The static type of `name` under `static`, and the JSON keys that hold it (key, primitive?)."""
    owner, path, elements = _owner_elements(static)
    if static[0] == "res" and static[1] is None and name not in elements:
        raise Unsupported(f"{name} on a resource of unknown type")
    key = f"{path}.{name}" if path else name
    if key in elements:
        child = _element_static(owner, key, elements[key][0])
        return child, [(name, child[0] == "prim")]
    choice = elements.get(f"{key}[x]")
    if choice is None:
        raise Unsupported(f"no element {owner}.{key}")
    keys = [(name + code[0].upper() + code[1:], _kind_of(code) == "primitive-type") for code in choice[0]]
    return ("choice",), keys


def _navigate(keys: list[tuple[str, bool]]) -> Fn:
    if len(keys) == 1 and not keys[0][1]:
        name = keys[0][0]

        def complex_child(focus: list[Any], env: _Env) -> list[Any]:
            out: list[Any] = []
            for item in focus:
                if isinstance(item, dict):
                    value = item.get(name)
                    if value is not None:
                        if isinstance(value, list):
                            out.extend(value)
                        else:
                            out.append(value)
            return out

        return complex_child

    prepared = [(name, f"_{name}" if primitive else "") for name, primitive in keys]

    def children(focus: list[Any], env: _Env) -> list[Any]:
        out: list[Any] = []
        for item in focus:
            if not isinstance(item, dict):
                continue
            for name, extension_key in prepared:
                value = item.get(name)
                extensions = item.get(extension_key) if extension_key else None
                if extensions is None:
                    if value is None:
                        continue
                    if isinstance(value, list):
                        out.extend(v for v in value if v is not None)
                    else:
                        out.append(value)
                elif isinstance(value, list) or isinstance(extensions, list):
                    values = value if isinstance(value, list) else []
                    extras = extensions if isinstance(extensions, list) else []
                    for position in range(max(len(values), len(extras))):
                        v = values[position] if position < len(values) else None
                        if v is not None:
                            out.append(v)
                        elif position < len(extras) and extras[position] is not None:
                            out.append(ABSENT)
                else:
                    out.append(value if value is not None else ABSENT)
        return out

    return children


def _string_literal(text: str) -> str:
    body = text[1:-1]
    escapes = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def unescape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        return escapes.get(code, code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", unescape, body)


def _identifier(node: dict[str, Any]) -> str:
    return str(node["text"]).strip("`")


def _constant(value: Any) -> Fn:
    result = [value]
    return lambda focus, env: result


class _Compiler:
    """Compiles one FHIRPath expression (fhirpathpy's parse tree) for a node of a known static type."""

    def __init__(self, resource: Static, context: Static) -> None:
        self.resource = resource  # the static type of %resource
        self.context = context  # of %context: the node the constraint is on

    def compile(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        kind = node.get("type")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            raise Unsupported(str(kind))
        return method(node, static)

    # terms

    def _TermExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return self.compile(node["children"][0], static)

    def _ParenthesizedTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return self.compile(node["children"][0], static)

    def _InvocationTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return self.compile(node["children"][0], static)

    def _LiteralTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        literal = node["children"][0]
        kind, text = literal["type"], literal["text"]
        if kind == "StringLiteral":
            return _constant(_string_literal(text)), STRING
        if kind == "BooleanLiteral":
            return _constant(text == "true"), BOOLEAN
        if kind == "NumberLiteral":
            return (_constant(Decimal(text)), ("prim", "decimal")) if "." in text else (_constant(int(text)), INTEGER)
        raise Unsupported(kind)

    def _ExternalConstantTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        name = _identifier(node["children"][0]["children"][0])
        if name == "ucum":
            return _constant(UCUM), STRING
        if name == "resource":
            return (lambda focus, env: [env.resource]), self.resource
        if name == "rootResource":
            return (lambda focus, env: [env.root]), ("res", None)
        if name == "context":
            return (lambda focus, env: [env.context]), self.context
        raise Unsupported(f"%{name}")

    def _ThisInvocation(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return (lambda focus, env: focus), static

    def _MemberInvocation(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        name = _identifier(node["children"][0])
        if static == ANY:  # untyped (after descendants(), a union of types): the JSON key itself
            return _navigate([(name, True)]), ANY
        if static[0] in ("pos", "res") and static[1] == name and (static[0] == "res" or static[2] == ""):
            return (lambda focus, env: focus), static  # `Appointment.status` on an Appointment
        child, keys = _child(static, name)
        return _navigate(keys), child

    def _InvocationExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        invocation = node["children"][1]
        if invocation["type"] == "FunctionInvocation":
            function = invocation["children"][0]
            name = _identifier(function["children"][0])
            if name in ("is", "as", "ofType") and len(function["children"]) > 1:
                params = function["children"][1]["children"]
                self._arity(params, 1)
                return self._type_test(node["children"][0], static, params[0].get("text", ""), name != "is")
        first, first_static = self.compile(node["children"][0], static)
        second, second_static = self.compile(node["children"][1], first_static)
        return (lambda focus, env: second(first(focus, env), env)), second_static

    # functions

    def _FunctionInvocation(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        function = node["children"][0]
        name = _identifier(function["children"][0])
        params = function["children"][1]["children"] if len(function["children"]) > 1 else []
        method = getattr(self, f"_fn_{name}", None)
        if method is None:
            raise Unsupported(f"{name}()")
        return method(params, static)

    def _fn_exists(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        if params:
            where, _ = self._fn_where(params, static)
            return (lambda focus, env: [bool(where(focus, env))]), BOOLEAN
        return (lambda focus, env: [bool(focus)]), BOOLEAN

    def _fn_empty(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: [not focus]), BOOLEAN

    def _fn_count(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: [len(focus)]), INTEGER

    def _fn_not(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def not_(focus: list[Any], env: _Env) -> list[Any]:
            value = _truth(focus)
            return [] if value is None else [not value]

        return not_, BOOLEAN

    def _fn_hasValue(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def has_value(focus: list[Any], env: _Env) -> list[Any]:
            return [len(focus) == 1 and focus[0] is not ABSENT and not isinstance(focus[0], dict)]

        return has_value, BOOLEAN

    def _fn_where(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        criteria, _ = self.compile(params[0], static)
        return (lambda focus, env: [item for item in focus if _truth(criteria([item], env)) is True]), static

    def _fn_all(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        criteria, _ = self.compile(params[0], static)
        return (lambda focus, env: [all(_truth(criteria([item], env)) is True for item in focus)]), BOOLEAN

    def _fn_select(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        projection, result = self.compile(params[0], static)

        def select(focus: list[Any], env: _Env) -> list[Any]:
            out: list[Any] = []
            for item in focus:
                out.extend(projection([item], env))
            return out

        return select, result

    def _fn_first(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: focus[:1]), static

    def _fn_tail(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: focus[1:]), static

    def _fn_intersect(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        other, _ = self.compile(params[0], static)

        def intersect(focus: list[Any], env: _Env) -> list[Any]:
            others = other(focus, env)
            out: list[Any] = []
            for item in focus:
                if _contains(others, item) and not _contains(out, item):
                    out.append(item)
            return out

        return intersect, static

    def _fn_combine(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        other, other_static = self.compile(params[0], static)
        return (lambda focus, env: focus + other(focus, env)), static if other_static == static else ANY

    def _fn_iif(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        if len(params) not in (2, 3):
            raise Unsupported("arity")
        criterion, _ = self.compile(params[0], static)
        then, then_static = self.compile(params[1], static)
        otherwise, _ = self.compile(params[2], static) if len(params) == 3 else (lambda focus, env: [], ANY)
        return (lambda focus, env: then(focus, env) if _truth(criterion(focus, env)) is True
                else otherwise(focus, env)), then_static

    def _fn_toString(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def to_string(focus: list[Any], env: _Env) -> list[Any]:
            value = _single(focus)
            if value is None:
                return []
            if isinstance(value, bool):
                return ["true" if value else "false"]
            if isinstance(value, str | int | Decimal):
                return [getattr(value, "text", None) or str(value)]
            raise Fallback

        return to_string, STRING

    def _fn_descendants(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def descendants(focus: list[Any], env: _Env) -> list[Any]:
            out: list[Any] = []
            stack = [item for item in reversed(focus) if isinstance(item, dict)]
            while stack:
                for key, value in stack.pop().items():
                    for item in value if isinstance(value, list) else (value,):
                        if item is not None and key != "resourceType":
                            out.append(item)
                            if isinstance(item, dict):
                                stack.append(item)
            return out

        return descendants, ANY

    def _fn_memberOf(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        literal = params[0].get("text", "")
        if literal != "'http://hl7.org/fhir/ValueSet/resource-types'":
            raise Unsupported(f"memberOf({literal})")  # no terminology here but the resource types

        def member_of(focus: list[Any], env: _Env) -> list[Any]:
            value = _single(focus)
            return [] if value is None else [value in resource_types()]

        return member_of, BOOLEAN

    def _fn_trace(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        return (lambda focus, env: focus), static

    def _fn_isDistinct(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def distinct(focus: list[Any], env: _Env) -> list[Any]:
            return [len(_distinct(focus)) == len(focus)]

        return distinct, BOOLEAN

    def _fn_toInteger(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def to_integer(focus: list[Any], env: _Env) -> list[Any]:
            value = _single(focus)
            if isinstance(value, int) and not isinstance(value, bool):
                return [value]
            if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
                return [int(value)]
            return []

        return to_integer, INTEGER

    def _string_function(self, params: list[Any], test: Callable[[str, str], bool]) -> tuple[Fn, Static]:
        self._arity(params, 1)
        argument, _ = self.compile(params[0], ANY)

        def function(focus: list[Any], env: _Env) -> list[Any]:
            value = _single(focus)
            other = _single(argument(focus, env))
            if value is None or other is None:
                return []
            if not isinstance(value, str) or not isinstance(other, str):
                raise Fallback
            return [test(value, other)]

        return function, BOOLEAN

    def _fn_matches(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        # Partial match, as fhirpathpy and the FHIRPath specification (anchors are the pattern's to give).
        return self._string_function(params, lambda value, regex: re.search(regex, value, re.DOTALL) is not None)

    def _fn_startsWith(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        return self._string_function(params, str.startswith)

    def _fn_contains(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        return self._string_function(params, lambda value, part: part in value)

    def _fn_is(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        return self._type_test({"type": "ThisInvocation"}, static, params[0].get("text", ""), False)

    def _type_test(self, operand: dict[str, Any], static: Static, type_name: str, cast: bool) -> tuple[Fn, Static]:
        """`X is T`, `X as T`, `X.is(T)`, `X.as(T)`, `X.ofType(T)`: on resources by their resourceType, on a
        choice element (`answer is Boolean`, `probability as decimal`) by the JSON key its value is in."""
        type_name = type_name.removeprefix("FHIR.").removeprefix("System.")
        target = operand
        while target["type"] in ("TermExpression", "InvocationTerm") and target.get("children"):
            target = target["children"][0]
        member: str | None = None
        parent: Fn = lambda focus, env: focus  # noqa: E731
        parent_static = static
        if target["type"] == "MemberInvocation":
            member = _identifier(target["children"][0])
        elif target["type"] == "InvocationExpression" and target["children"][1]["type"] == "MemberInvocation":
            member = _identifier(target["children"][1]["children"][0])
            parent, parent_static = self.compile(target["children"][0], static)
        if member is not None and parent_static[0] in ("pos", "res"):
            _, path, elements = _owner_elements(parent_static)
            choice = elements.get(f"{path}.{member}[x]" if path else f"{member}[x]")
            if choice is not None:
                return self._choice_test(parent, member, choice[0], type_name, cast)
        if cast:
            raise Unsupported(f"as {type_name}")
        value, value_static = self.compile(operand, static)
        test, _ = self._is(type_name, value_static)
        return (lambda focus, env: test(value(focus, env), env)), BOOLEAN

    @staticmethod
    def _choice_test(parent: Fn, member: str, codes: list[str], type_name: str, cast: bool) -> tuple[Fn, Static]:
        def keys(chosen: list[str]) -> list[tuple[str, bool]]:
            return [(member + code[0].upper() + code[1:], _kind_of(code) == "primitive-type") for code in chosen]

        matching = [code for code in codes if code == type_name or code in _SYSTEM_TYPES.get(type_name, ())]
        of_type = _navigate(keys(matching)) if matching else (lambda focus, env: [])
        if cast:
            static: Static = ANY
            if len(matching) == 1:
                kind = _kind_of(matching[0])
                static = ("prim", matching[0]) if kind == "primitive-type" else ("pos", matching[0], "")
            return (lambda focus, env: of_type(parent(focus, env), env)), static
        any_type = _navigate(keys(codes))

        def is_(focus: list[Any], env: _Env) -> list[Any]:
            parents = parent(focus, env)
            if not any_type(parents, env):
                return []
            if len(parents) > 1:
                raise Fallback
            return [bool(of_type(parents, env))]

        return is_, BOOLEAN

    def _is(self, type_name: str, static: Static) -> tuple[Fn, Static]:
        if type_name not in resource_types() or static[0] != "res":
            raise Unsupported(f"is {type_name}")

        def is_(focus: list[Any], env: _Env) -> list[Any]:
            if not focus:
                return []
            if len(focus) > 1:
                raise Fallback
            return [isinstance(focus[0], dict) and focus[0].get("resourceType") == type_name]

        return is_, BOOLEAN

    @staticmethod
    def _arity(params: list[Any], count: int) -> None:
        if len(params) != count:
            raise Unsupported("arity")

    # operators

    def _operands(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static, Fn, Static]:
        left, left_static = self.compile(node["children"][0], static)
        right, right_static = self.compile(node["children"][1], static)
        return left, left_static, right, right_static

    def _TypeExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        cast = node["terminalNodeText"][0] == "as"
        return self._type_test(node["children"][0], static, node["children"][1].get("text", ""), cast)

    def _AndExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, _, right, _ = self._operands(node, static)

        def and_(focus: list[Any], env: _Env) -> list[Any]:
            a = _truth(left(focus, env))
            if a is False:
                return [False]
            b = _truth(right(focus, env))
            if b is False:
                return [False]
            return [True] if a is True and b is True else []

        return and_, BOOLEAN

    def _OrExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, _, right, _ = self._operands(node, static)
        if node["terminalNodeText"][0] == "xor":

            def xor(focus: list[Any], env: _Env) -> list[Any]:
                a, b = _truth(left(focus, env)), _truth(right(focus, env))
                return [] if a is None or b is None else [a != b]

            return xor, BOOLEAN

        def or_(focus: list[Any], env: _Env) -> list[Any]:
            a = _truth(left(focus, env))
            if a is True:
                return [True]
            b = _truth(right(focus, env))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []

        return or_, BOOLEAN

    def _ImpliesExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, _, right, _ = self._operands(node, static)

        def implies(focus: list[Any], env: _Env) -> list[Any]:
            a = _truth(left(focus, env))
            if a is False:
                return [True]
            b = _truth(right(focus, env))
            if b is True:
                return [True]
            return [False] if a is True and b is False else []

        return implies, BOOLEAN

    @staticmethod
    def _comparable(static: Static) -> bool:
        return static[0] == "prim" and static[1] not in _DATE_TYPES and static[1] != "time"

    def _EqualityExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if operator not in ("=", "!=") or not (self._comparable(left_static) and self._comparable(right_static)):
            raise Unsupported(f"{operator} on {left_static} and {right_static}")
        negate = operator == "!="

        def equal(focus: list[Any], env: _Env) -> list[Any]:
            a, b = _values(left(focus, env)), _values(right(focus, env))
            if not a or not b:
                return []
            if len(a) == 1 and len(b) == 1:
                return [_equal(a[0], b[0]) != negate]
            same = len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
            return [same != negate]

        return equal, BOOLEAN

    def _InequalityExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        dates = left_static[0] == "prim" and left_static[1] in _DATE_TYPES
        if dates != (right_static[0] == "prim" and right_static[1] in _DATE_TYPES):
            raise Unsupported("date against another type")
        quantities = left_static[:2] == ("pos", "Quantity") and right_static[:2] == ("pos", "Quantity")
        if not quantities and not (left_static[0] == "prim" and right_static[0] == "prim"):
            raise Unsupported(f"{operator} on {left_static} and {right_static}")
        test = {"<": lambda c: c < 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0}[operator]

        def inequality(focus: list[Any], env: _Env) -> list[Any]:
            a, b = _single(left(focus, env)), _single(right(focus, env))
            if a is None or b is None:
                return []
            order = _order(a, b, dates)
            return [] if order is None else [test(order)]

        return inequality, BOOLEAN

    def _MembershipExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if operator == "in":
            element, element_static, collection = left, left_static, right
        else:
            element, element_static, collection = right, right_static, left
        if not self._comparable(element_static):
            raise Unsupported(f"{operator} on {element_static}")

        def membership(focus: list[Any], env: _Env) -> list[Any]:
            value = _single(element(focus, env))
            if value is None:
                return []
            return [_contains(_values(collection(focus, env)), value)]

        return membership, BOOLEAN

    def _UnionExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, left_static, right, right_static = self._operands(node, static)

        def union(focus: list[Any], env: _Env) -> list[Any]:
            return _distinct(left(focus, env) + right(focus, env))

        return union, left_static if left_static == right_static else ANY

    def _AdditiveExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if operator == "&":

            def concatenate(focus: list[Any], env: _Env) -> list[Any]:
                a, b = _single(left(focus, env)), _single(right(focus, env))
                if not isinstance(a, str | None) or not isinstance(b, str | None):
                    raise Fallback
                return [(a or "") + (b or "")]

            return concatenate, STRING
        if left_static[0] != "prim" or right_static[0] != "prim":
            raise Unsupported(f"{operator} on {left_static}")

        def arithmetic(focus: list[Any], env: _Env) -> list[Any]:
            a, b = _single(left(focus, env)), _single(right(focus, env))
            if a is None or b is None:
                return []
            if _number(a) and _number(b):
                return [a + b if operator == "+" else a - b]
            if operator == "+" and isinstance(a, str) and isinstance(b, str):
                return [a + b]
            raise Fallback

        return arithmetic, left_static


def _order(a: Any, b: Any, dates: bool) -> int | None:
    if dates:
        if not isinstance(a, str) or not isinstance(b, str):
            raise Fallback
        return compare_dates(a, b)
    if _number(a) and _number(b):
        return (a > b) - (a < b)
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    if isinstance(a, dict) and isinstance(b, dict):  # Quantities: native only in the same unit
        unit_a, unit_b = (a.get("system"), a.get("code")), (b.get("system"), b.get("code"))
        value_a, value_b = a.get("value"), b.get("value")
        if unit_a == unit_b and _number(value_a) and _number(value_b) and (unit_a[1] or a.get("unit") == b.get("unit")):
            return (value_a > value_b) - (value_a < value_b)
    raise Fallback


# -- constraints and plans ------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Check:
    """One constraint on one kind of node: its compiled form, built on first use."""

    key: str
    severity: str
    human: str
    expression: str
    static: Static  # the node's static type
    resource: Static  # %resource's
    model_path: str  # the node's FHIR path for fhirpathpy's typing ("Observation.component", "Period")
    compiled: bool = False
    native: Fn | None = None
    fhirpath: Callable[..., list[Any]] | None = None

    def compile(self) -> None:
        from fhirpathpy.parser import parse

        try:
            compiler = _Compiler(self.resource, self.static)
            self.native, _ = compiler.compile(parse(self.expression)["children"][0], self.static)
        except Unsupported as why:
            log.debug("invariant %s runs in fhirpathpy: %s", self.key, why)
        self.compiled = True

    def detail(self, node: Any, env: _Env) -> str:
        return ""

    def failures(self, node: Any, env: _Env) -> tuple[tuple[tuple[str | int, ...], str], ...]:
        """Where under `node` the constraint fails (a JSON path suffix, usually empty) and any detail."""
        if self.holds(node, env) is False:
            return (((), self.detail(node, env)),)
        return ()

    def holds(self, node: Any, env: _Env) -> bool | None:
        """False when `node` breaks the constraint; None when the result is unknown."""
        if not self.compiled:
            self.compile()
        if self.native is not None:
            try:
                env.context = node
                return _truth(self.native([node], env))
            except Fallback:
                pass
            except Exception as error:  # values the compiled code did not expect (a malformed date, ...)
                log.debug("invariant %s: compiled check failed (%s); fhirpathpy decides", self.key,
                          type(error).__name__)
        return self._fhirpathpy(node, env)

    def _fhirpathpy(self, node: Any, env: _Env) -> bool | None:
        from fhirpathpy import compile as fhirpath_compile
        from fhirpathpy.engine.nodes import ResourceNode
        from fhirpathpy.models import models

        try:
            if self.fhirpath is None:
                self.fhirpath = fhirpath_compile(self.expression, models["r4"], options={"traceFn": _noop_trace})
            focus = ResourceNode.create_node(node, self.model_path)
            result = self.fhirpath(focus, {
                "resource": ResourceNode.create_node(env.resource, env.resource.get("resourceType")),
                "rootResource": ResourceNode.create_node(env.root, env.root.get("resourceType")),
                "context": focus,
            })
            return result[0] if len(result) == 1 and isinstance(result[0], bool) else None
        except Exception as error:  # an engine failure must not refuse the resource
            log.debug("invariant %s not evaluated at %s: %s", self.key, self.model_path, type(error).__name__)
            return None


class _Ref1(_Check):
    """ref-1: a local reference `#id` needs a contained resource with that id in the resource (in its
    root, for a reference inside a contained resource). R4's expression also fails `#` (a contained
    resource pointing at its container, which https://hl7.org/fhir/R4/references.html#contained allows)
    and holds two `trace()` calls; R5 fixed the first by allowing `#` where %rootResource != %resource
    (inside a contained resource): so here."""

    def holds(self, node: Any, env: _Env) -> bool | None:
        value = node.get("reference")
        if not isinstance(value, str) or not value.startswith("#"):
            return True
        if value == "#":
            return env.resource is not env.root
        return value[1:] in env.contained_ids()

    def detail(self, node: Any, env: _Env) -> str:
        value = node.get("reference")
        if value == "#":
            return "'#' refers to the containing resource, which only a contained resource can do"
        return f"no contained resource has the id '{value[1:]}'"


_LITERAL_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


class _Ctm1(_Check):
    """ctm-1: onBehalfOf only for a participant whose member is a Practitioner. R4's expression needs
    `resolve()`, which fhirpathpy does not have; a literal reference names its target's type
    (`Practitioner/1`, a contained `#id`, or `Reference.type`), which is what resolving it would find.
    A member whose type cannot be told passes, as the expression's `iif(empty(), true, ...)` says."""

    def holds(self, node: Any, env: _Env) -> bool | None:
        member = node.get("member")
        if "onBehalfOf" not in node or not isinstance(member, dict):
            return True
        target = _reference_type(member, env)
        return None if target is None else target == "Practitioner"


def _reference_type(reference: dict[str, Any], env: _Env) -> str | None:
    value = reference.get("reference")
    if isinstance(value, str) and value.startswith("#"):
        for item in env.root.get("contained") or ():
            if isinstance(item, dict) and item.get("id") == value[1:]:
                return item.get("resourceType")
        return None
    if isinstance(value, str):
        found = _LITERAL_TYPE.search(value)
        if found and found.group(1) in resource_types():
            return found.group(1)
    kind = reference.get("type")
    return kind if isinstance(kind, str) and kind in resource_types() else None


class _Per1(_Check):
    """per-1 `start.hasValue().not() or end.hasValue().not() or (start <= end)`: on every Period, so by
    hand (one string comparison when both values are written alike), with FHIRPath's date order
    (`compare_dates`; fhirpathpy finds `2020-01-01 <= 2020` false where FHIRPath says unknown)."""

    def holds(self, node: Any, env: _Env) -> bool | None:
        start, end = node.get("start"), node.get("end")
        if not isinstance(start, str) or not isinstance(end, str):
            return True
        if len(start) == len(end) and (len(start) <= 10 or (start[19:] == end[19:] and start[10] == "T")):
            return start <= end  # same precision and zone: the text order is the time order
        try:
            order = compare_dates(start, end)
        except Fallback:
            return None
        return None if order is None else order <= 0


_REQUEST_TYPES = frozenset({"batch", "transaction", "history"})
_RESPONSE_TYPES = frozenset({"batch-response", "transaction-response", "history"})


class _BundleEntries(_Check):
    """bdl-3 / bdl-4: every entry has a `request` (a `response`) exactly when the Bundle's type calls
    for one. By hand: R4's `entry.all(...)` re-reads `%resource.type` for every entry; and the failure is
    reported on the entry at fault."""

    def failures(self, node: Any, env: _Env) -> tuple[tuple[tuple[str | int, ...], str], ...]:
        entries = node.get("entry")
        if not isinstance(entries, list):
            return ()
        member, types = ("request", _REQUEST_TYPES) if self.key == "bdl-3" else ("response", _RESPONSE_TYPES)
        wanted = node.get("type") in types
        return tuple(
            (("entry", position), f"a {node.get('type')} Bundle's entry {'needs' if wanted else 'has'} a {member}")
            for position, entry in enumerate(entries)
            if isinstance(entry, dict) and (member in entry) != wanted
        )


class _Bdl7(_Check):
    """bdl-7: fullUrl (with meta.versionId) unique in a Bundle, except a history; by hand (R4's
    `select(fullUrl&resource.meta.versionId).isDistinct()` compares every entry with every other), and
    reported on the entry that repeats one."""

    def failures(self, node: Any, env: _Env) -> tuple[tuple[tuple[str | int, ...], str], ...]:
        entries = node.get("entry")
        if node.get("type") == "history" or not isinstance(entries, list):
            return ()
        seen: dict[tuple[str, Any], int] = {}
        found = []
        for position, entry in enumerate(entries):
            full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
            if not isinstance(full_url, str):
                continue
            resource = entry.get("resource")
            meta = resource.get("meta") if isinstance(resource, dict) else None
            version = meta.get("versionId") if isinstance(meta, dict) else None
            first = seen.setdefault((full_url, version), position)
            if first != position:
                found.append((("entry", position), f"entry[{first}] has the same fullUrl '{full_url}'"
                              + (f" and versionId '{version}'" if version is not None else "")))
        return tuple(found)


NATIVE_CHECKS: dict[str, type[_Check]] = {
    "ref-1": _Ref1, "ctm-1": _Ctm1, "per-1": _Per1, "bdl-3": _BundleEntries, "bdl-4": _BundleEntries, "bdl-7": _Bdl7,
}


@dataclass(eq=False, slots=True)
class _Plan:
    """What to do on an object of one type or backbone element: its checks, and the children to visit
    (JSON key -> (child plan, or None for a resource, and the FHIRPath name of the element))."""

    model_path: str
    checks: list[_Check] = field(default_factory=list)
    members: list[tuple[str, _Check]] = field(default_factory=list)  # constraints on primitive children
    children: dict[str, tuple[_Plan | None, str]] = field(default_factory=dict)
    live: bool = False


RESOURCE = None  # a child that holds resources (contained, Bundle.entry.resource): walked as resources


class _Plans:
    """Builds the plans of every type and backbone element reachable from a type, once."""

    def __init__(self, best_practice: bool) -> None:
        data = constraints()
        self.constraints: dict[str, dict[str, list[dict[str, Any]]]] = data["types"]
        self.profiled: dict[str, dict[str, dict[str, str]]] = data["profiled"]
        self.best_practice = best_practice
        self.plans: dict[tuple[str, ...], _Plan] = {}  # every plan, settled or being built
        self.ready: dict[str, _Plan] = {}  # the settled plans of types: what checks may use
        self.lock = threading.Lock()

    def for_type(self, type_name: str) -> _Plan:
        plan = self.ready.get(type_name)
        if plan is None:
            with self.lock:
                plan = self.ready.get(type_name)
                if plan is None:
                    new: list[_Plan] = []
                    plan = self._type(type_name, new)
                    _settle(new)
                    self.ready[type_name] = plan
        return plan

    def _selected(self, type_name: str, path: str) -> list[dict[str, Any]]:
        return [
            c for c in self.constraints.get(type_name, {}).get(path, [])
            if (c["key"] not in NATIVE or c["key"] in NATIVE_CHECKS) and c["key"] not in NOT_CHECKED
            and (self.best_practice or not c.get("bestPractice"))
        ]

    def _checks(self, found: list[dict[str, Any]], static: Static, resource: Static, model_path: str) -> list[_Check]:
        return [
            NATIVE_CHECKS.get(c["key"], _Check)(
                c["key"], "warning" if c.get("bestPractice") else SEVERITIES.get(c["severity"], "error"),
                c["human"], corrected(c["key"], c["expression"]), static, resource, model_path)
            for c in found
        ]

    def _type(self, type_name: str, new: list[_Plan]) -> _Plan:
        plan = self.plans.get((type_name,))
        if plan is not None:
            return plan
        plan = self.plans[(type_name,)] = _Plan(type_name)
        new.append(plan)
        definition = structure()[type_name]
        resource: Static = ("res", type_name) if definition["kind"] == "resource" else ("res", None)
        base: str | None = type_name
        while base:  # the type's own root constraints, then its base types' (Age: Quantity's qty-3)
            plan.checks += self._checks(self._selected(base, ""), ("pos", type_name, ""), resource, type_name)
            base_definition = structure().get(base)
            base = base_definition["base"] if base_definition else None
        self._fill(plan, type_name, "", resource, new)
        return plan

    def _backbone(self, owner: str, path: str, resource: Static, new: list[_Plan]) -> _Plan:
        key = (owner, path)
        plan = self.plans.get(key)
        if plan is not None:
            return plan
        plan = self.plans[key] = _Plan(f"{owner}.{path}")
        new.append(plan)
        plan.checks = self._checks(self._selected(owner, path), ("pos", owner, path), resource, plan.model_path)
        self._fill(plan, owner, path, resource, new)
        return plan

    def _fill(self, plan: _Plan, owner: str, path: str, resource: Static, new: list[_Plan]) -> None:
        elements = structure()[owner]["elements"]
        prefix = f"{path}." if path else ""
        for element_path, (types, _, _, _) in elements.items():
            if not element_path.startswith(prefix) or "." in element_path[len(prefix):]:
                continue
            name = element_path[len(prefix):]
            if name in EXTENSION_KEYS:
                continue  # extensions are reached by the untyped pass (see Invariants._scan)
            base_name = name.removesuffix("[x]")
            for code in types:
                key = base_name + code[0].upper() + code[1:] if name.endswith("[x]") else base_name
                label = f"{base_name}.ofType({code})" if name.endswith("[x]") else base_name
                child = self._element(owner, element_path, code, resource, new)
                if child is not False:
                    plan.children[key] = (child, label)
                elif _kind_of(code) == "primitive-type" and not name.endswith("[x]"):  # ElementDefinition.max
                    plan.members += [(key, check) for check in self._checks(
                        self._selected(owner, element_path), ("prim", code), resource, f"{owner}.{element_path}")]

    def _element(self, owner: str, element_path: str, code: str, resource: Static,
                 new: list[_Plan]) -> _Plan | bool | None:
        """The plan of one element of type `code`: False for primitives (never visited)."""
        if code == "Resource":
            return RESOURCE
        if code.startswith("#"):  # the element's own constraints if it has any (TestScript's tst-8 for
            # tst-7), else those of the element it reuses (Questionnaire.item's on every nested item)
            target_owner, _, target_path = code[1:].partition(".")
            target = self._backbone(target_owner, target_path, resource, new)
            own = self._selected(owner, element_path)
            if not own:
                return target
            key = (owner, element_path)
            plan = self.plans.get(key)
            if plan is None:
                plan = self.plans[key] = _Plan(target.model_path, children=target.children, live=True)
                plan.checks = self._checks(own, ("pos", target_owner, target_path), resource, target.model_path)
                new.append(plan)
            return plan
        if code in ("BackboneElement", "Element"):
            return self._backbone(owner, element_path, resource, new)
        if _kind_of(code) != "complex-type":
            return False
        type_plan = self._type(code, new)
        extra = self._selected(owner, element_path)
        profile = self.profiled.get(owner, {}).get(element_path, {}).get(code)
        if profile:
            extra = extra + self._selected(profile, "")
        if not extra:
            return type_plan
        key = (owner, element_path, code)
        plan = self.plans.get(key)
        if plan is None:  # the type's checks and children, plus the element's own constraints
            plan = self.plans[key] = _Plan(code, checks=list(type_plan.checks), children=type_plan.children)
            model_path = code if element_path.endswith("[x]") else f"{owner}.{element_path}"
            plan.checks += self._checks(extra, ("pos", code, ""), resource, model_path)
            plan.live = True
            new.append(plan)
        return plan


def _settle(plans: list[_Plan]) -> None:
    """Mark the plans whose subtree holds a check or a resource, then drop every child that leads to
    none (the pruning that keeps Codings, Identifiers, ... out of the walk)."""
    changed = True
    while changed:
        changed = False
        for plan in plans:
            if not plan.live and (plan.checks or plan.members or any(
                    child is RESOURCE or child.live for child, _ in plan.children.values())):
                plan.live = changed = True
    for plan in plans:
        for key in [k for k, (child, _) in plan.children.items() if child is not RESOURCE and not child.live]:
            del plan.children[key]


# -- the checker ----------------------------------------------------------------------------------


class Invariants:
    """The base R4 invariants, checked on one resource at a time (thread-safe; build one per process)."""

    def __init__(self, best_practice: bool = False) -> None:
        self._plans = _Plans(best_practice)
        types = constraints()["types"]
        self._human = {c["key"]: c["human"].strip() for c in types["DomainResource"][""] + types["Extension"][""]}
        self._labels: dict[tuple[str, str], tuple[str, Static] | None] = {}

    def compile_all(self) -> dict[str, str]:
        """Build the plans of every resource and datatype and compile every constraint now (~0.3 s) rather
        than on first use; how each constraint is evaluated: {key: "by hand" | "compiled" | "fhirpathpy"}.
        Call it at start-up to keep the one-off cost out of the first writes."""
        for name, definition in structure().items():
            if definition["kind"] in ("resource", "complex-type"):
                self._plans.for_type(name)
        how: dict[str, str] = {key: "by hand" for key in NATIVE}
        for plan in list(self._plans.plans.values()):
            for check in plan.checks + [member for _, member in plan.members]:
                if type(check) is _Check:
                    if not check.compiled:
                        check.compile()
                    how[check.key] = "compiled" if check.native is not None else "fhirpathpy"
        return how

    def check(self, resource: dict[str, Any], compact: bytes | None = None) -> list[Issue]:
        """The invariant violations of `resource` (already checked against the JSON Schema). `compact`
        is its compact JSON (`fhirjson.dumps(resource)`) when the caller has it: with no
        `"extension":`/`"modifierExtension":` key in it, the extension pass is skipped."""
        run = _Run(resource)
        self._resource(resource, resource, run)
        if _has_extensions(resource, compact):
            self._scan(resource, _Env(resource, resource), run)
        return run.issues

    # the typed walk

    def _resource(self, resource: dict[str, Any], root: dict[str, Any], run: _Run) -> None:
        resource_type = resource.get("resourceType")
        if resource_type not in resource_types():
            return
        plan = self._plans.for_type(resource_type)
        env = _Env(resource, root)
        contained = resource.get("contained")
        if contained and resource is root:
            self._contained(resource, contained, run)
        self._walk(resource, plan, env, run)

    def _walk(self, node: dict[str, Any], plan: _Plan, env: _Env, run: _Run) -> None:
        for check in plan.checks:
            try:
                failures = check.failures(node, env)
            except Exception as error:  # a check that cannot decide on malformed values does not refuse them
                log.debug("invariant %s not evaluated: %s", check.key, type(error).__name__)
                continue
            for suffix, detail in failures:
                self._report(run, check.key, check.severity, check.human, detail, suffix)
        for key, check in plan.members:
            value = node.get(key)
            if value is not None:
                run.path.append(key)
                for position, item in enumerate(value) if isinstance(value, list) else [(None, value)]:
                    if position is not None:
                        run.path.append(position)
                    if item is not None and check.failures(item, env):
                        self._report(run, check.key, check.severity, check.human)
                    if position is not None:
                        run.path.pop()
                run.path.pop()
        children = plan.children
        if not children:
            return
        path = run.path
        for key, value in node.items():
            child = children.get(key)
            if child is None:
                continue
            child_plan = child[0]
            if isinstance(value, list):
                for position, item in enumerate(value):
                    if isinstance(item, dict):
                        path.append(key)
                        path.append(position)
                        if child_plan is RESOURCE:
                            self._resource(item, env.root if key == "contained" else item, run)
                        else:
                            self._walk(item, child_plan, env, run)
                        del path[-2:]
            elif isinstance(value, dict):
                path.append(key)
                if child_plan is RESOURCE:
                    self._resource(value, env.root if key == "contained" else value, run)
                else:
                    self._walk(value, child_plan, env, run)
                path.pop()

    # native checks

    def _contained(self, resource: dict[str, Any], contained: Any, run: _Run) -> None:
        """dom-2 .. dom-5 on a resource's contained resources."""
        if not isinstance(contained, list):
            return
        references: set[str] | None = None
        for position, item in enumerate(contained):
            if not isinstance(item, dict):
                continue
            run.path += ["contained", position]
            if "contained" in item:
                self._report(run, "dom-2", "error", self._human["dom-2"])
            meta = item.get("meta")
            if isinstance(meta, dict):
                if any(k in meta for k in ("versionId", "_versionId", "lastUpdated", "_lastUpdated")):
                    self._report(run, "dom-4", "error", self._human["dom-4"])
                if "security" in meta or "_security" in meta:
                    self._report(run, "dom-5", "error", self._human["dom-5"])
            if references is None:
                references = _local_references(resource)
            self._dom_3(item, references, run)
            del run.path[-2:]

    def _dom_3(self, item: dict[str, Any], references: set[str], run: _Run) -> None:
        """dom-3 as the spec means it (https://hl7.org/fhir/R4/references.html#contained): a contained
        resource is referenced from elsewhere in the resource (a Reference, canonical, uri or url
        `#id`), or itself refers to its container (`#`). R4's expression says the same (its `trace()`
        only logs); one with no id can only pass by referring to its container."""
        identifier = item.get("id")
        if isinstance(identifier, str) and f"#{identifier}" in references:
            return
        if "#" in _local_references(item):
            return
        detail = f"nothing in the resource refers to '#{identifier}'" if isinstance(identifier, str) else (
            "it has no id, so nothing can refer to it")
        self._report(run, "dom-3", "error", self._human["dom-3"], detail)

    # the untyped pass: ext-1, and typed walks of complex extension values

    def _scan(self, node: dict[str, Any], env: _Env, run: _Run) -> None:
        """Every extension under `node`. It keeps no path (this pass visits every object of the
        resource): a report finds the path of the extension it is about (`_Run.anchor`)."""
        for key, value in node.items():
            if type(value) is str:
                continue
            if isinstance(value, list):
                if key in EXTENSION_KEYS:
                    for item in value:
                        if isinstance(item, dict):
                            self._extension(item, env, run)
                for item in value:
                    if isinstance(item, dict):
                        if "resourceType" in item:  # a contained resource
                            self._scan(item, _Env(item, env.root if key == "contained" else item), run)
                        else:
                            self._scan(item, env, run)
            elif isinstance(value, dict):
                if "resourceType" not in value:
                    self._scan(value, env, run)
                elif _has_extensions(value):  # Bundle.entry.resource: skipped when it has no extension
                    self._scan(value, _Env(value, value), run)

    def _extension(self, extension: dict[str, Any], env: _Env, run: _Run) -> None:
        has_value = False
        for key, value in extension.items():
            if key.startswith("value") or key.startswith("_value"):
                has_value = True
                if isinstance(value, dict) and key[5:6].isupper():
                    plan = self._plans.for_type(key[5:]) if _kind_of(key[5:]) == "complex-type" else None
                    if plan is not None and plan.live:
                        run.anchor, run.path = value, []
                        self._walk(value, plan, env, run)
                        run.anchor = None
        if has_value == bool(extension.get("extension")):
            run.anchor, run.path = extension, []
            self._report(run, "ext-1", "error", self._human["ext-1"], "it has both" if has_value else "it has neither")
            run.anchor = None

    # issues and locations

    def _report(self, run: _Run, key: str, severity: str, human: str, detail: str = "",
                suffix: tuple[str | int, ...] = ()) -> None:
        anchor = _path_to(run.resource, run.anchor) if run.anchor is not None else []
        location = self.location(run.resource, (anchor or []) + run.path + list(suffix))
        where = f"{location}: {detail}" if detail else location
        run.issues.append(Issue("invariant", f"{key}: {human.strip()} ({where})", severity=severity,
                                expression=(location,)))

    def location(self, resource: dict[str, Any], path: list[str | int]) -> str:
        """The FHIRPath of the element at JSON `path` in `resource`: `Bundle.entry[3].resource.contact[0]`,
        `Observation.value.ofType(Quantity)`, `Patient.birthDate.extension[0]` (for `_birthDate`)."""
        text = str(resource.get("resourceType", "Resource"))
        node: Any = resource
        static: Static | None = ("pos", text, "")
        for step in path:
            if isinstance(step, int):
                text += f"[{step}]"
                node = node[step] if isinstance(node, list) and step < len(node) else None
                if isinstance(node, dict) and isinstance(node.get("resourceType"), str):
                    static = ("pos", node["resourceType"], "")
                continue
            node = node.get(step) if isinstance(node, dict) else None
            if isinstance(node, dict) and isinstance(node.get("resourceType"), str):
                static = ("pos", node["resourceType"], "")
                text += f".{step}"
                continue
            name = step[1:] if step.startswith("_") else step
            label, static = self._label(static, name)
            text += f".{label}"
        return text

    def _label(self, static: Static | None, key: str) -> tuple[str, Static | None]:
        if key in EXTENSION_KEYS:
            return key, ("pos", "Extension", "")
        if static is None or static[0] != "pos" or static[1] not in structure():
            return key, None
        owner, path = static[1], static[2]
        cached = self._labels.get((f"{owner}|{path}", key))
        if cached is None:
            elements = structure()[owner]["elements"]
            prefix = f"{path}." if path else ""
            found: tuple[str, Static] | None = None
            if prefix + key in elements:
                try:
                    found = (key, _element_static(owner, prefix + key, elements[prefix + key][0]))
                except Unsupported:
                    found = (key, ("any",))
            else:
                for element_path, (types, _, _, _) in elements.items():
                    if element_path.startswith(prefix) and element_path.endswith("[x]"):
                        base = element_path[len(prefix):-3]
                        for code in types:
                            if "." not in base and key == base + code[0].upper() + code[1:]:
                                kind = _kind_of(code)
                                child: Static = ("pos", code, "") if kind == "complex-type" else ("prim", code)
                                found = (f"{base}.ofType({code})", child)
            self._labels[(f"{owner}|{path}", key)] = cached = found or (key, ("any",))
        label, child = cached
        return label, child if child[0] == "pos" else None


_EXTENSION_KEY = b'xtension":'


def _has_extensions(resource: dict[str, Any], compact: bytes | None = None) -> bool:
    """False when the resource has no extension anywhere: one byte scan of its compact JSON (~1 us a
    resource, where walking it costs ~5). A string that merely ends in "xtension" only costs the walk."""
    try:
        return _EXTENSION_KEY in (compact if compact is not None else fhirjson.dumps(resource))
    except (TypeError, ValueError):  # not JSON-encodable: walk it
        return True


@dataclass(slots=True)
class _Run:
    resource: dict[str, Any]
    issues: list[Issue] = field(default_factory=list)
    path: list[str | int] = field(default_factory=list)  # from the resource (or the anchor) to the node
    anchor: Any = None  # an object the untyped pass reached, whose path is found when it is reported


def _path_to(node: Any, target: Any) -> list[str | int] | None:
    """The JSON path from `node` to the object `target` (by identity), or None."""
    if node is target:
        return []
    if isinstance(node, dict):
        steps: Any = node.items()
    elif isinstance(node, list):
        steps = enumerate(node)
    else:
        return None
    for step, value in steps:
        if isinstance(value, dict | list):
            found = _path_to(value, target)
            if found is not None:
                return [step, *found]
    return None


_LOCAL_REFERENCE = re.compile(rb'"(#[^"\\]*)"')


def _local_references(resource: dict[str, Any]) -> set[str]:
    """Every string value of the resource that starts with `#` (local references: Reference.reference,
    canonicals, uris and urls that point at a contained resource or, `#` alone, at the container),
    found in its compact JSON: an id has no character JSON escapes, so neither has a reference to one."""
    return {found.decode() for found in _LOCAL_REFERENCE.findall(fhirjson.dumps(resource))}
