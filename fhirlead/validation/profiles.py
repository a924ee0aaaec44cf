"""Validation against profiles: the ones a resource claims in `meta.profile` and the ones a caller asks
for (`$validate?profile=`), each compiled once (profile_model.py) and checked (profile_check.py).

https://hl7.org/fhir/R4/resource-definitions.html#Meta.profile: a claimed profile the server does not
know is not an error (servers are not required to know every profile); `$validate` says it was not
checked. A profile for another resource type is an error: the claim is false.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from fhirlead.clock import instant, now
from fhirlead.definitions import required_bindings, resource_types
from fhirlead.errors import Issue
from fhirlead.terminology import Terminology, default_terminology
from fhirlead.validation.conformance import Conformance, default_conformance
from fhirlead.validation.extension_sweep import ExtensionSweep, has_extensions
from fhirlead.validation.fhirpath_compiler import Env
from fhirlead.validation.invariant_checks import Check, check_for
from fhirlead.validation.profile_check import CORE, ProfileRun
from fhirlead.validation.profile_model import CompiledProfile, ProfileBuilder, build


class Profiles:
    """The compiled profiles of one Conformance, rebuilt when its definitions change."""

    def __init__(self, conformance: Conformance | None = None, terminology: Terminology | None = None) -> None:
        self.conformance = conformance or default_conformance()
        self.terminology = terminology or default_terminology()
        self._compiled: dict[str, CompiledProfile | None] = {}
        self._generation = -1
        self._lock = threading.Lock()
        self.required: dict[str, list[tuple[str, Check | None]]] = {}  # type -> (profile, condition)

    def require(self, rules: Iterable[tuple[str, str, str | None]]) -> None:
        """Profiles every write of a type must meet, where the FHIRPath condition (if any) holds
        (settings.required_profiles). Raises ValueError for a type that is not a resource type."""
        for type_, profile, when in rules:
            if type_ not in resource_types():
                raise ValueError(f"FHIRLEAD_REQUIRED_PROFILES: {type_!r} is not a resource type")
            condition = None if when is None else check_for(
                {"key": "when", "severity": "error", "human": when, "expression": when},
                ("res", type_), ("res", type_), type_)
            self.required.setdefault(type_, []).append((profile, condition))

    def _required_for(self, resource: dict[str, Any]) -> list[str]:
        found = []
        for profile, condition in self.required.get(resource.get("resourceType", ""), ()):
            if condition is None or condition.holds(resource, Env(resource, resource)) is True:
                found.append(profile)
        return found

    def compiled(self, canonical: str) -> CompiledProfile | None:
        if self._generation != self.conformance.generation:
            with self._lock:
                self._compiled, self._generation = {}, self.conformance.generation
        if canonical not in self._compiled:
            found = build(self.conformance, canonical)
            with self._lock:
                self._compiled[canonical] = found
        return self._compiled[canonical]

    def _base_bindings(self, type_name: str) -> CompiledProfile | None:
        """The R4 base definition's required bindings on the type's Coding, CodeableConcept and Quantity
        elements (AllergyIntolerance.clinicalStatus, Condition.verificationStatus, ...), as a profile."""
        bindings = required_bindings().get(type_name)
        if not bindings:
            return None
        found = self._compiled.get(f"base-bindings:{type_name}")
        if found is None:
            builder = ProfileBuilder(type_name)
            for path, value_set in bindings.items():
                builder.merge({"id": f"{type_name}.{path}", "path": f"{type_name}.{path}",
                               "binding": {"strength": "required", "valueSet": value_set}})
            found = CompiledProfile(CORE + type_name, f"{type_name} (R4 base)", type_name, builder.root, [])
            with self._lock:
                self._compiled[f"base-bindings:{type_name}"] = found
        return found

    def known(self, canonical: str) -> bool:
        return self.conformance.is_base(canonical) or self.conformance.get(canonical) is not None

    def check(self, resource: dict[str, Any], asked: Iterable[str] = (), writing: bool = False,
              extended: bool | None = None) -> list[Issue]:
        """The issues of `resource` against its claimed profiles and `asked` ones (each once). When
        `writing`, a claimed profile of the R4 core itself (vitalsigns, shareablevalueset, cqllibrary,
        ...) reports what it finds as warnings: those were published as examples of profiling, several
        were superseded (the knowledge-artifact ones by CRMI), and published content claims them without
        meeting them (CMS's eCQM ValueSets claim shareablevalueset without `experimental`). `$validate`
        reports them in full; US Core's vital signs, which build on them, are enforced in full. A write is
        also held to the profiles `require` set for its type, and is checked as it will be stored.
        `extended`: whether the resource has any extension, when the caller knows (else looked for)."""
        if writing:
            resource = _as_stored(resource)
        meta = resource.get("meta")
        claimed = meta.get("profile", []) if isinstance(meta, dict) else []
        asked = list(asked)
        required = self._required_for(resource) if writing and self.required else []
        issues: list[Issue] = []
        run = ProfileRun(self.compiled, self.terminology)
        for canonical in dict.fromkeys([*claimed, *asked, *required]):
            if not isinstance(canonical, str) or self.conformance.is_base(canonical):
                continue  # the base definitions are checked on every write already
            profile = self.compiled(canonical)
            if profile is None and canonical in required:
                issues.append(Issue("not-supported", f"Every {resource.get('resourceType')} written here must meet "
                                    f"{canonical}, which this server does not hold: it cannot be accepted"))
                continue
            if profile is None:
                issues.append(Issue("not-supported", f"Profile {canonical} is not known to this server: not checked",
                                    severity="information", expression=("meta.profile",)))
                continue
            if profile.type != resource.get("resourceType"):
                issues.append(Issue("invalid", f"Profile {canonical} is for {profile.type}, not "
                                    f"{resource.get('resourceType')}", expression=("meta.profile",)))
                continue
            issues += _notes(profile)
            lenient = writing and canonical.startswith(CORE) and canonical not in asked and canonical not in required
            run.lenient += lenient
            run.check(resource, profile)
            run.lenient -= lenient
        base = self._base_bindings(str(resource.get("resourceType")))
        if base is not None:  # the base definitions' required bindings the JSON Schema cannot enumerate
            run.check(resource, base)
        if extended is None:
            extended = has_extensions(resource)
        if extended:  # every extension, claimed profiles or not (extension_sweep.py)
            run.profile = None
            ExtensionSweep(run).resource(resource, "")
        return issues + run.issues


def _as_stored(resource: dict[str, Any]) -> dict[str, Any]:
    """What the server will store: `id`, `meta.versionId` and `meta.lastUpdated` are the server's to set
    (https://hl7.org/fhir/R4/http.html#create), so a profile requiring them (atr-group: lastUpdated) is
    met by a write without them."""
    meta = resource.get("meta")
    meta = dict(meta) if isinstance(meta, dict) else {}
    meta.setdefault("versionId", "1")
    meta.setdefault("lastUpdated", instant(now()))
    return {**resource, "id": resource.get("id", "new"), "meta": meta}


def _notes(profile: CompiledProfile) -> list[Issue]:
    notes = [Issue("informational", f"Profile {profile.url}: {what} (the version held was used)",
                   severity="information") for what in profile.substituted]
    if profile.missing_base:
        notes.append(Issue("not-supported", f"Profile {profile.url} derives from {profile.missing_base}, which this "
                           "server does not hold: that ancestor's rules were not checked", severity="warning"))
    return notes
