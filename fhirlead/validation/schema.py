"""Structural validation against the official R4 JSON Schema, compiled with jsonschema-rs.

One compiled validator per resource type, built on first use (~50 ms each) and kept: the Rust
implementation validates a Patient in microseconds, where the Python `jsonschema` takes a millisecond
and seconds for a Bundle (the schema's resource `oneOf`).
"""

from __future__ import annotations

import threading
from functools import cache
from itertools import islice
from typing import Any

import jsonschema_rs

from fhirlead import fhirjson
from fhirlead.definitions import json_schema, resource_types
from fhirlead.errors import Issue

MAX_ISSUES = 20
# Primitive types whose published schema definition lets an empty string through (`uri`, `url` and
# `canonical` have the pattern `^[^ \t\n\r]*$`, base64Binary none), though no FHIR value is ever empty:
# ele-1, "All FHIR elements must have a @value or children" (https://hl7.org/fhir/R4/element.html), and
# https://hl7.org/fhir/R4/json.html#primitive (a primitive without a value is left out, or carries only
# its `_name` extensions). Every other primitive's pattern already needs a character. Checked here, in
# the compiled schema, at no cost per resource.
NON_EMPTY = ("uri", "url", "canonical", "base64Binary")


def fhirpath_of(resource_type: str, instance_path: list[str | int]) -> str:
    """`['name', 0, 'family']` -> `Patient.name[0].family` (the form OperationOutcome.expression uses)."""
    path = resource_type
    for step in instance_path:
        path += f"[{step}]" if isinstance(step, int) else f".{step}"
    return path


def _errors(validator: Any, resource: dict[str, Any]) -> list[Any]:
    return [] if validator.is_valid(resource) else list(islice(validator.iter_errors(resource), MAX_ISSUES))


@cache
def _definitions() -> dict[str, Any]:
    """The schema's definitions, with NON_EMPTY's types at least one character long."""
    definitions = dict(json_schema()["definitions"])
    for name in NON_EMPTY:
        definitions[name] = {**definitions[name], "minLength": 1}
    return definitions


class SchemaValidator:
    def __init__(self) -> None:
        self._validators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _validator(self, resource_type: str) -> Any:
        validator = self._validators.get(resource_type)
        if validator is None:
            with self._lock:
                validator = self._validators.get(resource_type)
                if validator is None:
                    schema = json_schema()
                    validator = jsonschema_rs.validator_for(
                        {"$schema": schema["$schema"], "$ref": f"#/definitions/{resource_type}",
                         "definitions": _definitions()}
                    )
                    self._validators[resource_type] = validator
        return validator

    def validate(self, resource: dict[str, Any]) -> list[Issue]:
        """Issues for `resource`, whose resourceType the caller has already checked."""
        resource_type = resource["resourceType"]
        validator = self._validator(resource_type)
        try:
            errors = _errors(validator, resource)
        except ValueError:  # jsonschema-rs takes Decimal but not its subclass ExactDecimal (rare: `1e2`)
            resource = fhirjson.plain(resource)
            errors = _errors(validator, resource)
        issues: list[Issue] = []
        for error in errors:
            path = list(error.instance_path)
            nested = self._nested_resource_issues(resource, path)
            if nested is not None:
                issues.extend(nested)
            else:
                missing = getattr(error.kind, "property", None) if type(error.kind).__name__ == "Required" else None
                if isinstance(missing, str):  # located at the missing element, not at its parent
                    path.append(missing)
                issues.append(Issue("structure", error.message, expression=(fhirpath_of(resource_type, path),)))
            if len(issues) >= MAX_ISSUES:
                break
        return issues[:MAX_ISSUES]

    def _nested_resource_issues(self, resource: dict[str, Any], path: list[str | int]) -> list[Issue] | None:
        """A contained or entry resource fails the schema's resource `oneOf` with an unreadable message:
        validate it against its own type instead and report that type's issues, with the full path."""
        node: Any = resource
        for step in path:
            node = node[step]
        nested_type = node.get("resourceType") if isinstance(node, dict) else None
        if not (path and isinstance(nested_type, str) and nested_type in resource_types()):
            return None
        prefix = fhirpath_of(resource["resourceType"], path)
        return [
            Issue(issue.code, issue.diagnostics, expression=tuple(
                prefix + expr[len(node["resourceType"]):] for expr in issue.expression))
            for issue in self.validate(node)
        ] or None
