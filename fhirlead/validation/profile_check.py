"""Checking a resource against a compiled profile (profile_model.py): the walk over the rule tree.

Per element (https://hl7.org/fhir/R4/elementdefinition.html): cardinality (`min`/`max`), allowed types
of a choice element and the resource types a Reference may point at (`targetProfile`, by the type each
profile constrains), `fixed[x]` (exactly equal) and `pattern[x]` (the instance holds at least what the
pattern holds: https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.pattern_x_),
bindings (terminology.py decides membership; `required` is an error, `extensible` and `preferred`
warnings), the profile's invariants, extensions against the definitions their `url` names, and
slicing (https://hl7.org/fhir/R4/profiling.html#slicing): each value is matched to the first slice
whose discriminators it satisfies (value/pattern, exists, type, profile; a discriminator the server
cannot evaluate falls back to "the value conforms to the slice"), then each slice's cardinality,
`closed` (no value outside the slices), `openAtEnd` and `ordered` are checked.

Only errors refuse a write. `mustSupport` never makes an instance invalid (profiling.html#mustsupport).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

from fhirlead.definitions import resource_types
from fhirlead.errors import Issue
from fhirlead.terminology import Terminology
from fhirlead.validation.fhirpath_compiler import Env
from fhirlead.validation.fhirpath_values import Fallback, order
from fhirlead.validation.profile_model import NOTHING, CompiledProfile, Rule, type_suffixes

log = logging.getLogger(__name__)

# (JSON key, position in its array or None, the value (None for a primitive with only `_key`), type code)
Found = tuple[str, int | None, Any, str | None]
CORE = "http://hl7.org/fhir/StructureDefinition/"
_EXTENSION_PATH = re.compile(r"^extension\('([^']+)'\)$")


def matches_pattern(value: Any, pattern: Any) -> bool:
    """The instance holds every element of the pattern, with the same value; for a repeating element,
    each pattern item is matched by some instance item."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for key, wanted in pattern.items():  # noqa: SIM110 (loops, not all() over a generator: a hot path of slicing)
            if key not in value or not matches_pattern(value[key], wanted):
                return False
        return True
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        for wanted in pattern:
            for item in items:
                if matches_pattern(item, wanted):
                    break
            else:
                return False
        return True
    return _same_primitive(value, pattern)


def equals_fixed(value: Any, fixed: Any) -> bool:
    """Exactly the fixed value: no element more or fewer, arrays in the same order."""
    if isinstance(fixed, dict):
        return isinstance(value, dict) and value.keys() == fixed.keys() and all(
            equals_fixed(value[key], wanted) for key, wanted in fixed.items())
    if isinstance(fixed, list):
        return isinstance(value, list) and len(value) == len(fixed) and all(
            equals_fixed(item, wanted) for item, wanted in zip(value, fixed, strict=True))
    return _same_primitive(value, fixed)


def _same_primitive(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted
    return value == wanted


def _shown(value: Any) -> str:
    from fhirlead import fhirjson

    text = fhirjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 200 else text[:200] + "…"


def values_of(node: dict[str, Any], rule: Rule) -> list[Found]:
    """The values of `rule`'s element in `node`, with their types."""
    name = rule.name
    if name.endswith("[x]"):
        prefix = name[:-3]
        found: list[Found] = []
        for key, value in node.items():
            if key.startswith(prefix) and key != prefix:
                code = type_suffixes().get(key[len(prefix):])
                if code is not None:
                    found.append((key, None, value, code))
            elif key.startswith("_" + prefix):
                code = type_suffixes().get(key[len(prefix) + 1:])
                if code is not None and key[1:] not in node:
                    found.append((key[1:], None, None, code))
        return found
    code = rule.base_types[0] if len(rule.base_types) == 1 else None
    value = node.get(name)
    if value is None:
        return [(name, None, None, code)] if f"_{name}" in node else []
    if isinstance(value, list):
        return [(name, position, item, code) for position, item in enumerate(value)]
    return [(name, None, value, code)]


def _descend(values: list[Any], path: str) -> list[Any]:
    """The values at a discriminator path (a restricted FHIRPath: names, `extension('url')`, `$this`)."""
    if path in ("$this", ""):
        return values
    for step in path.split("."):
        extension = _EXTENSION_PATH.match(step)
        found: list[Any] = []
        for value in values:
            if not isinstance(value, dict):
                continue
            if extension:
                found += [e for e in value.get("extension", ()) if isinstance(e, dict) and e.get("url") == extension[1]]
                continue
            child = value.get(step)
            if child is None:
                found += [item for key, item in value.items() if key.startswith(step) and key != step
                          and key[len(step):] in type_suffixes()]
            else:
                found += child if isinstance(child, list) else [child]
        values = found
    return values


class ProfileRun:
    """One resource against one or more profiles; collects the issues."""

    def __init__(self, resolve: Callable[[str], CompiledProfile | None],
                 terminology: Terminology | None = None) -> None:
        self.resolve = resolve  # canonical -> compiled profile (extensions, type profiles)
        self.terminology = terminology  # value set membership (None: bindings are not checked)
        self.issues: list[Issue] = []
        self.profile: CompiledProfile | None = None
        self.env: Env | None = None
        self.lenient = 0  # inside a core extension: errors are reported as warnings

    def check(self, resource: dict[str, Any], profile: CompiledProfile) -> list[Issue]:
        outer, self.profile = self.profile, profile
        self.env = self.env or Env(resource, resource)
        try:
            self._apply(resource, profile.type, profile.root, profile.type)
        finally:
            self.profile = outer
        return self.issues

    # issues

    def _issue(self, where: str, text: str, rule: Rule, severity: str = "error", code: str = "structure") -> None:
        assert self.profile is not None
        if self.lenient and severity == "error":
            severity = "warning"
        self.issues.append(Issue(code, f"{where}: {text} (profile '{self.profile.title}', element {rule.id})",
                                 severity=severity, expression=(where,)))

    # the walk

    def _apply(self, value: Any, type_code: str | None, rule: Rule, where: str) -> None:
        """`rule`'s checks on one value, then its children's on what the value holds."""
        self._value_checks(value, type_code, rule, where)
        if not isinstance(value, dict):
            return
        for child in rule.live_children:
            self._element(value, child, where)

    def _element(self, node: dict[str, Any], rule: Rule, where: str) -> None:
        found = values_of(node, rule)
        count = len(found)
        if count < rule.min or (rule.max is not None and count > rule.max):
            base = f"{where}.{rule.name[:-3] if rule.name.endswith('[x]') else rule.name}"
            self._cardinality(count, rule, f"{where}.{found[0][0]}" if found else base, rule.id)
        for key, position, value, code in found:
            location = f"{where}.{key}" if position is None else f"{where}.{key}[{position}]"
            self._apply(value, code, rule, location)
        if rule.slices:
            self._slices(found, rule, where)

    def _cardinality(self, count: int, rule: Rule, where: str, what: str) -> None:
        if count < rule.min:
            self._issue(where, f"at least {rule.min} required, found {count}", rule, code="required")
        elif rule.max is not None and count > rule.max:
            self._issue(where, f"at most {rule.max} allowed, found {count}", rule)

    def _value_checks(self, value: Any, type_code: str | None, rule: Rule, where: str) -> None:
        if rule.types is not None and type_code is not None and rule.type_slice is None \
                and rule.name.endswith("[x]"):
            allowed = rule.type_codes()
            if type_code not in allowed:
                self._issue(where, f"type {type_code} is not allowed here; allowed: {', '.join(allowed)}", rule)
                return
        if rule.fixed is not NOTHING and not equals_fixed(value, rule.fixed):
            self._issue(where, f"must be exactly {_shown(rule.fixed)}, found {_shown(value)}", rule, code="value")
        if rule.pattern is not NOTHING and not matches_pattern(value, rule.pattern):
            self._issue(where, f"must match the pattern {_shown(rule.pattern)}, found {_shown(value)}",
                        rule, code="value")
        if value is None:
            return
        if rule.bounds != (NOTHING, NOTHING):
            self._bounds(value, type_code, rule, where)
        if rule.lengths != (None, None) and isinstance(value, str):
            shortest, longest = rule.lengths
            if shortest is not None and len(value) < shortest:
                self._issue(where, f"{_shown(value)} is shorter than the minimum length {shortest}", rule, code="value")
            if longest is not None and len(value) > longest:
                self._issue(where, f"{len(value)} characters: longer than the maximum length {longest}", rule,
                            code="value")
        if rule.binding is not None and self.terminology is not None:
            self._binding(value, type_code, rule, where)
        if rule.types is not None:  # the profile's own type list: target and type profiles
            if type_code == "Reference" and isinstance(value, dict) and rule.target_profiles():
                self._reference(value, rule, where)
            if type_code != "Extension" and rule.type_profiles():
                self._type_profiles(value, rule.type_profiles(), where)
        assert self.env is not None
        for check in rule.checks_for(type_code):
            try:
                held = check.holds(value, self.env)
            except Exception as error:  # a constraint that cannot decide does not refuse the resource
                log.debug("profile constraint %s not evaluated: %s", check.key, type(error).__name__)
                continue
            if held is False:
                self._issue(where, f"{check.key}: {check.human}", rule,
                            severity="warning" if check.severity == "warning" else "error", code="invariant")

    def _bounds(self, value: Any, type_code: str | None, rule: Rule, where: str) -> None:
        """minValue[x]/maxValue[x] (https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.minValue_x_):
        numbers, dates and times by FHIRPath's order; a Quantity by its value when the units agree."""
        for bound, below in ((rule.bounds[0], True), (rule.bounds[1], False)):
            if bound is NOTHING:
                continue
            actual = value
            if isinstance(bound, dict) and isinstance(value, dict):  # Quantity
                if (bound.get("system"), bound.get("code")) != (value.get("system"), value.get("code")):
                    continue  # another unit: not compared (no unit conversion here)
                actual, bound = value.get("value"), bound.get("value")
            try:
                dates = isinstance(actual, str) and type_code not in ("time",)
                found = order(actual, bound, dates) if isinstance(actual, str) == isinstance(bound, str) else None
            except Fallback:
                continue
            if found is not None and ((below and found < 0) or (not below and found > 0)):
                word = "less than the minimum" if below else "greater than the maximum"
                self._issue(where, f"{_shown(value)} is {word} {_shown(bound)}", rule, code="value")

    def _reference(self, value: dict[str, Any], rule: Rule, where: str) -> None:
        target_type = self._target_type(value.get("reference"))
        if target_type is None:
            return
        allowed = set()
        for profile in rule.target_profiles():
            found = self.resolve_type(profile)
            if found is None:
                return  # a target the server does not know: nothing to say
            allowed.add(found)
        if target_type not in allowed and "Resource" not in allowed:
            self._issue(where, f"refers to a {target_type}; the profile allows {', '.join(sorted(allowed))}", rule)

    def resolve_type(self, canonical: str) -> str | None:
        url = canonical.partition("|")[0]
        if url.startswith(CORE) and (url[len(CORE):] in resource_types() or url[len(CORE):] == "Resource"):
            return url[len(CORE):]
        compiled = self.resolve(canonical)
        return compiled.type if compiled else None

    def _target_type(self, reference: Any) -> str | None:
        if not isinstance(reference, str) or reference.startswith(("urn:", "?")):
            return None
        if reference.startswith("#"):
            assert self.env is not None
            for item in self.env.root.get("contained", ()):
                if isinstance(item, dict) and item.get("id") == reference[1:]:
                    return item.get("resourceType")
            return None
        parts = reference.split("/_history/")[0].split("/")
        if len(parts) >= 2 and parts[-2] in resource_types():
            return parts[-2]
        return None

    def _type_profile(self, value: Any, canonical: str, where: str) -> None:
        if not isinstance(value, dict):
            return
        compiled = self.resolve(canonical)
        if compiled is not None:
            self._within(value, compiled, where)
            return
        base = self.resolve_type(canonical)  # a base resource definition: the type must be that one
        if base is not None and base != "Resource" and _is_resource(value) and value["resourceType"] != base:
            assert self.profile is not None
            self._issue(where, f"a {value['resourceType']} is not valid here: it must be a {base}", self.profile.root)

    def _within(self, value: dict[str, Any], compiled: CompiledProfile, where: str) -> None:
        """`value` against another profile (an extension's definition, a type's profile): a resource held
        in an element (Bundle.entry.resource) is its own %resource there."""
        outer, outer_env = self.profile, self.env
        self.profile = compiled
        if _is_resource(value):
            if value.get("resourceType") != compiled.type:
                self._issue(where or value.get("resourceType", ""), f"a {value.get('resourceType')} is not valid "
                            f"here: it must be a {compiled.type}", compiled.root)
                self.profile = outer
                return
            self.env = Env(value, value)
        try:
            self._apply(value, compiled.type, compiled.root, where or compiled.type)
        finally:
            self.profile, self.env = outer, outer_env

    def _type_profiles(self, value: Any, profiles: list[str], where: str) -> None:
        """https://hl7.org/fhir/R4/elementdefinition-definitions.html#ElementDefinition.type.profile: with
        several profiles, the value must conform to at least one of them."""
        if len(profiles) == 1:
            self._type_profile(value, profiles[0], where)
            return
        if not isinstance(value, dict):
            return
        failures = []
        for canonical in profiles:
            found = self._failures(value, canonical)
            if found is None or not found:
                return  # one it meets, or one the server cannot check
            failures.append(found[0].diagnostics)
        assert self.profile is not None
        self.issues.append(Issue("structure", f"{where}: conforms to none of its profiles ({'; '.join(failures)})",
                                 severity="warning" if self.lenient else "error", expression=(where,)))

    def _extension(self, extension: Any, where: str) -> None:
        """An extension is checked against the definition its url names, where the server holds it
        (https://hl7.org/fhir/R4/extensibility.html#Extension). The R4 core's own extension definitions
        were superseded by HL7's extensions package, which changed some (valueset-effectiveDate: dateTime
        then, date now, as CMS's published eCQM ValueSets write it): against those, warnings only."""
        if not isinstance(extension, dict) or not isinstance(extension.get("url"), str):
            return
        core = extension["url"].startswith(CORE)
        self.lenient += core
        try:
            self._type_profile(extension, extension["url"], where)
        finally:
            self.lenient -= core

    def _binding(self, value: Any, type_code: str | None, rule: Rule, where: str) -> None:
        strength, value_set = rule.binding  # type: ignore[misc]
        if strength not in ("required", "extensible", "preferred"):
            return
        codings = list(_codings(value, type_code))
        if not codings:
            return
        assert self.terminology is not None
        if isinstance(value, str):  # a code: its system is the one the binding implies
            verdicts = [self.terminology.contains_code(value_set, value)]
        else:
            verdicts = [self.terminology.contains(value_set, system, code) for system, code in codings]
        if any(verdict is not False for verdict in verdicts):
            return  # a code in the value set, or one the server cannot decide on
        shown = ", ".join(f"{system}#{code}" if system else code for system, code in codings)
        severity = "error" if strength == "required" else "warning"
        self._issue(where, f"{shown} is not in the value set {value_set} ({strength} binding)", rule,
                    severity=severity, code="code-invalid")

    # slicing

    def _slices(self, found: list[Found], rule: Rule, where: str) -> None:
        slicing = rule.slicing or {}
        closed = slicing.get("rules") == "closed"
        ordered = bool(slicing.get("ordered"))
        counts = [0] * len(rule.slices)
        last = -1
        for key, position, value, code in found:
            location = f"{where}.{key}" if position is None else f"{where}.{key}[{position}]"
            index = self._slice_of(value, code, rule)
            if index is None:
                if closed:
                    self._issue(location, "matches none of the slices and the slicing is closed", rule)
                elif slicing.get("rules") == "openAtEnd" and last >= 0:
                    pass  # an unsliced value after sliced ones is what openAtEnd allows
                continue
            if ordered and index < last:
                self._issue(location, f"slice {rule.slices[index].slice_name} is out of order", rule)
            last = max(last, index)
            counts[index] += 1
            self._apply(value, code, rule.slices[index], location)
        for index, chosen in enumerate(rule.slices):  # a type slice (value[x]:valueQuantity) counts its type
            name = chosen.slice_name if chosen.type_slice else rule.name
            self._cardinality(counts[index], chosen, f"{where}.{name}", chosen.id)

    def _slice_of(self, value: Any, code: str | None, rule: Rule) -> int | None:
        for index, chosen in enumerate(rule.slices):
            if chosen.type_slice is not None:
                if code == chosen.type_slice:
                    return index
                continue
            if self._matches(value, code, chosen, rule):
                return index
        return None

    def _matches(self, value: Any, code: str | None, chosen: Rule, rule: Rule) -> bool:
        discriminators = (rule.slicing or {}).get("discriminator") or []
        if not discriminators and rule.name in ("extension", "modifierExtension"):
            discriminators = [{"type": "value", "path": "url"}]  # Element.extension's own slicing
        for discriminator in discriminators:
            verdict = self._discriminate(value, code, chosen, discriminator)
            if verdict is None:
                return self._conforms(value, code, chosen)
            if not verdict:
                return False
        return bool(discriminators) or self._conforms(value, code, chosen)

    def _discriminate(self, value: Any, code: str | None, chosen: Rule, discriminator: dict[str, Any]) -> bool | None:
        """Whether `value` satisfies one discriminator of the slice; None when it cannot be evaluated
        (https://hl7.org/fhir/R4/profiling.html#discriminator)."""
        kind, path = discriminator.get("type"), str(discriminator.get("path", "$this"))
        if kind in ("value", "pattern") and path == "url" and chosen.type_profiles() and "url" not in chosen.children:
            urls = [profile.partition("|")[0] for profile in chosen.type_profiles()]  # an extension slice
            return isinstance(value, dict) and value.get("url") in urls
        target = _rule_at(chosen, path)
        found = _typed_descend([(value, code)], path)
        if kind in ("value", "pattern"):
            expected = _expected_at(chosen, path)
            if expected is None:
                return None
            fixed, wanted = expected
            test = equals_fixed if fixed else matches_pattern
            return any(test(item, wanted) for item, _ in found)
        if target is None:
            return None
        if kind == "exists":
            if target.min >= 1:
                return bool(found)
            if target.max == 0:
                return not found
            return None
        if kind == "type":
            wanted_types = self._types_named(target)
            known = [actual for _, actual in found if actual is not None]
            return any(actual in wanted_types for actual in known) if known else None
        if kind == "profile":
            profiles = target.type_profiles()
            if not profiles:
                return None
            return any(self._conforms_to(item, actual, profiles) for item, actual in found)
        return None

    def _types_named(self, rule: Rule) -> set[str]:
        """The type codes a rule allows; a resource element's by the types of its profiles."""
        wanted: set[str] = set()
        if rule.types is None:  # a choice element narrowed by a required type slice (payload.contentString 1..1)
            required = {chosen.type_slice for chosen in rule.slices if chosen.type_slice and chosen.min >= 1}
            if required:
                return required  # type: ignore[return-value]
        for entry in rule.types or [{"code": code} for code in rule.base_types]:
            if entry.get("code") in ("Resource", "DomainResource") and entry.get("profile"):
                wanted |= {found for found in map(self.resolve_type, entry["profile"]) if found}
            else:
                wanted.add(entry.get("code"))
        return wanted

    def _conforms_to(self, value: Any, code: str | None, profiles: list[str]) -> bool | None:
        """Whether `value` meets at least one of `profiles` (None: the server can check none of them)."""
        verdicts = [self._failures(value, canonical) for canonical in profiles]
        if all(found is None for found in verdicts):
            return None
        return any(found == [] for found in verdicts)

    def _failures(self, value: Any, canonical: str) -> list[Issue] | None:
        """The errors of `value` against one profile, tried apart; None when the server cannot check it."""
        if self.resolve(canonical) is None and self.resolve_type(canonical) is None:
            return None
        trial = ProfileRun(self.resolve, self.terminology)
        trial.lenient, trial.env, trial.profile = self.lenient, self.env, self.profile
        trial._type_profile(value, canonical, "")
        return _errors(trial.issues)

    def _conforms(self, value: Any, code: str | None, chosen: Rule) -> bool:
        """Whether `value` meets the slice's own rules (no error): the fallback discriminator."""
        trial = ProfileRun(self.resolve, self.terminology)
        trial.env, trial.profile, trial.lenient = self.env, self.profile, self.lenient
        trial._apply(value, code, chosen, "")
        return not any(issue.severity in ("error", "fatal") for issue in trial.issues)


def _errors(issues: list[Issue]) -> list[Issue]:
    return [issue for issue in issues if issue.severity in ("error", "fatal")]


def _is_resource(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def _typed_descend(values: list[tuple[Any, str | None]], path: str) -> list[tuple[Any, str | None]]:
    """Like `_descend`, keeping each value's type where it is known: a resource's type, a choice
    element's by its JSON key."""
    if path in ("$this", ""):
        return [(value, value["resourceType"] if _is_resource(value) else code) for value, code in values]
    found: list[tuple[Any, str | None]] = []
    for value, _ in values:
        for step_value in _descend([value], path):
            found.append((step_value, step_value["resourceType"] if _is_resource(step_value) else None))
    last = path.rsplit(".", 1)[-1]
    if all(code is None for _, code in found):  # a choice element at the end of the path: typed by its key
        typed = []
        for value, _ in values:
            parent = _descend([value], path.rsplit(".", 1)[0]) if "." in path else [value]
            for holder in parent:
                if isinstance(holder, dict):
                    for key, item in holder.items():
                        if key.startswith(last) and key[len(last):] in type_suffixes():
                            typed.append((item, type_suffixes()[key[len(last):]]))
        if typed:
            return typed
    return found


def _expected_at(chosen: Rule, path: str) -> tuple[bool, Any] | None:
    """The fixed (True) or pattern (False) value a slice requires at `path`: on the element there, else
    inside a fixed or pattern value of an element above it, nearest first (a slice `fixedContactPoint`
    discriminated by `system`)."""
    steps = [] if path in ("$this", "") else path.split(".")
    chain: list[Rule] = [chosen]
    for step in steps:
        below = chain[-1].children.get(step) or chain[-1].children.get(f"{step}[x]")
        if below is None:
            break
        chain.append(below)
    for depth in range(len(chain) - 1, -1, -1):
        rule = chain[depth]
        for fixed, held in ((True, rule.fixed), (False, rule.pattern)):
            if held is not NOTHING:
                inside: Any = held
                for step in steps[depth:]:
                    inside = inside[0] if isinstance(inside, list) and inside else inside
                    if not isinstance(inside, dict) or step not in inside:
                        return None
                    inside = inside[step]
                return fixed, inside
    return None


def _rule_at(chosen: Rule, path: str) -> Rule | None:
    if path in ("$this", ""):
        return chosen
    rule = chosen
    for step in path.split("."):
        extension = _EXTENSION_PATH.match(step)
        if extension:
            candidates = rule.children.get("extension")
            slices = candidates.slices if candidates else []
            rule = next((s for s in slices if extension[1] in [p.partition("|")[0] for p in s.type_profiles()]), None)
        else:
            rule = rule.children.get(step) or rule.children.get(f"{step}[x]")  # type: ignore[assignment]
        if rule is None:
            return None
    return rule


def _codings(value: Any, type_code: str | None) -> Iterator[tuple[str | None, str]]:
    """The (system, code) pairs a bound value carries: a code, a Coding, a CodeableConcept's codings, a
    Quantity's code."""
    if isinstance(value, str):
        yield None, value
    elif isinstance(value, dict):
        if type_code == "CodeableConcept" or "coding" in value:
            for coding in value.get("coding", ()):
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    yield coding.get("system"), coding["code"]
        elif isinstance(value.get("code"), str):
            yield value.get("system"), value["code"]
