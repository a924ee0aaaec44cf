"""Validator: the one entry point the write interactions call for an incoming resource."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from fhirlead.errors import FhirError, Issue
from fhirlead.terminology import default_terminology
from fhirlead.validation import rules, structure
from fhirlead.validation.conformance import Conformance, default_conformance
from fhirlead.validation.invariants import Invariants, has_extensions
from fhirlead.validation.profiles import Profiles
from fhirlead.validation.schema import SchemaValidator


@cache
def base_invariants() -> Invariants:
    """One per process: compiling the R4 constraints takes ~0.3 s, their checks are thread-safe."""
    invariants = Invariants()
    invariants.compile_all()
    return invariants


class Validator:
    def __init__(self, profiles: Profiles | None = None) -> None:
        self.schema = SchemaValidator()
        self.invariants = base_invariants()
        self.profiles = profiles or Profiles()

    @classmethod
    def for_server(cls) -> Validator:
        """A validator whose definitions a server may add to (its store's StructureDefinitions, ValueSets
        and CodeSystems: fhirlead/validation/live.py) without touching other servers in the process."""
        return cls(Profiles(Conformance(parent=default_conformance()), default_terminology().overlay()))

    def issues(self, resource: dict[str, Any], expected_type: str | None = None,
               profiles: Sequence[str] = (), writing: bool = False) -> list[Issue]:
        """Everything wrong with `resource`, warnings and notes included (docs/validation.md: each layer
        runs when the earlier ones found nothing): the base definitions, then the profiles it claims in
        `meta.profile` and `profiles` (`writing`: as a write holds it to them, see Profiles.check)."""
        issues: list[Issue] = rules.check_type(resource, expected_type)
        extended: bool | None = None
        if not issues:
            issues = rules.check_json_shape(resource) + self.schema.validate(resource)
        if not issues:
            extended = has_extensions(resource)  # one byte scan, for both layers' extension passes
            issues = structure.check(resource) + self.invariants.check(resource, extended)
        if not any(failed(issue) for issue in issues):
            issues += self.profiles.check(resource, profiles, writing, extended)
        return issues

    def check(self, resource: dict[str, Any], expected_type: str | None = None) -> None:
        """Raise a 400 FhirError listing what is wrong with `resource`, or return quietly."""
        errors = [issue for issue in self.issues(resource, expected_type, writing=True) if failed(issue)]
        if errors:  # warnings alone do not refuse a write, nor crowd a refusal (`$validate` lists them)
            raise FhirError(400, errors)


def failed(issue: Issue) -> bool:
    return issue.severity in ("error", "fatal")
