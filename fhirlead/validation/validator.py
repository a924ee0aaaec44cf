"""Validator: the one entry point the write interactions call for an incoming resource."""

from __future__ import annotations

from typing import Any

from fhirlead.errors import FhirError, Issue
from fhirlead.validation import rules, structure
from fhirlead.validation.schema import SchemaValidator


class Validator:
    def __init__(self) -> None:
        self.schema = SchemaValidator()

    def check(self, resource: dict[str, Any], expected_type: str | None = None) -> None:
        """Raise a 400 FhirError listing what is wrong with `resource`, or return quietly."""
        issues: list[Issue] = rules.check_type(resource, expected_type)
        if not issues:
            issues = rules.check_json_shape(resource) + self.schema.validate(resource)
        if not issues:
            issues = structure.check(resource)
        if any(issue.severity in ("error", "fatal") for issue in issues):
            raise FhirError(400, issues)  # warnings alone do not refuse a write
