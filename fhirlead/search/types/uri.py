"""uri parameters (https://hl7.org/fhir/R4/search.html#uri).

Exact match by default; `:below` finds stored URIs that start with the search value, `:above` stored
URIs the search value starts with, at path-segment boundaries (so both can use an index: below is a
range scan, above an IN over the value's own prefixes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.query import UriMatch

MODES = {"": "eq", "below": "below", "above": "above"}


def parse(key: str, raw: str, modifier: str, name: str) -> UriMatch:
    mode = MODES.get(modifier)
    if mode is None:
        raise bad_request(f"Unsupported modifier ':{modifier}' on uri parameter '{name}'", name)
    return UriMatch(key, mode, raw)


def above_prefixes(value: str) -> list[str]:
    """`http://a.org/fhir/ValueSet/x` -> every leading part ending before a `/` plus the whole value."""
    found = [value]
    scheme_end = value.find("://")
    start = scheme_end + 3 if scheme_end >= 0 else 0
    index = value.find("/", start)
    while index >= 0:
        found.append(value[:index])
        index = value.find("/", index + 1)
    return sorted(set(found))


# -- write time --------------------------------------------------------------------------------


def _add_uri(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str) and value:
        out.uri.append((key, value))


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str):
        _add_uri(key, value, out)
    elif isinstance(value, dict):
        for name in ("valueUri", "valueUrl", "valueCanonical", "valueOid", "valueUuid", "valueString"):
            if name in value:
                _add_uri(key, value[name], out)


CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    name: _add_uri for name in ("uri", "url", "canonical", "oid", "uuid", "string", "code", "id")
}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension", "Resource"):
        return _add_dynamic
    return None
