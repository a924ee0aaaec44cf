"""The server's own rules for an incoming resource, beyond what the JSON Schema says.

- `resourceType` names a concrete R4 resource type and the one the URL expects;
- `id`, when present, has the R4 id syntax;
- FHIR JSON never carries empty objects, empty arrays or null outside primitive arrays
  (https://hl7.org/fhir/R4/json.html): the schema lets those through, so they are checked here.
"""

from __future__ import annotations

import re
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import resource_types
from fhirlead.errors import Issue

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_type(resource: dict[str, Any], expected_type: str | None) -> list[Issue]:
    found = resource.get("resourceType")
    if not isinstance(found, str) or found not in resource_types():
        return [Issue("invalid", f"Unknown or missing resourceType {found!r}", expression=("resourceType",))]
    if expected_type is not None and found != expected_type:
        return [Issue("invalid", f"resourceType '{found}' does not match the URL's type '{expected_type}'",
                      expression=("resourceType",))]
    if "id" in resource and not valid_id(resource["id"]):
        return [Issue("invalid", f"Invalid id {resource['id']!r}: 1-64 of A-Z a-z 0-9 - .",
                      expression=(f"{found}.id",))]
    return []


def check_json_shape(resource: dict[str, Any]) -> list[Issue]:
    """Empty objects/arrays and misplaced nulls, with the path where they are; and nesting beyond the
    server's limit (a patch can deepen a resource that arrived within it)."""
    compact = fhirjson.dumps(resource)
    if compact.count(b"{") + compact.count(b"[") > fhirjson.MAX_DEPTH and fhirjson.too_deep(resource):
        return [Issue("invalid", str(fhirjson.TooDeep()), expression=(str(resource.get("resourceType", "Resource")),))]
    if not _may_break_shape(compact):
        return []
    issues: list[Issue] = []

    def walk(node: Any, path: str, primitive_array: bool) -> None:
        if isinstance(node, dict):
            if not node:
                issues.append(Issue("invalid", "Empty objects are not allowed in FHIR JSON", expression=(path,)))
            for key, value in node.items():
                # `_x` arrays run parallel to primitive arrays `x` and may hold nulls, and vice versa.
                parallel = isinstance(value, list) and (key.startswith("_") or f"_{key}" in node)
                walk(value, f"{path}.{key}", parallel)
        elif isinstance(node, list):
            if not node:
                issues.append(Issue("invalid", "Empty arrays are not allowed in FHIR JSON", expression=(path,)))
            for position, value in enumerate(node):
                if value is None and primitive_array:
                    continue
                walk(value, f"{path}[{position}]", False)
        elif node is None:
            issues.append(Issue("invalid", "null is not allowed here in FHIR JSON", expression=(path,)))

    walk(resource, str(resource.get("resourceType", "Resource")), False)
    return issues


def _may_break_shape(compact: bytes) -> bool:
    """False when the compact JSON has no `{}`, `[]` or `null` anywhere: nothing to find, and one
    byte scan is ~10x cheaper than walking the tree. Text that merely contains one of them only
    costs the walk."""
    return b"{}" in compact or b"[]" in compact or b"null" in compact
