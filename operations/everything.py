"""`Patient/[id]/$everything` (R4: https://hl7.org/fhir/R4/patient-operation-everything.html), over every
Patient record linked to the same person (docs/identity.md).

The answer is a `searchset` Bundle: the person's Patient records (the one named and every record its
`Person` links), every resource of their Patient compartments (AuditEvent aside: the server's own trail,
searched by type), each as stored (mode `match`), and on each page the resources those reference whose
types are outside the compartment (Practitioner, Organization, Location, Medication, ...: mode
`include`), as the operation asks ("whatever resources are needed to support the records"). Unlike
`$aggregate-patient`, nothing is merged: each source's own records and facts come back as written.

Parameters: `_since` (an instant: resources updated at or after it), `_type` (comma-separated and
repeatable: compartment types to return, and other types to include when referenced), `start`/`end`
(care dates: resources whose clinical date falls outside are left out; undated ones stay), `_count`.
The spec asks for the whole record in one Bundle unless the client pages; the server pages at its largest
page size (`FHIRLEAD_MAX_PAGE_SIZE`, 1,000) so a long record never needs to be held at once, with `next`
links as a search has (a page filtered by `start`/`end` may hold fewer). The caller needs read access to
Patients; what the token may not search is left out, as in a search.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.definitions import patient_compartment, resource_types
from fhirlead.errors import bad_request, not_found
from fhirlead.identity.aggregate import in_care_range
from fhirlead.interaction.history import SERVER_RECORDED
from fhirlead.interaction.search_compartment import OWNER, membership
from fhirlead.numbers import ascii_int
from fhirlead.operations.access import requiring
from fhirlead.operations.identity_links import linked_records
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search import bundle
from fhirlead.search.parse import CURSOR, parse_search
from fhirlead.search.query import Clause
from fhirlead.search.respond import page_url
from fhirlead.storage.port import ResourceVersion

NAME = "everything"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "identity"
                             / "OperationDefinition-Patient-everything.json").read_bytes())


async def everything(call: OperationCall) -> FhirResponse:
    server, request = call.server, call.request
    params = parameters.read(request, DEFINITION)
    compartment = {*patient_compartment(), OWNER} - set(SERVER_RECORDED)
    named = _types(params.values.get("_type"))
    types = tuple(sorted(compartment if named is None else named & compartment))
    if not types:
        raise bad_request("'_type' names no type of the Patient compartment", "_type")
    start, end = params.one("start"), params.one("end")
    access = request.access
    if access is not None:
        types = access.search_types(types, named=named is not None)
    version = await server.store.read(OWNER, call.id_ or "")
    if version is None or version.body is None or (access is not None and not access.version_visible(version)):
        raise not_found(f"Patient/{call.id_} is not known")
    _, records = await linked_records(server, str(call.id_))
    search = [("_count", str(_count(params.one("_count"), server.settings.max_page_size)))]
    since = params.instant("_since")
    if since is not None:
        search.append(("_lastUpdated", f"ge{since.isoformat()}"))
    if request.param(CURSOR) is not None:
        search.append((CURSOR, str(request.param(CURSOR))))
    # in any of the records' compartments: one clause, its predicates ORed
    clauses = (Clause(tuple(p for record in records for p in membership(types, record).any_of)),)
    if access is not None:
        clauses = (*clauses, *access.search_clauses(types))
    parsed = parse_search(server.search, types, search, base_url=request.base_url,
                          max_count=server.settings.max_page_size, extra=clauses)
    page = await server.store.search(parsed.query)
    matches = [v for v in page.matches if (access is None or access.version_visible(v, "s"))
               and _in_care_range(v, start, end)]
    includes = await _referenced(server, matches, compartment, named, access)
    given = [(name, str(value)) for name in ("start", "end", "_since", "_count")
             for value in params.values.get(name) or ()] + [("_type", t) for t in params.values.get("_type") or ()]
    path = f"{OWNER}/{call.id_}/${NAME}"
    links = [{"relation": "self", "url": page_url(request.base_url, path, given)}]
    for relation, cursor in (("next", page.next_cursor), ("previous", page.previous_cursor)):
        if cursor is not None:
            links.append({"relation": relation, "url": page_url(request.base_url, path, [*given, (CURSOR, cursor)])})
    body = bundle.searchset(base_url=request.base_url, links=links, total=page.total, matches=matches,
                            includes=includes, warnings=[], summary=None, elements=None)
    return FhirResponse(200, body)


def _types(values: list[Any] | None) -> set[str] | None:
    if not values:
        return None
    names = {name.strip() for value in values for name in str(value).split(",") if name.strip()}
    unknown = sorted(names - set(resource_types()))
    if unknown:
        raise bad_request(f"'_type': {unknown[0]} is not a resource type", "_type")
    return names


def _count(value: Any, largest: int) -> int:
    if value is None:
        return largest
    count = ascii_int(str(value))
    if count is None or count < 1:
        raise bad_request("'_count' must be a positive integer", "_count")
    return min(count, largest)


def _in_care_range(version: ResourceVersion, start: Any, end: Any) -> bool:
    """R4: start/end relate to care dates (`in_care_range`: a resource without one is kept)."""
    return (start is None and end is None) or in_care_range(fhirjson.loads(version.body or b"{}"), start, end)


async def _referenced(server: Any, matches: list[ResourceVersion], compartment: set[str],
                      named: set[str] | None, access: Any) -> list[ResourceVersion]:
    """The resources outside the compartment the page's matches refer to (each once, as stored)."""
    wanted: dict[str, None] = {}
    for version in matches:
        for reference in _references(fhirjson.loads(version.body or b"{}")):
            type_, _, id_ = reference.partition("/")
            if type_ not in compartment and (named is None or type_ in named) and id_ and "/" not in id_:
                wanted.setdefault(reference)
    found = []
    for reference in wanted:
        type_, _, id_ = reference.partition("/")
        version = await server.store.read(type_, id_)
        if version is not None and version.body is not None and (access is None or access.version_visible(version)):
            found.append(version)
    return found


def _references(value: Any) -> list[str]:
    """Every relative `reference` in a resource (contained ones aside)."""
    found: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            reference = item.get("reference")
            if isinstance(reference, str) and "/" in reference and not reference.startswith(("#", "urn:")) \
                    and "://" not in reference:
                found.append(reference.split("/_history/")[0])
            stack.extend(v for k, v in item.items() if k != "contained" and isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend(item)
    return found


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, everything, instance=True, resource_types=frozenset({OWNER}),
                           definition=DEFINITION, authorize=requiring("Patient")))
