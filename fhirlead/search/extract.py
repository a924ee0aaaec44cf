"""Extractor: a resource's search index entries, computed at write time from the registry.

Per resource type, an extraction plan is built once: for every indexed parameter, the compiled
accessors of its expression (`fhirlead.search.fhirpath`) paired with the converter of the parameter
type for the FHIR type each accessor reaches (`fhirlead.search.types.*`). A type's plans are then
written out as one generated function (`fhirlead.search.extract_codegen`); only expressions the compiler
cannot handle go through the validator's FHIRPath compiler or fhirpathpy.

A parameter whose expression cannot be planned, or fails on a resource (a SearchParameter written
through the API may say anything FHIRPath allows), is left out of that resource's entries and logged
(once per parameter and extractor): it never fails the write of the resource.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirlead.errors import bad_request
from fhirlead.search import derived
from fhirlead.search.entries import GroupEntries, IndexEntries
from fhirlead.search.extract_codegen import Generated, generate
from fhirlead.search.fhirpath import ROOT, Accessor, Unsupported, compile_expression
from fhirlead.search.registry import SearchParam, SearchRegistry
from fhirlead.search.types import date, number, quantity, reference, string, token, uri

log = logging.getLogger(__name__)

Converter = Callable[[str, Any, IndexEntries], None]
Evaluate = Callable[[Any], list[Any]]

MODULES = {
    "string": string,
    "token": token,
    "date": date,
    "number": number,
    "quantity": quantity,
    "reference": reference,
    "uri": uri,
}


@dataclass(frozen=True, slots=True)
class Branch:
    """One way to reach values of a parameter: an accessor and the converter for what it reaches."""

    accessor: Accessor | Evaluate
    convert: Converter
    compiled: bool


@dataclass(frozen=True, slots=True)
class ComponentPlan:
    kind: str
    branches: tuple[Branch, ...]
    key: int = 0  # names (kind, expression, base position), see _component_key; 0: not shared


@dataclass(frozen=True, slots=True)
class ParamPlan:
    key: str
    branches: tuple[Branch, ...]
    components: tuple[tuple[ComponentPlan, ...], ...] = ()  # composite: per base branch, its components
    fields: frozenset[str] | None = None  # elements every branch starts from (None: unknown), see extract()


def _first_fields(branches: tuple[Branch, ...]) -> frozenset[str] | None:
    fields = [branch.accessor.first_field if branch.compiled else None for branch in branches]
    return None if None in fields else frozenset(fields)  # type: ignore[arg-type]


def _fallback(expression: str, type_: str) -> Evaluate:
    """For the few expressions the path compiler does not handle: the validator's FHIRPath compiler
    (fhirlead/validation/fhirpath_compiler.py: nested `where`, `exists()`, boolean logic; ~µs a call),
    and fhirpathpy for what neither covers (slow: milliseconds per call)."""
    from fhirlead.validation.fhirpath_compiler import Env
    from fhirlead.validation.fhirpath_compiler import Unsupported as Beyond
    from fhirlead.validation.fhirpath_compiler import compile_expression as compile_typed
    from fhirlead.validation.fhirpath_values import Fallback

    try:
        typed = compile_typed(expression, ("res", type_), ("res", type_))
    except Beyond:
        return _fhirpathpy(expression)
    slow: list[Evaluate] = []

    def evaluate(resource: Any) -> list[Any]:
        try:
            return typed([resource], Env(resource, resource))
        except Fallback:  # a value the compiled form will not decide on
            if not slow:
                slow.append(_fhirpathpy(expression))
            return slow[0](resource)

    return evaluate


def _fhirpathpy(expression: str) -> Evaluate:
    from fhirpathpy import compile as fhirpath_compile  # imported lazily: heavy and rarely needed
    from fhirpathpy.models import models

    function = fhirpath_compile(expression, models["r4"])
    return lambda resource: function(resource)


def evaluated_by_fhirpathpy(expression: str, type_: str) -> bool:
    """Whether neither compiler covers `expression` (what the search tests keep to a handful)."""
    try:
        compile_expression(expression, type_)
        return False
    except Unsupported:
        from fhirlead.validation.fhirpath_compiler import Unsupported as Beyond
        from fhirlead.validation.fhirpath_compiler import compile_expression as compile_typed

        try:
            compile_typed(expression, ("res", type_), ("res", type_))
            return False
        except Beyond:
            return True


def _branches(expression: str, type_: str, kind: str, start: Any = None) -> tuple[tuple[Branch, ...], bool]:
    module = MODULES[kind]
    try:
        accessors = compile_expression(expression, type_, start)
    except Unsupported as why:
        if start is not None:
            raise
        log.debug("fhirpathpy fallback for %s: %s (%s)", type_, expression, why)
        return (Branch(_fallback(expression, type_), module.converter("*"), False),), False
    found = []
    for accessor in accessors:
        convert = module.converter(accessor.type)
        if convert is not None:
            found.append(Branch(accessor, convert, True))
    return tuple(found), True


def plan_param(registry: SearchRegistry, type_: str, param: SearchParam) -> ParamPlan | None:
    if not param.indexed or param.expression is None:
        return None
    computed = derived.values_of(param.url)
    if computed is not None:
        return ParamPlan(param.code, (Branch(computed, token.converter("code"), False),))
    if param.type != "composite":
        branches, _ = _branches(param.expression, type_, param.type)
        return ParamPlan(param.code, branches, fields=_first_fields(branches)) if branches else None
    try:
        bases = compile_expression(param.expression, type_)
    except Unsupported:
        log.warning("composite %s.%s not indexed: unsupported base %s", type_, param.code, param.expression)
        return None
    parts = []
    for component in param.components:
        definition = registry.by_url(component.definition)
        if definition is None or definition.type not in MODULES:
            log.warning(
                "composite %s.%s not indexed: component %s unknown", type_, param.code, component.definition
            )
            return None
        parts.append(definition.type)
    base_branches, per_base = [], []
    for base in bases:
        components = []
        try:
            for kind, component in zip(parts, param.components, strict=True):
                branches, _ = _branches(component.expression, type_, kind, base.position)
                shared = _component_key(kind, component.expression, base.position)
                components.append(ComponentPlan(kind, branches, shared))
        except Unsupported:
            log.warning(
                "composite %s.%s: component beyond the compiler, base %s skipped",
                type_,
                param.code,
                base.type,
            )
            continue
        base_branches.append(Branch(base, _keep_node, True))
        per_base.append(tuple(components))
    if not base_branches:
        return None
    return ParamPlan(param.code, tuple(base_branches), tuple(per_base), _first_fields(tuple(base_branches)))


_COMPONENT_KEYS: dict[tuple[str, str, Any], int] = {}
_COMPONENT_NUMBERS = itertools.count(1)  # next() and setdefault() are atomic: distinct keys on any thread


def _component_key(kind: str, expression: str, base: Any) -> int:
    """A small integer per (kind, expression, base position): components with equal keys reach equal
    values from a node, so composites share them (hashing the position itself costs on every node)."""
    key = (kind, expression, base)
    known = _COMPONENT_KEYS.get(key)
    return known if known is not None else _COMPONENT_KEYS.setdefault(key, next(_COMPONENT_NUMBERS))


def _keep_node(key: str, value: Any, out: IndexEntries) -> None:  # composite bases are not converted
    raise AssertionError("composite base nodes are handled by _composite")


class Extractor:
    """Turns a resource into IndexEntries; plans are built per resource type on first use."""

    def __init__(self, registry: SearchRegistry) -> None:
        self.registry = registry
        self._plans: dict[str, tuple[ParamPlan, ...]] = {}
        self._failed: set[tuple[str, str]] = set()  # (type, key) already logged as failing
        self._functions: dict[str, Generated] = {}

    def plans(self, type_: str) -> tuple[ParamPlan, ...]:
        found = self._plans.get(type_)
        if found is None:
            built = (self._plan(type_, param) for param in self.registry.parameters_for(type_))
            found = self._plans[type_] = tuple(plan for plan in built if plan is not None)
        return found

    def _plan(self, type_: str, param: SearchParam) -> ParamPlan | None:
        try:
            return plan_param(self.registry, type_, param)
        except Exception as error:  # an expression no compiler takes: the parameter indexes nothing
            self._failure(type_, param.code, error)
            return None

    def _failure(self, type_: str, key: str, error: Exception) -> None:
        """Log a parameter that could not be evaluated (its class only: messages may quote data)."""
        if (type_, key) not in self._failed:
            self._failed.add((type_, key))
            log.warning("search parameter %s.%s could not be evaluated (%s): its values are left out of the "
                        "index", type_, key, type(error).__name__)

    def warm(self) -> None:
        """Build every plan now (start-up) instead of on each type's first write."""
        for type_ in self.registry.types():
            self._generated(type_)

    def extract(self, resource: dict[str, Any]) -> IndexEntries:
        type_ = resource.get("resourceType")
        if not isinstance(type_, str) or not self.registry.is_resource_type(type_):
            raise bad_request(f"Cannot index a resource of type {type_!r}")
        if type_ == "Group":
            return self.extract_group(resource)
        return self._extract(type_, resource)

    def extract_group(self, group: dict[str, Any]) -> GroupEntries:
        """A Group's entries, split into those of the Group without members and those of each member
        (each extracted from a Group holding only that member: no search parameter of R4 combines a
        member with another element)."""
        members = group.get("member")
        head = {key: value for key, value in group.items() if key != "member"}
        out = GroupEntries(head=self._extract("Group", head))
        out.add(out.head)
        if isinstance(members, list):
            for member in members:
                entries = self.extract_member(member)
                out.members.append(entries)
                out.add(entries)
        return out.dedupe()

    def extract_member(self, member: Any) -> IndexEntries:
        """The entries one `Group.member` element contributes."""
        return self._extract("Group", {"resourceType": "Group", "member": [member]})

    def _generated(self, type_: str) -> Generated:
        found = self._functions.get(type_)
        if found is None:
            failed = functools.partial(self._failure, type_)
            found = self._functions[type_] = generate(self.plans(type_), _composite, failed, ROOT)
        return found

    def _extract(self, type_: str, resource: dict[str, Any]) -> IndexEntries:
        """Every plan of `type_` on `resource`, through the function generated from them
        (`extract_codegen`): a plan whose paths start from elements the resource lacks is skipped, one
        that raises keeps the entries it added (each is a true value) and is logged."""
        out = IndexEntries()
        self._generated(type_)(resource, out, {})
        return out.dedupe()


def evaluate_param(registry: SearchRegistry, type_: str, param: SearchParam, resource: dict[str, Any]) -> IndexEntries:
    """The entries `param` alone gives `resource` (of `type_`), raising what planning or evaluating it
    raises instead of leaving it out (how a SearchParameter is tried before it is stored)."""
    plan = plan_param(registry, type_, param)
    out = IndexEntries()
    if plan is None:
        return out
    if plan.components:
        _composite(plan, resource, out, {})
        return out
    for branch in plan.branches:
        for value in branch.accessor([resource], resource) if branch.compiled else branch.accessor(resource):
            branch.convert(plan.key, value, out)
    return out


def _composite(plan: ParamPlan, resource: dict[str, Any], out: IndexEntries,
               reached: dict[tuple[int, int], tuple[Any, list[tuple[str, tuple]]]]) -> None:
    """`reached`: a component's values per node, shared by the composites of one resource (Observation's
    code-value-quantity, code-value-concept, code-value-date, ... all read `code` from the same node)."""
    root = [resource]
    for base, components in zip(plan.branches, plan.components, strict=True):
        for node in base.accessor(root, resource):
            per_component = []
            for component in components:
                known = (component.key, id(node))
                held = reached.get(known) if component.key else None
                found = held[1] if held is not None and held[0] is node else None  # the node held: its id stays its own
                if found is None:
                    scratch = IndexEntries()
                    for branch in component.branches:
                        for value in branch.accessor([node], resource):
                            branch.convert("", value, scratch)
                    values = [entry[1:] for entry in scratch.of_kind(component.kind) if entry[0] == ""]
                    found = [(component.kind, value) for value in dict.fromkeys(values)]
                    if component.key:
                        reached[known] = (node, found)
                if not found:
                    break
                per_component.append(found)
            else:
                for combination in itertools.product(*per_component):
                    out.composite.append((plan.key, tuple(combination)))
