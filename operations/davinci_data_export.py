"""`Group/[id]/$davinci-data-export` (Da Vinci ATR 2.1.0, https://hl7.org/fhir/us/davinci-atr/STU2.1/
OperationDefinition-davinci-data-export.html): a Bulk Data group export (§"Bulk Data Kick-off Request" of
https://hl7.org/fhir/uv/bulkdata/STU2/export.html) of a Member Attribution List, run by the same job,
status, manifest and file URLs as `$export` (`fhirlead.bulk`).

With `exportType` `hl7.fhir.us.davinci-atr` (the one export type this server knows; also when it is
omitted) it writes the list itself and the resources it reaches: the Patients attributed today (members
that are Patients, not inactive, whose `member.period` covers the kick-off's date, as `$export` reads a
Group), the Coverages and providers (Practitioner, PractitionerRole, Organization) their
`ext-coverageReference` and `ext-attributedProvider` name and the list's `managingEntity`; then what those
reference: a Coverage's subscriber, policy holder and payors (RelatedPerson, Organization), a
PractitionerRole's practitioner, organization and locations. That set is fixed at kick-off (`related.json`).

Parameters: `exportType`, `patient` (only those members; a patient who is unknown or not a member is
ignored with an OperationOutcome in the manifest's `error`, as the operation asks), `_since`, `_until`
(resources whose exported version was written at or before it), `_type`, `_typeFilter`, `_outputFormat`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhirlead import clock, fhirjson
from fhirlead.api.messages import FhirResponse
from fhirlead.bulk import RELATED_FILE
from fhirlead.bulk.kickoff import (
    checked,
    instant,
    job_doc,
    named_types,
    output_format,
    read_parameters,
    record,
    require_async,
    too_many,
)
from fhirlead.bulk.parameters import Leniency, patients, type_filters
from fhirlead.bulk.scope import ATR_TYPES, export_types
from fhirlead.errors import bad_request, not_found
from fhirlead.operations.attribution_list import COVERAGE, PROVIDER, definition, extension_value, relative
from fhirlead.operations.measure_subjects import _members, _patients, overlaps
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search.parse import parse_search
from fhirlead.search.query import Clause, IdMatch

NAME = "davinci-data-export"
ATR_EXPORT = "hl7.fhir.us.davinci-atr"
SUPPORTED = frozenset({"exportType", "patient", "_since", "_until", "_type", "_typeFilter", "_outputFormat"})
PAGE = 1000
# what a Coverage and a PractitionerRole reference, and of which types it is exported
COVERAGE_LINKS = ("subscriber", "policyHolder", "payor")
ROLE_LINKS = ("practitioner", "organization", "location")


def export_type(values: dict[str, list[Any]]) -> None:
    """`exportType` 0..1: `hl7.fhir.us.davinci-atr` (a version after `|` allowed) or nothing; else 400."""
    given = values.get("exportType") or []
    if len(given) > 1:
        raise bad_request("'exportType' is given more than once", "exportType")
    if given and str(given[0]).partition("|")[0] != ATR_EXPORT:
        raise bad_request(f"'exportType' {given[0]!r} is not supported: this server exports {ATR_EXPORT}",
                          "exportType")


def _references(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


async def _read_all(server: Any, type_: str, ids: list[str]) -> list[dict[str, Any]]:
    """The current resources of `type_` with these ids, a page of ids per search."""
    found = []
    for start in range(0, len(ids), PAGE):
        only = Clause((IdMatch(tuple(ids[start:start + PAGE])),))
        query = parse_search(server.search, (type_,), [], default_count=PAGE, max_count=PAGE, strict=True,
                             extra=(only,)).query
        query = replace(query, total="none", group_members=False)
        while True:
            page = await server.store.search(query)
            found += [fhirjson.loads(v.body) for v in page.matches if v.body]
            if page.next_cursor is None:
                break
            query = replace(query, cursor=page.next_cursor)
    return found


class Reached:
    """Per ATR type, the ids the list reaches (in the order found)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.ids: dict[str, dict[str, None]] = {t: {} for t in ATR_TYPES}

    def add(self, reference: Any, types: tuple[str, ...] = ATR_TYPES) -> None:
        text = relative(self.base_url, reference) if isinstance(reference, dict) else None
        type_, _, id_ = (text or "").partition("/")
        id_ = id_.partition("/")[0]  # Type/id/_history/n names the resource too
        if type_ in types and type_ != "Patient" and id_:
            self.ids[type_][id_] = None

    def follow(self, resource: dict[str, Any], links: tuple[str, ...]) -> None:
        for link in links:
            for reference in _references(resource.get(link)):
                self.add(reference, ("RelatedPerson", "Organization", "Practitioner", "Location"))


async def reached(server: Any, base_url: str, group_id: str, head: dict[str, Any], members: list[Any],
                  chosen: list[str], today: tuple[str, str]) -> dict[str, list[str]]:
    """The ids, per type, of the list, the chosen members and what their attributions (those in force
    `today`) reference."""
    found = Reached(base_url)
    found.ids["Group"][group_id] = None
    found.ids["Patient"] = dict.fromkeys(chosen)
    found.add(head.get("managingEntity"))
    wanted = set(chosen)
    for member in members:
        if not isinstance(member, dict) or member.get("inactive") or not overlaps(member.get("period"), today):
            continue
        entity = relative(base_url, member.get("entity")) or ""
        if not entity.startswith("Patient/") or entity.removeprefix("Patient/") not in wanted:
            continue
        found.add(extension_value(member, COVERAGE), ("Coverage",))
        found.add(extension_value(member, PROVIDER), ("Practitioner", "PractitionerRole", "Organization"))
    for coverage in await _read_all(server, "Coverage", list(found.ids["Coverage"])):
        found.follow(coverage, COVERAGE_LINKS)
    for role in await _read_all(server, "PractitionerRole", list(found.ids["PractitionerRole"])):
        found.follow(role, ROLE_LINKS)
    return {type_: list(ids) for type_, ids in found.ids.items()}


async def kick_off(call: OperationCall) -> FhirResponse:
    """ATR `$davinci-data-export` kick-off: 202 with the status URL, as `$export`."""
    server, request = call.server, call.request
    operation = f"${NAME}"
    require_async(request, operation)
    values, warnings = checked(request, read_parameters(request), SUPPORTED, operation)
    leniency = Leniency(request.prefer("handling") == "lenient", warnings)
    export_type(values)
    output_format(values)
    since, until = instant(values, "_since"), instant(values, "_until")
    types = export_types(request.access, "atr", named_types(values))
    filters = type_filters(server.search, values.get("_typeFilter") or [], types, request.base_url, leniency)
    await too_many(server)
    transaction_time = clock.instant(clock.now())
    version = await server.store.read_group_head(str(call.id_))
    if version is None or version.body is None:
        raise not_found(f"Group/{call.id_} is not known")
    members = await _members(server, version)
    today = (transaction_time[:10], transaction_time[:10])
    attributed = _patients(members, today)
    chosen = attributed
    if values.get("patient"):
        chosen = await patients(server, request, values["patient"], attributed, leniency, ignore_outsiders=True)
    related = await reached(server, request.base_url, str(call.id_), fhirjson.loads(version.body), members, chosen,
                           today)
    doc = job_doc(request, "atr", call.id_, types, since, transaction_time, values, leniency.warnings)
    doc |= {"filters": filters, "until": until}
    return await record(server, request, doc, {RELATED_FILE: related})


async def authorize(policy: Any, call: OperationCall) -> None:
    """Open to any token; what is exported is narrowed by its grant at kick-off (`fhirlead.bulk.scope`)."""


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, kick_off, instance=True, resource_types=frozenset({"Group"}), authorize=authorize,
                           definition=definition(NAME)))
