"""The searchset Bundle (https://hl7.org/fhir/R4/bundle.html#searchset), spliced from stored bytes.

Matches and included resources are stored as the exact JSON bytes the server serves, so entries are
assembled around those bytes without parsing them; only `_summary`/`_elements` (which change the
resource) parse and re-serialise. Entry order: the OperationOutcome about ignored parameters (mode
`outcome`) first, then the matches in result order (mode `match`), then included resources (mode
`include`). Every resource appears once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhirlead import bundle_json, fhirjson, subsetting
from fhirlead.errors import Issue, operation_outcome
from fhirlead.storage.port import ResourceVersion

MATCH = {"search": {"mode": "match"}}
INCLUDE = {"search": {"mode": "include"}}
OUTCOME = {"search": {"mode": "outcome"}}


def _body(version: ResourceVersion, summary: str | None, elements: list[str] | None) -> bytes:
    assert version.body is not None
    if summary in (None, "false", "count") and not elements:
        return version.body
    return fhirjson.dumps(subsetting.apply(fhirjson.loads(version.body), summary, elements))


def entries(
    base_url: str,
    versions: Iterable[ResourceVersion],
    mode: dict[str, Any],
    summary: str | None = None,
    elements: list[str] | None = None,
) -> list[bytes]:
    return [
        bundle_json.entry({"fullUrl": f"{base_url}/{v.type}/{v.id}"}, _body(v, summary, elements), mode)
        for v in versions
        if v.body is not None
    ]


def searchset(
    *,
    base_url: str,
    links: list[dict[str, str]],
    total: int | None,
    matches: list[ResourceVersion],
    includes: list[ResourceVersion],
    warnings: list[Issue],
    summary: str | None,
    elements: list[str] | None,
) -> bytes:
    """The Bundle bytes. `_summary` applies to every entry, `_elements` to the matches."""
    header: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        header["total"] = total
    header["link"] = links
    parts: list[bytes] = []
    if warnings:
        parts.append(bundle_json.entry({}, fhirjson.dumps(operation_outcome(warnings)), OUTCOME))
    parts += entries(base_url, matches, MATCH, summary, elements)
    parts += entries(base_url, includes, INCLUDE, summary, None)
    return bundle_json.bundle(header, parts)
