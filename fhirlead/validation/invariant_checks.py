"""The R4 invariants checked by hand, and `Check`: one constraint on one kind of node, run compiled or in
fhirpathpy (https://hl7.org/fhir/R4/conformance-rules.html#constraints).

A `Check` evaluates its expression compiled (fhirpath_compiler.py) where it can, else in fhirpathpy
(`compile(expr, models["r4"])`, once, with a `trace()` callback); a constraint is violated when its
expression evaluates to `false`. An empty result (unknown, e.g. comparing `2020` with `2020-05`, whose
order FHIRPath leaves undefined) is not a violation, nor is a constraint that cannot be evaluated (an
exception, logged at debug level): an invariant must not refuse a resource it cannot decide on.

Hand-written checks for the constraints that are everywhere, slow, or wrong in R4 or in fhirpathpy
(`NATIVE` says which and why): `Check` subclasses (`NATIVE_CHECKS`) that the plans run like any other,
and `contained_failures` (dom-2 .. dom-5). ext-1 is checked by the walk's extension pass
(invariants.py). Not checked at all: `NOT_CHECKED` says why for each. Some published expressions are
corrected as later releases did (`CORRECTIONS`: opd-3, que-12, the name rules, eld-19, eld-20).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import resource_types
from fhirlead.validation.fhirpath_compiler import Env, Fn, Static, Unsupported, compile_expression
from fhirlead.validation.fhirpath_values import Fallback, compare_dates, truth

log = logging.getLogger(__name__)

# The constraints checked by hand, and why.
NATIVE: dict[str, str] = {
    "ext-1": "on every extension, anywhere: one untyped pass over the resource (Invariants._scan)",
    "ref-1": "on every Reference; R4's expression calls trace() and fails '#' (see _Ref1)",
    "per-1": "on every Period; fhirpathpy orders dates of different precisions (see _Per1)",
    "dom-2": "on every contained resource (see contained_failures)",
    "dom-3": "R4's expression calls trace() and reads every descendant (see _dom_3)",
    "dom-4": "on every contained resource (see contained_failures)",
    "dom-5": "on every contained resource (see contained_failures)",
    "bdl-3": "re-reads %resource.type per entry; reported on the entry (see _BundleEntries)",
    "bdl-4": "re-reads %resource.type per entry; reported on the entry (see _BundleEntries)",
    "bdl-7": "compares every entry with every other; reported on the entry (see _Bdl7)",
    "ctm-1": "needs resolve(), which fhirpathpy lacks (see _Ctm1)",
}

# The constraints not checked here, and why.
NOT_CHECKED: dict[str, str] = {
    "ele-1": (
        "'All FHIR elements must have a @value or children': in FHIR JSON that is no empty object, empty "
        "array, null, empty string or element holding only an id (the `_x` of a primitive with its value "
        "aside): fhirlead/validation/rules.py (check_json_shape) refuses all but empty strings, the JSON "
        "Schema empty strings (schema.py makes `uri`, `url`, `canonical` and base64Binary non-empty too), "
        "each with the path, on every element at once"
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
# - que-12 (Questionnaire.item, https://hl7.org/fhir/R4/questionnaire.html#invs): "If there are more than
#   one enableWhen, enableBehavior must be specified", but R4's expression counts from three
#   (`enableWhen.count() > 2`), so two enableWhen without an enableBehavior (whose meaning, all or any,
#   is then unknown) passed; R4B (4.3.0) and R5 count from two, as the human text says.
_NAME_RULE = "name.matches('[A-Z]([A-Za-z0-9_]){0,254}')"
_ANCHORED = frozenset({"eld-19", "eld-20"})
CORRECTIONS: dict[str, tuple[str, str]] = {
    "opd-3": (
        "targetProfile.exists() implies (type = 'Reference' or type = 'canonical')",
        "targetProfile.exists() implies (type = 'Reference' or type = 'canonical' "
        "or type.memberOf('http://hl7.org/fhir/ValueSet/resource-types'))",
    ),
    "que-12": (
        "enableWhen.count() > 2 implies enableBehavior.exists()",
        "enableWhen.count() > 1 implies enableBehavior.exists()",
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


def _noop_trace(*_: Any) -> None:
    """fhirpathpy prints `trace()` output to stdout unless it is given a callback."""


@dataclass(eq=False, slots=True)
class Check:
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
        try:
            self.native = compile_expression(self.expression, self.resource, self.static)
        except Unsupported as why:
            log.debug("invariant %s runs in fhirpathpy: %s", self.key, why)
        self.compiled = True

    def detail(self, node: Any, env: Env) -> str:
        return ""

    def failures(self, node: Any, env: Env) -> tuple[tuple[tuple[str | int, ...], str], ...]:
        """Where under `node` the constraint fails (a JSON path suffix, usually empty) and any detail."""
        if self.holds(node, env) is False:
            return (((), self.detail(node, env)),)
        return ()

    def holds(self, node: Any, env: Env) -> bool | None:
        """False when `node` breaks the constraint; None when the result is unknown."""
        if not self.compiled:
            self.compile()
        if self.native is not None:
            try:
                env.context = node
                return truth(self.native([node], env))
            except Fallback:
                pass
            except Exception as error:  # values the compiled code did not expect (a malformed date, ...)
                log.debug("invariant %s: compiled check failed (%s); fhirpathpy decides", self.key,
                          type(error).__name__)
        return self._fhirpathpy(node, env)

    def _fhirpathpy(self, node: Any, env: Env) -> bool | None:
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


class _Ref1(Check):
    """ref-1: a local reference `#id` needs a contained resource with that id in the resource (in its
    root, for a reference inside a contained resource). R4's expression also fails `#` (a contained
    resource pointing at its container, which https://hl7.org/fhir/R4/references.html#contained allows)
    and holds two `trace()` calls; R5 fixed the first by allowing `#` where %rootResource != %resource
    (inside a contained resource): so here."""

    def holds(self, node: Any, env: Env) -> bool | None:
        value = node.get("reference")
        if not isinstance(value, str) or not value.startswith("#"):
            return True
        if value == "#":
            return env.resource is not env.root
        return value[1:] in env.contained_ids()

    def detail(self, node: Any, env: Env) -> str:
        value = node.get("reference")
        if value == "#":
            return "'#' refers to the containing resource, which only a contained resource can do"
        return f"no contained resource has the id '{value[1:]}'"


_LITERAL_TYPE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(?:/_history/[A-Za-z0-9\-.]{1,64})?$")


class _Ctm1(Check):
    """ctm-1: onBehalfOf only for a participant whose member is a Practitioner. R4's expression needs
    `resolve()`, which fhirpathpy does not have; a literal reference names its target's type
    (`Practitioner/1`, a contained `#id`, or `Reference.type`), which is what resolving it would find.
    A member whose type cannot be told passes, as the expression's `iif(empty(), true, ...)` says."""

    def holds(self, node: Any, env: Env) -> bool | None:
        member = node.get("member")
        if "onBehalfOf" not in node or not isinstance(member, dict):
            return True
        target = _reference_type(member, env)
        return None if target is None else target == "Practitioner"


def _reference_type(reference: dict[str, Any], env: Env) -> str | None:
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


class _Per1(Check):
    """per-1 `start.hasValue().not() or end.hasValue().not() or (start <= end)`: on every Period, so by
    hand (one string comparison when both values are written alike), with FHIRPath's date order
    (`compare_dates`; fhirpathpy finds `2020-01-01 <= 2020` false where FHIRPath says unknown)."""

    def holds(self, node: Any, env: Env) -> bool | None:
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


class _BundleEntries(Check):
    """bdl-3 / bdl-4: every entry has a `request` (a `response`) exactly when the Bundle's type calls
    for one. By hand: R4's `entry.all(...)` re-reads `%resource.type` for every entry; and the failure is
    reported on the entry at fault."""

    def failures(self, node: Any, env: Env) -> tuple[tuple[tuple[str | int, ...], str], ...]:
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


class _Bdl7(Check):
    """bdl-7: fullUrl (with meta.versionId) unique in a Bundle, except a history; by hand (R4's
    `select(fullUrl&resource.meta.versionId).isDistinct()` compares every entry with every other), and
    reported on the entry that repeats one."""

    def failures(self, node: Any, env: Env) -> tuple[tuple[tuple[str | int, ...], str], ...]:
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


NATIVE_CHECKS: dict[str, type[Check]] = {
    "ref-1": _Ref1, "ctm-1": _Ctm1, "per-1": _Per1, "bdl-3": _BundleEntries, "bdl-4": _BundleEntries, "bdl-7": _Bdl7,
}


def check_for(constraint: dict[str, Any], static: Static, resource: Static, model_path: str) -> Check:
    """The check of one constraint (an entry of constraints.json) on nodes of static type `static`, in
    resources of static type `resource`: by hand where NATIVE_CHECKS has it, with its corrected
    expression, a warning for a best-practice constraint."""
    key = constraint["key"]
    return NATIVE_CHECKS.get(key, Check)(
        key, "warning" if constraint.get("bestPractice") else SEVERITIES.get(constraint["severity"], "error"),
        constraint["human"], corrected(key, constraint["expression"]), static, resource, model_path)


def contained_failures(resource: dict[str, Any], contained: Any) -> list[tuple[int, str, str]]:
    """dom-2, dom-4, dom-5 and dom-3 on the contained resources of `resource`: (position in `contained`,
    key, detail) of each failure, in order. By hand: they apply to every contained resource."""
    if not isinstance(contained, list):
        return []
    found: list[tuple[int, str, str]] = []
    references: set[str] | None = None
    for position, item in enumerate(contained):
        if not isinstance(item, dict):
            continue
        if "contained" in item:
            found.append((position, "dom-2", ""))
        meta = item.get("meta")
        if isinstance(meta, dict):
            if any(k in meta for k in ("versionId", "_versionId", "lastUpdated", "_lastUpdated")):
                found.append((position, "dom-4", ""))
            if "security" in meta or "_security" in meta:
                found.append((position, "dom-5", ""))
        if references is None:
            references = _local_references(resource)
        detail = _dom_3(item, references)
        if detail is not None:
            found.append((position, "dom-3", detail))
    return found


def _dom_3(item: dict[str, Any], references: set[str]) -> str | None:
    """dom-3 as the spec means it (https://hl7.org/fhir/R4/references.html#contained): a contained
    resource is referenced from elsewhere in the resource (a Reference, canonical, uri or url
    `#id`), or itself refers to its container (`#`). R4's expression says the same (its `trace()`
    only logs); one with no id can only pass by referring to its container. None when it holds, else
    why not."""
    identifier = item.get("id")
    if isinstance(identifier, str) and f"#{identifier}" in references:
        return None
    if "#" in _local_references(item):
        return None
    return f"nothing in the resource refers to '#{identifier}'" if isinstance(identifier, str) else (
        "it has no id, so nothing can refer to it")


_LOCAL_REFERENCE = re.compile(rb'"(#[^"\\]*)"')


def _local_references(resource: dict[str, Any]) -> set[str]:
    """Every string value of the resource that starts with `#` (local references: Reference.reference,
    canonicals, uris and urls that point at a contained resource or, `#` alone, at the container),
    found in its compact JSON: an id has no character JSON escapes, so neither has a reference to one."""
    return {found.decode() for found in _LOCAL_REFERENCE.findall(fhirjson.dumps(resource))}
