"""`Patient/[id]/$aggregate-patient` (fhirlead; profiles/identity/OperationDefinition-aggregate-patient.json):
one person's record from every source, merged (docs/identity.md).

`id` may name any Patient record of the person; the person is the `Person` linking it
(`operations.identity_links`; a record not yet linked is a person of one record). The answer is a
`collection` Bundle: first the merged Patient (id: the Person's; demographics by the survivorship rules
of `fhirlead.identity.aggregate`; `link` to every source record), then every resource of the person's
records' Patient compartments (AuditEvent, Provenance and Person aside) with the same fact reported by
several sources once, and for every resource returned a Provenance naming every source resource it
came from (`entity`, role source) and source system (`agent`); `activity` "merged across sources" for
the merged Patient and each fact reported more than once. References to the source records point at the merged Patient
(`Patient/<person id>`), and references to a duplicate at the copy that was kept.

Parameters (GET or POST): `_since` (only resources updated at or after this instant), `_type`
(comma-separated types), `start`/`end` (only resources whose clinical date falls in the range; undated
ones are kept), `source` (only records and resources whose `meta.source` is this URI). The caller needs
read access to Patients; only what the token may read is aggregated.

`gather` (person -> records -> compartments -> filters -> duplicate groups -> kept copies with their
references rewritten) is shared with `Patient/[id]/$summary` (`operations.summary`).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.clock import instant, now
from fhirlead.definitions import patient_compartment
from fhirlead.errors import bad_request, not_found
from fhirlead.identity.aggregate import (
    duplicate_groups,
    in_care_range,
    merged_patient,
    ranked,
    rewrite_references,
)
from fhirlead.interaction.search_compartment import membership
from fhirlead.operations.access import admit, requiring
from fhirlead.operations.identity_links import linked_records
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search.parse import parse_search

NAME = "aggregate-patient"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "identity"
                             / "OperationDefinition-aggregate-patient.json").read_bytes())
LEFT_OUT = ("AuditEvent", "Provenance", "Person")
PAGE = 1000


async def aggregate_patient(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    types = _types(params.one("_type"))
    found = await gather(call, str(call.id_ or ""), types=types, since=params.instant("_since"),
                         start=params.one("start"), end=params.one("end"), source=params.one("source"))
    entries, provenances, recorded = [], [], instant(now())
    merged = found.patient()
    if merged is not None and (types is None or "Patient" in types):
        entries.append({"fullUrl": f"{call.request.base_url}/{found.merged_reference}", "resource": merged})
        provenances.append(_provenance(merged, found.records, recorded))
    for group, kept in zip(found.groups, found.kept, strict=True):
        entries.append({"fullUrl": f"{call.request.base_url}/{kept['resourceType']}/{kept['id']}", "resource": kept})
        provenances.append(_provenance(kept, group, recorded))
    entries += [{"fullUrl": f"urn:uuid:{p['id']}", "resource": p} for p in provenances]
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": recorded},
              "type": "collection", "timestamp": recorded, "entry": entries}
    return FhirResponse(200, bundle)


@dataclass(frozen=True)
class Gathered:
    """One person's record as the caller may read it (what `$aggregate-patient` and `$summary` answer with)."""

    person_id: str  # the Person's id (the record's own when it is not linked yet): the merged Patient's id
    records: list[dict[str, Any]]  # the person's Patient records, best-ranked first
    mapping: dict[str, str]  # "Type/id" of a source record or a duplicate -> the reference that replaces it
    groups: list[list[dict[str, Any]]]  # each fact's resources as stored, the copy kept first (as in `kept`)
    kept: list[dict[str, Any]]  # each group's kept copy with its references rewritten (`mapping`)

    @property
    def merged_reference(self) -> str:
        return f"Patient/{self.person_id}"

    def patient(self) -> dict[str, Any] | None:
        """The merged Patient (None when the caller may read none of the person's records)."""
        return merged_patient(self.records, self.person_id) if self.records else None


async def gather(call: OperationCall, patient_id: str, *, types: set[str] | None = None,
                 since: datetime | None = None, start: Any = None, end: Any = None,
                 source: Any = None) -> Gathered:
    """The person of Patient record `patient_id` (404 if the caller may not read it): their records and
    the data of the records' compartments (`types`; filtered by `since`, `start`/`end` and `source`,
    then grouped: the same fact from several sources once)."""
    server, visible = call.server, admit(call)
    version = await server.store.read("Patient", patient_id)
    named = fhirjson.loads(version.body) if version is not None and version.body else None
    if named is None or (visible is not None and not visible(named)):
        raise not_found(f"Patient/{patient_id} is not known")
    person_id, ids = await linked_records(server, patient_id)
    records = []
    for id_ in ids:
        found = await server.store.read("Patient", id_)
        record = fhirjson.loads(found.body) if found is not None and found.body else None
        if record is not None and (visible is None or visible(record)) and _from(record, source):
            records.append(record)
    trust = dict(server.settings.source_trust)
    records = ranked(records, lambda system: trust.get(system or "", 0.0))
    mapping = {f"Patient/{r['id']}": f"Patient/{person_id}" for r in records}
    data = [r for r in await _compartments(server, records, types, since) if (visible is None or visible(r))
            and _from(r, source) and in_care_range(r, start, end)]
    groups = duplicate_groups(data)
    for group in groups:
        kept = group[0]
        for other in group[1:]:
            mapping[f"{other['resourceType']}/{other['id']}"] = f"{kept['resourceType']}/{kept['id']}"
    return Gathered(person_id, records, mapping, groups, [rewrite_references(g[0], mapping) for g in groups])


async def _compartments(server: Any, records: list[dict[str, Any]], types: set[str] | None,
                        since: datetime | None) -> list[dict[str, Any]]:
    """Every resource of the records' compartments (each once), best-ranked record's first; with `since`,
    only those updated at or after it (asked of the store's `_lastUpdated` index, not filtered after)."""
    compartment = tuple(sorted(t for t in patient_compartment() if t not in LEFT_OUT and t != "Patient"
                               and (types is None or t in types)))
    updated = [("_lastUpdated", f"ge{since.isoformat()}")] if since is not None else []
    found: dict[str, dict[str, Any]] = {}
    for record in records:
        if not compartment:
            break
        query = parse_search(server.search, compartment, updated, default_count=PAGE, max_count=PAGE,
                             extra=(membership(compartment, str(record["id"])),)).query
        while True:
            page = await server.store.search(query)
            for version in page.matches:
                found.setdefault(f"{version.type}/{version.id}", fhirjson.loads(version.body or b"{}"))
            if page.next_cursor is None:
                break
            query = replace(query, cursor=page.next_cursor)
    return list(found.values())


def _types(value: Any) -> set[str] | None:
    if value is None:
        return None
    names = {name.strip() for name in str(value).split(",") if name.strip()}
    known = set(patient_compartment()) | {"Patient"}
    unknown = sorted(names - known)
    if unknown:
        raise bad_request(f"'_type': {unknown[0]} is not a type of the Patient compartment", "_type")
    return names


def _from(resource: dict[str, Any], source: Any) -> bool:
    return source is None or (resource.get("meta") or {}).get("source") == source


def _provenance(kept: dict[str, Any], group: list[dict[str, Any]], recorded: str) -> dict[str, Any]:
    """Where a returned resource came from: every source resource of its group (the merged Patient's:
    the source records) and each source system."""
    merged = len(group) > 1 or kept.get("id") != group[0].get("id")
    systems = tuple(sorted({str(r["meta"]["source"]) for r in group if (r.get("meta") or {}).get("source")}))
    return {
        "resourceType": "Provenance", "id": str(uuid.uuid4()),
        "target": [{"reference": f"{kept['resourceType']}/{kept['id']}"}],
        "recorded": recorded,
        **({"activity": MERGED} if merged else {}),
        "agent": _agents(systems),
        "entity": [{"role": "source", "what": {"reference": f"{r['resourceType']}/{r['id']}/_history/"
                                                             f"{(r.get('meta') or {}).get('versionId', '1')}"}}
                   for r in group],
    }


MERGED = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE",
                      "display": "revise"}], "text": "merged across sources"}
AUTHOR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}]}


@functools.lru_cache(maxsize=256)
def _agents(systems: tuple[str, ...]) -> list[dict[str, Any]]:
    """The agents of a Provenance: each source system (shared by every Provenance naming the same ones:
    only ever serialised, never changed)."""
    return [{"type": AUTHOR, "who": {"identifier": {"system": "urn:ietf:rfc:3986", "value": system}, "display": system}}
            for system in systems] or [{"who": {"display": "unknown source"}}]


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, aggregate_patient, instance=True, resource_types=frozenset({"Patient"}),
                           definition=DEFINITION, authorize=requiring("Patient")))
