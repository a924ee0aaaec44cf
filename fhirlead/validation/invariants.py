"""The invariants (FHIRPath constraints) of the base R4 resources and datatypes, on every write.

https://hl7.org/fhir/R4/conformance-rules.html#constraints: every resource must meet the constraints its
StructureDefinitions declare (obs-6, per-1, bdl-7, dom-3, ...). `Invariants` is built once per process;
`Invariants.check(resource)` returns the violations as `Issue`s of code `invariant`: severity `error`
for error constraints, `warning` for warning ones (the caller decides what blocks a write). Each issue's
`expression` is the FHIRPath location of the element that breaks the rule, with indexes
(`Observation.component[1]`, `Bundle.entry[3].request`, `Observation.value.ofType(Quantity)`), and its
diagnostics say `"<key>: <the rule in the spec's words> (<location>)"`.

This module holds the plans (which constraints run on which nodes) and the walk that runs them and
reports. How one constraint is evaluated, the hand-written checks (`NATIVE`), those not checked
(`NOT_CHECKED`) and the corrected expressions: invariant_checks.py; the FHIRPath compiler most
constraints run as: fhirpath_compiler.py (its value semantics, `compare_dates`: fhirpath_values.py).

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

**Checked against the R4 examples.** All 5,306 resources of the R4 core package (hl7.fhir.r4.core /
hl7.fhir.r4.examples 4.0.1, the same files) were checked: 5 have errors, all in the examples themselves:
in Bundle-dataelements 12 entries repeat an earlier entry's fullUrl (bdl-7), and the logical models
StructureDefinition-Definition, -Event, -FiveWs and -Request are neither abstract nor have a
baseDefinition (sdf-4).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import constraints, resource_types, structure
from fhirlead.errors import Issue
from fhirlead.validation.fhirpath_compiler import Env, Static, declared_static, kind_of
from fhirlead.validation.fhirpath_values import compare_dates
from fhirlead.validation.invariant_checks import (
    NATIVE,
    NATIVE_CHECKS,
    NOT_CHECKED,
    Check,
    check_for,
    contained_failures,
)

__all__ = ["NATIVE", "NOT_CHECKED", "Invariants", "compare_dates"]

log = logging.getLogger(__name__)

EXTENSION_KEYS = ("extension", "modifierExtension")


@dataclass(eq=False, slots=True)
class _Plan:
    """What to do on an object of one type or backbone element: its checks, and the children to visit
    (JSON key -> (child plan, or None for a resource, and the FHIRPath name of the element))."""

    model_path: str
    checks: list[Check] = field(default_factory=list)
    members: list[tuple[str, Check]] = field(default_factory=list)  # constraints on primitive children
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

    def _checks(self, found: list[dict[str, Any]], static: Static, resource: Static, model_path: str) -> list[Check]:
        return [check_for(c, static, resource, model_path) for c in found]

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
                elif kind_of(code) == "primitive-type" and not name.endswith("[x]"):  # ElementDefinition.max
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
        if kind_of(code) != "complex-type":
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
                if type(check) is Check:
                    if not check.compiled:
                        check.compile()
                    how[check.key] = "compiled" if check.native is not None else "fhirpathpy"
        return how

    def check(self, resource: dict[str, Any], extended: bool | None = None) -> list[Issue]:
        """The invariant violations of `resource` (already checked against the JSON Schema). `extended`:
        whether it has any extension, when the caller knows (else looked for); when it has none, the
        extension pass is skipped."""
        run = _Run(resource)
        self._resource(resource, resource, run)
        if extended if extended is not None else has_extensions(resource):
            self._scan(resource, Env(resource, resource), run)
        return run.issues

    # the typed walk

    def _resource(self, resource: dict[str, Any], root: dict[str, Any], run: _Run) -> None:
        resource_type = resource.get("resourceType")
        if resource_type not in resource_types():
            return
        plan = self._plans.for_type(resource_type)
        env = Env(resource, root)
        contained = resource.get("contained")
        if contained and resource is root:
            self._contained(resource, contained, run)
        self._walk(resource, plan, env, run)

    def _walk(self, node: dict[str, Any], plan: _Plan, env: Env, run: _Run) -> None:
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
        """dom-2 .. dom-5 on a resource's contained resources (invariant_checks.contained_failures)."""
        for position, key, detail in contained_failures(resource, contained):
            self._report(run, key, "error", self._human[key], detail, ("contained", position))

    # the untyped pass: ext-1, and typed walks of complex extension values

    def _scan(self, node: dict[str, Any], env: Env, run: _Run) -> None:
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
                            self._scan(item, Env(item, env.root if key == "contained" else item), run)
                        else:
                            self._scan(item, env, run)
            elif isinstance(value, dict):
                if "resourceType" not in value:
                    self._scan(value, env, run)
                elif has_extensions(value):  # Bundle.entry.resource: skipped when it has no extension
                    self._scan(value, Env(value, value), run)

    def _extension(self, extension: dict[str, Any], env: Env, run: _Run) -> None:
        has_value = False
        for key, value in extension.items():
            if key.startswith("value") or key.startswith("_value"):
                has_value = True
                if isinstance(value, dict) and key[5:6].isupper():
                    plan = self._plans.for_type(key[5:]) if kind_of(key[5:]) == "complex-type" else None
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
                found = (key, declared_static(owner, prefix + key, elements[prefix + key][0]))
            else:
                for element_path, (types, _, _, _) in elements.items():
                    if element_path.startswith(prefix) and element_path.endswith("[x]"):
                        base = element_path[len(prefix):-3]
                        for code in types:
                            if "." not in base and key == base + code[0].upper() + code[1:]:
                                kind = kind_of(code)
                                child: Static = ("pos", code, "") if kind == "complex-type" else ("prim", code)
                                found = (f"{base}.ofType({code})", child)
            self._labels[(f"{owner}|{path}", key)] = cached = found or (key, ("any",))
        label, child = cached
        return label, child if child[0] == "pos" else None


_EXTENSION_KEY = b'xtension":'


def has_extensions(resource: dict[str, Any]) -> bool:
    """False when the resource has no extension anywhere: one byte scan of its compact JSON (~1 us a
    resource, where walking it costs ~5). A string that merely ends in "xtension" only costs the walk."""
    try:
        return _EXTENSION_KEY in fhirjson.dumps(resource)
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
