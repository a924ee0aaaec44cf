"""`Patient/[id]/$everything` over the person's linked records: every record and fact as each source wrote
it (nothing merged), what they reference, paging, the R4 parameters and the token's limits."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.operations.test_aggregate_patient import HOSP, PCP, seeded, sourced
from tests.tokens import bearer

DOCTOR = {"resourceType": "Practitioner", "id": "dr-chen", "name": [{"family": "Chen"}]}
CLINIC = {"resourceType": "Organization", "id": "pcp-clinic", "name": "Oak Street Primary Care"}
METFORMIN = {"resourceType": "Medication", "id": "metformin",
             "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}}
ORDER = sourced({"resourceType": "MedicationRequest", "id": "pcp-metformin", "status": "active", "intent": "order",
                 "medicationReference": {"reference": "Medication/metformin"},
                 "subject": {"reference": "Patient/pc-8812"}, "requester": {"reference": "Practitioner/dr-chen"},
                 "authoredOn": "2025-06-01"}, PCP)
SEEN = sourced({"resourceType": "Encounter", "id": "pcp-visit", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "Patient/pc-8812"},
                "serviceProvider": {"reference": "Organization/pcp-clinic"},
                "participant": [{"individual": {"reference": "Practitioner/dr-chen"}}],
                "period": {"start": "2025-06-01T10:00:00Z"}}, PCP)
UNUSED = {"resourceType": "Practitioner", "id": "dr-nobody", "name": [{"family": "Nobody"}]}
# every clinical fact both EHRs wrote for the person (the lab's record is only a probable match: left out)
FACTS = {"Observation/pcp-a1c", "Observation/hosp-a1c", "Encounter/hosp-visit", "Condition/pcp-dm",
         "Condition/hosp-dm", "Immunization/pcp-flu", "AllergyIntolerance/hosp-pcn", "MedicationRequest/pcp-metformin",
         "Encounter/pcp-visit"}


async def world(client: httpx.AsyncClient) -> str:
    for resource in (DOCTOR, CLINIC, METFORMIN, UNUSED):
        assert (await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)).status_code == 201
    person = await seeded(client)
    for resource in (ORDER, SEEN):
        assert (await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)).status_code == 201
    return person


def entries(bundle: dict[str, Any], mode: str) -> set[str]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry") or ()
            if e["search"]["mode"] == mode}


def clinical(keys: set[str]) -> set[str]:
    """Without what the server itself keeps about the writes (Provenance) and the identity (Person)."""
    return {k for k in keys if not k.startswith(("Provenance/", "Person/"))}


async def test_every_record_and_fact_of_the_person(client: httpx.AsyncClient) -> None:
    person = await world(client)
    answer = await client.get("Patient/a-77/$everything")
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    matches = entries(bundle, "match")
    assert clinical(matches) == {"Patient/a-77", "Patient/pc-8812"} | FACTS
    assert f"Person/{person}" in matches
    assert entries(bundle, "include") == {"Practitioner/dr-chen", "Organization/pcp-clinic", "Medication/metformin"}
    assert [link["relation"] for link in bundle["link"]] == ["self"]  # the whole record in one Bundle
    order = next(e["resource"] for e in bundle["entry"] if e["resource"]["id"] == "pcp-metformin")
    assert order["subject"] == {"reference": "Patient/pc-8812"}  # as the source wrote it: nothing merged
    again = await client.post("Patient/pc-8812/$everything", json={"resourceType": "Parameters"})
    assert entries(again.json(), "match") == matches


async def test_paging_with_count(client: httpx.AsyncClient) -> None:
    await world(client)
    url: str | None = "Patient/pc-8812/$everything?_count=3"
    seen: list[str] = []
    includes: set[str] = set()
    pages = 0
    while url is not None:
        page = (await client.get(url)).json()
        pages += 1
        found = [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page.get("entry") or ()
                 if e["search"]["mode"] == "match"]
        assert len(found) <= 3
        seen += found
        includes |= entries(page, "include")
        url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
        assert url is None or "_count=3" in url
    assert pages >= 4 and len(seen) == len(set(seen))  # each resource on exactly one page
    assert clinical(set(seen)) == {"Patient/a-77", "Patient/pc-8812"} | FACTS
    assert includes == {"Practitioner/dr-chen", "Organization/pcp-clinic", "Medication/metformin"}


async def test_type_dates_and_since(client: httpx.AsyncClient) -> None:
    await world(client)
    typed = (await client.get("Patient/pc-8812/$everything",
                              params=[("_type", "Observation,Encounter"), ("_type", "Organization")])).json()
    assert entries(typed, "match") == {"Observation/pcp-a1c", "Observation/hosp-a1c", "Encounter/hosp-visit",
                                       "Encounter/pcp-visit"}
    assert entries(typed, "include") == {"Organization/pcp-clinic"}  # the Practitioner was not asked for
    recent = (await client.get("Patient/pc-8812/$everything", params={"start": "2026-01-01", "end": "2026-12-31"}))
    kept = clinical(entries(recent.json(), "match"))
    # care dates in 2026 (the A1c results, the hospital stay) and the undated (the Patients, the allergy)
    assert kept == {"Patient/a-77", "Patient/pc-8812", "Observation/pcp-a1c", "Observation/hosp-a1c",
                    "Encounter/hosp-visit", "AllergyIntolerance/hosp-pcn"}
    last = (await client.get("Encounter/pcp-visit")).json()["meta"]["lastUpdated"]
    since = (await client.get("Patient/pc-8812/$everything", params={"_since": last})).json()
    assert "Encounter/pcp-visit" in entries(since, "match")
    assert clinical(entries(since, "match")) <= {"Encounter/pcp-visit", "MedicationRequest/pcp-metformin"}


async def test_refusals(client: httpx.AsyncClient) -> None:
    await world(client)
    assert (await client.get("Patient/nobody/$everything")).status_code == 404
    for params, named in (({"_count": "0"}, "_count"), ({"_since": "2026-01-01"}, "_since"),
                          ({"_type": "Nope"}, "_type"), ({"_type": "Practitioner"}, "_type"),
                          ({"colour": "blue"}, "colour")):
        refused = await client.get("Patient/pc-8812/$everything", params=params)
        assert refused.status_code == 400 and named in str(refused.json()["issue"]), (params, refused.text)


async def test_only_what_the_token_may_read(app: FastAPI, client: httpx.AsyncClient) -> None:
    await world(client)
    headers = await bearer(app, scope="system/Patient.rs system/Observation.rs")
    answer = await client.get("Patient/a-77/$everything", headers=headers)
    assert answer.status_code == 200, answer.text
    assert entries(answer.json(), "match") == {"Patient/a-77", "Patient/pc-8812", "Observation/pcp-a1c",
                                               "Observation/hosp-a1c"}
    assert entries(answer.json(), "include") == set()
    refused = await client.get("Patient/a-77/$everything", headers=await bearer(app, scope="system/Observation.rs"))
    assert refused.status_code == 403
    assert HOSP not in refused.text
