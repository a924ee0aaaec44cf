"""Validator: the one entry point the write interactions call for an incoming resource."""

from __future__ import annotations

from typing import Any

from fhirlead.errors import FhirError, Issue
from fhirlead.validation import rules, structure
from fhirlead.validation.schema import SchemaValidator


class Validator:
    def __init__(self) -> None:
        self.schema = SchemaValidator()

    def issues(self, resource: dict[str, Any], expected_type: str | None = None) -> list[Issue]:
        """Everything wrong with `resource`, warnings included (docs/validation.md: each layer runs
        when the earlier ones found nothing)."""
        issues: list[Issue] = rules.check_type(resource, expected_type)
        if not issues:
            issues = rules.check_json_shape(resource) + self.schema.validate(resource)
        if not issues:
            issues = structure.check(resource)
        return issues

    def check(self, resource: dict[str, Any], expected_type: str | None = None) -> None:
        """Raise a 400 FhirError listing what is wrong with `resource`, or return quietly."""
        issues = self.issues(resource, expected_type)
        if any(failed(issue) for issue in issues):
            raise FhirError(400, issues)  # warnings alone do not refuse a write


def failed(issue: Issue) -> bool:
    return issue.severity in ("error", "fatal")
