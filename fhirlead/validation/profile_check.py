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
        return isinstance(value, dict) and all(
            key in value and matches_pattern(value[key], wanted) for key, wanted in pattern.items())
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(matches_pattern(item, wanted) for item in items) for wanted in pattern)
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
        for child in rule.children.values():
            self._element(value, child, where)
        if "extension" in value and "extension" not in rule.children:
            for position, extension in enumerate(value["extension"]):
                self._extension(extension, f"{where}.extension[{position}]")

    def _element(self, node: dict[str, Any], rule: Rule, where: str) -> None:
        found = values_of(node, rule)
        base = f"{where}.{rule.name[:-3] if rule.name.endswith('[x]') else rule.name}"
        self._cardinality(len(found), rule, f"{where}.{found[0][0]}" if found else base, rule.id)
        for key, position, value, code in found:
            location = f"{where}.{key}" if position is None else f"{where}.{key}[{position}]"
            self._apply(value, code, rule, location)
            if rule.name in ("extension", "modifierExtension") and isinstance(value, dict):
                self._extension(value, location)
        if rule.slices:
            self._slices(found, rule, where)

    def _cardinality(self, count: int, rule: Rule, where: str, what: str) -> None:
        if count < rule.min:
            self._issue(where, f"at least {rule.min} required, found {count}", rule, code="required")
        elif rule.max is not None and count > rule.max:
            self._issue(where, f"at most {rule.max} allowed, found {count}", rule)

    def _value_checks(self, value: Any, type_code: str | None, rule: Rule, where: str) -> None:
        if rule.types is not None and type_code is not None and rule.type_slice is None:
            allowed = rule.type_codes()
            if type_code not in allowed and rule.name.endswith("[x]"):
                self._issue(where, f"type {type_code} is not allowed here; allowed: {', '.join(allowed)}", rule)
                return
        if rule.fixed is not NOTHING and not equals_fixed(value, rule.fixed):
            self._issue(where, f"must be exactly {_shown(rule.fixed)}, found {_shown(value)}", rule, code="value")
        if rule.pattern is not NOTHING and not matches_pattern(value, rule.pattern):
            self._issue(where, f"must match the pattern {_shown(rule.pattern)}, found {_shown(value)}",
                        rule, code="value")
        if value is None:
            return
        if rule.binding is not None and self.terminology is not None:
            self._binding(value, type_code, rule, where)
        if type_code == "Reference" and isinstance(value, dict) and rule.target_profiles():
            self._reference(value, rule, where)
        for profile in rule.type_profiles():
            if type_code != "Extension":
                self._type_profile(value, profile, where)
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
        compiled = self.resolve(canonical)
        if compiled is None or not isinstance(value, dict):
            return
        outer, self.profile = self.profile, compiled
        try:
            self._apply(value, compiled.type, compiled.root, where)
        finally:
            self.profile = outer

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
        for index, chosen in enumerate(rule.slices):
            if chosen.type_slice is None:
                self._cardinality(counts[index], chosen, f"{where}.{rule.name}", chosen.id)

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
        """Whether `value` satisfies one discriminator of the slice; None when it cannot be evaluated."""
        kind, path = discriminator.get("type"), str(discriminator.get("path", "$this"))
        if kind in ("value", "pattern") and path == "url" and chosen.type_profiles() and "url" not in chosen.children:
            urls = [profile.partition("|")[0] for profile in chosen.type_profiles()]  # an extension slice
            return isinstance(value, dict) and value.get("url") in urls
        target = _rule_at(chosen, path)
        if target is None:
            return None
        found = _descend([value], path)
        if kind in ("value", "pattern"):
            if target.fixed is not NOTHING:
                return any(equals_fixed(item, target.fixed) for item in found)
            if target.pattern is not NOTHING:
                return any(matches_pattern(item, target.pattern) for item in found)
            return None
        if kind == "exists":
            if target.min >= 1:
                return bool(found)
            if target.max == 0:
                return not found
            return None
        if kind == "type":
            wanted = target.type_codes()
            if path in ("$this", ""):
                actual = value.get("resourceType") if isinstance(value, dict) and "resourceType" in value else code
                return actual in wanted
            return None
        return None  # profile: decided by conformance below

    def _conforms(self, value: Any, code: str | None, chosen: Rule) -> bool:
        """Whether `value` meets the slice's own rules (no error): the fallback discriminator."""
        trial = ProfileRun(self.resolve, self.terminology)
        trial.env, trial.profile, trial.lenient = self.env, self.profile, self.lenient
        trial._apply(value, code, chosen, "")
        return not any(issue.severity in ("error", "fatal") for issue in trial.issues)


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
