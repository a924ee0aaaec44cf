"""`Patient/$match` (FHIR R4, https://hl7.org/fhir/R4/patient-operation-match.html): the stored Patient
records that may be the person a given Patient describes, best first.

Input (POST Parameters): `resource` (a Patient, required), `onlyCertainMatches`, `count` (default 10).
Candidates come from a few indexed searches (`fhirlead.identity.blocking`) and are scored by
`fhirlead.identity.score` (Fellegi-Sunter weights; docs/identity.md). The answer is a `searchset` Bundle:
each Patient with `search.mode` "match", `search.score` in [0, 1] and the `match-grade` extension
(certain, probable, possible); certainly-not candidates are left out. With `onlyCertainMatches` only a
single certain match is returned; if several records are certain matches none is, and an
OperationOutcome entry says so (the operation's definition: "if there are multiple potential matches,
then the match should not return the results"). Only records the caller's token may read are compared;
the caller needs read access to Patients. Nothing is stored.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.clock import instant, now
from fhirlead.errors import bad_request
from fhirlead.identity import blocking, demographics
from fhirlead.identity.score import GRADES, Match, match
from fhirlead.operations.access import admit, requiring
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search.parse import parse_search

NAME = "match"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "identity"
                             / "OperationDefinition-Patient-match.json").read_bytes())
MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
DEFAULT_COUNT, MAX_COUNT = 10, 100


async def patient_match(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    patient = params.one("resource")
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise bad_request("$match needs 'resource': the Patient to match (POST a Parameters)", "resource")
    call.server.validator.check(patient, "Patient")
    only_certain = bool(params.flag("onlyCertainMatches"))
    count = _count(params.one("count"))
    candidates = await find_candidates(call.server, patient, admit(call))
    wanted = demographics.of(patient)
    scored = await asyncio.to_thread(
        lambda: [(m, c) for c in candidates if (m := match(wanted, demographics.of(c))).grade != "certainly-not"])
    scored.sort(key=lambda found: (GRADES.index(found[0].grade), -found[0].total, str(found[1].get("id"))))
    entries = [_entry(call.request.base_url, m, c) for m, c in scored]
    if only_certain:
        certain = [e for (m, _c), e in zip(scored, entries, strict=True) if m.grade == "certain"]
        entries = certain if len(certain) == 1 else []
        if len(certain) > 1:
            entries.append(_advice(f"{len(certain)} records are certain matches: none is returned with "
                                   "onlyCertainMatches; ask without it to see them graded"))
    else:
        entries = entries[:count]
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"lastUpdated": instant(now())},
              "type": "searchset", "total": sum(1 for e in entries if e["search"]["mode"] == "match"),
              "entry": entries}
    return FhirResponse(200, bundle)


async def find_candidates(server: Any, patient: dict[str, Any],
                          visible: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The stored Patients in any block of `patient` (each once) that `visible` admits (None: all)."""
    found: dict[str, dict[str, Any]] = {}
    for block in blocking.searches(demographics.of(patient), patient):
        query = parse_search(server.search, ("Patient",), block, default_count=blocking.BLOCK_LIMIT,
                             max_count=blocking.BLOCK_LIMIT, strict=True).query
        for version in (await server.store.search(query)).matches:
            if version.id not in found:
                resource = fhirjson.loads(version.body or b"{}")
                if visible is None or visible(resource):
                    found[version.id] = resource
    return list(found.values())


def _entry(base_url: str, found: Match, patient: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"{base_url}/Patient/{patient.get('id')}", "resource": patient,
            "search": {"extension": [{"url": MATCH_GRADE, "valueCode": found.grade}],
                       "mode": "match", "score": found.score}}


def _advice(text: str) -> dict[str, Any]:
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "information", "code": "multiple-matches", "diagnostics": text}]}
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": outcome, "search": {"mode": "outcome"}}


def _count(value: Any) -> int:
    if value is None:
        return DEFAULT_COUNT
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise bad_request("'count' must be a positive integer", "count") from None
    if count < 1:
        raise bad_request("'count' must be a positive integer", "count")
    return min(count, MAX_COUNT)


authorize = requiring("Patient")  # reading Patients is enough to ask; only what the token may read is compared


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, patient_match, type_level=True, resource_types=frozenset({"Patient"}),
                           definition=DEFINITION, authorize=authorize))
