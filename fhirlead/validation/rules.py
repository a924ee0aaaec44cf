"""The server's own rules for an incoming resource, beyond what the JSON Schema says.

- `resourceType` names a concrete R4 resource type and the one the URL expects;
- `id`, when present, has the R4 id syntax;
- FHIR JSON never carries empty objects, empty arrays or null outside primitive arrays
  (https://hl7.org/fhir/R4/json.html): the schema lets those through, so they are checked here;
- ele-1, "All FHIR elements must have a @value or children" (https://hl7.org/fhir/R4/element.html,
  `hasValue() or (children().count() > id.count())`): no element holding only an `id`
  (`"_implicitRules": {"id": "i1"}`, `"code": {"id": "c"}`) unless it is the `_x` companion of a
  primitive that has its value. (Empty strings, the other half of ele-1 in JSON, are refused by the
  schema: fhirlead/validation/schema.py, NON_EMPTY.)
- strings at most 1 MB (https://hl7.org/fhir/R4/datatypes.html#string: "FHIR strings SHALL NOT exceed
  1MB in size"): the UTF-8 bytes of a `string`, `code`, `id` or `markdown` value at most 1,048,576
  (base64Binary, uri and xhtml are other types: an attachment may be larger).

The hot path is a few byte scans of the resource's compact JSON: a resource whose JSON holds no `{}`,
`[]`, `null` or `{"id":"..."}` object is not walked, and one under 1 MB cannot hold a string over 1 MB.
"""

from __future__ import annotations

import re
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import resource_types
from fhirlead.errors import Issue
from fhirlead.validation import structure

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")
MAX_STRING_BYTES = 1024 * 1024  # "FHIR strings SHALL NOT exceed 1MB in size"
STRING_TYPES = frozenset({"string", "code", "id", "markdown"})  # string and the types built on it
# an object holding nothing but an `id` (its value a JSON string, escapes included)
_ID_ONLY = re.compile(rb'\{"id":"(?:[^"\\]|\\.)*"\}')


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
    """Empty objects and arrays, misplaced nulls and elements holding only an id, with the path where
    they are; strings over 1 MB; and nesting beyond the server's limit (a patch can deepen a resource
    that arrived within it)."""
    compact = fhirjson.dumps(resource)
    if compact.count(b"{") + compact.count(b"[") > fhirjson.MAX_DEPTH and fhirjson.too_deep(resource):
        return [Issue("invalid", str(fhirjson.TooDeep()), expression=(str(resource.get("resourceType", "Resource")),))]
    issues: list[Issue] = _too_long(resource) if len(compact) > MAX_STRING_BYTES else []
    if not _may_break_shape(compact):
        return issues

    def walk(node: Any, path: str, primitive_array: bool, valued: bool = False) -> None:
        """`valued`: `node` is the `_x` companion of a primitive `x` that has its value."""
        if isinstance(node, dict):
            if not node:
                issues.append(Issue("invalid", "Empty objects are not allowed in FHIR JSON", expression=(path,)))
            elif len(node) == 1 and "id" in node and not valued:
                where = path.replace("._", ".")  # `Patient._implicitRules` is the element Patient.implicitRules
                issues.append(Issue("invariant", f"ele-1: All FHIR elements must have a @value or children ({where} "
                                                 "has only an id)", expression=(where,)))
            for key, value in node.items():
                # `_x` arrays run parallel to primitive arrays `x` and may hold nulls, and vice versa.
                parallel = isinstance(value, list) and (key.startswith("_") or f"_{key}" in node)
                if key.startswith("_") and len(key) > 1:
                    primitive = node.get(key[1:])
                    if isinstance(value, list):
                        values = primitive if isinstance(primitive, list) else []
                        _walk_list(value, f"{path}.{key}", True, values)
                    else:
                        walk(value, f"{path}.{key}", False, primitive is not None)
                else:
                    walk(value, f"{path}.{key}", parallel)
        elif isinstance(node, list):
            _walk_list(node, path, primitive_array, ())
        elif node is None:
            issues.append(Issue("invalid", "null is not allowed here in FHIR JSON", expression=(path,)))

    def _walk_list(node: list[Any], path: str, primitive_array: bool, values: Any) -> None:
        """`values`: the primitive array `x` a `_x` array runs parallel to (empty otherwise)."""
        if not node:
            issues.append(Issue("invalid", "Empty arrays are not allowed in FHIR JSON", expression=(path,)))
        for position, value in enumerate(node):
            if value is None and primitive_array:
                continue
            valued = position < len(values) and values[position] is not None
            walk(value, f"{path}[{position}]", False, valued)

    walk(resource, str(resource.get("resourceType", "Resource")), False)
    return issues


def _may_break_shape(compact: bytes) -> bool:
    """False when the compact JSON has no `{}`, `[]`, `null` or object holding only an `id` anywhere:
    nothing to find, and a few byte scans are ~10x cheaper than walking the tree. Text that merely
    contains one of them only costs the walk."""
    return (b"{}" in compact or b"[]" in compact or b"null" in compact
            or _ID_ONLY.search(compact) is not None)  # the regex: ~0.7 us for 2 KB, less than `in` here


def _too_long(resource: dict[str, Any]) -> list[Issue]:
    """The `string`, `code`, `id` and `markdown` values over 1 MB in UTF-8 (only called for a resource
    whose JSON is over 1 MB). A string of at most MAX_STRING_BYTES / 4 characters cannot be over it."""
    found: list[list[str | int]] = []
    path: list[str | int] = []
    shortest = MAX_STRING_BYTES // 4

    def walk(node: dict[str, Any] | list[Any]) -> None:  # ~4 ms a MB of JSON: only over 1 MB
        for key, value in node.items() if type(node) is dict else enumerate(node):
            kind = type(value)
            if kind is str:
                if len(value) > shortest and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES:
                    found.append([*path, key])
            elif kind is dict or kind is list:
                path.append(key)
                walk(value)
                path.pop()

    walk(resource)
    issues = []
    type_name = str(resource.get("resourceType"))
    for steps in found:
        if structure.type_at(resource, steps) not in STRING_TYPES:
            continue  # base64Binary, uri, xhtml, ...: no such limit; an unknown element: the schema says so
        where = type_name + "".join(f"[{step}]" if isinstance(step, int) else f".{step.lstrip('_')}" for step in steps)
        node: Any = resource
        for step in steps:
            node = node[step]
        size = len(node.encode("utf-8", "surrogatepass"))
        issues.append(Issue("value", f"{where}: the value is {size:,} bytes long: FHIR strings SHALL NOT exceed 1 MB "
                                     f"({MAX_STRING_BYTES:,} bytes)", expression=(where,)))
    return issues
