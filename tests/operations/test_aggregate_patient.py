"""`Patient/[id]/$aggregate-patient`: one person written by a primary-care EHR and a hospital (and a
namesake the server only proposed) comes back as one Patient and one record, each fact once with a
Provenance naming both sources; the filters; either record's id gives the same person."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from fhirlead.api.app import create_app
from fhirlead.settings import Settings, source_trust
from tests.operations.test_identity_links import person_of
from tests.operations.test_match import HOSPITAL, LAB, PRIMARY
from tests.tokens import bearer

PCP, HOSP, LABS = "https://pcp.example.org/fhir", "https://hospital.example.org/fhir", "https://lab.example.org/fhir"
LOINC, SNOMED = "http://loinc.org", "http://snomed.info/sct"


def sourced(resource: dict[str, Any], source: str) -> dict[str, Any]:
    return {**resource, "meta": {"source": source}}


def a1c(id_: str, patient: str, source: str, **extra: Any) -> dict[str, Any]:
    return sourced({"resourceType": "Observation", "id": id_, "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": "4548-4"}]}, "subject": {"reference": patient},
                    "effectiveDateTime": "2026-03-02T09:30:00Z", "valueQuantity": {"value": 9.4, "unit": "%"},
                    **extra}, source)


def diabetes(id_: str, patient: str, source: str, *codings: dict[str, str]) -> dict[str, Any]:
    return sourced({"resourceType": "Condition", "id": id_, "subject": {"reference": patient},
                    "code": {"coding": list(codings)}, "onsetDateTime": "2019-05-01"}, source)


T2DM = {"system": SNOMED, "code": "44054006"}
E11 = {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}
ALLERGY_ACTIVE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                             "code": "active"}]}
WORLD = [
    sourced(PRIMARY, PCP), sourced(HOSPITAL, HOSP), sourced(LAB, LABS),
    a1c("pcp-a1c", "Patient/pc-8812", PCP),
    sourced({"resourceType": "Encounter", "id": "hosp-visit", "status": "finished",
             "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
             "subject": {"reference": "Patient/a-77"}, "period": {"start": "2026-03-01T20:00:00Z"}}, HOSP),
    a1c("hosp-a1c", "Patient/a-77", HOSP, encounter={"reference": "Encounter/hosp-visit"}),
    diabetes("pcp-dm", "Patient/pc-8812", PCP, T2DM),
    diabetes("hosp-dm", "Patient/a-77", HOSP, E11, T2DM),
    sourced({"resourceType": "Immunization", "id": "pcp-flu", "status": "completed",
             "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "158"}]},
             "patient": {"reference": "Patient/pc-8812"}, "occurrenceDateTime": "2025-10-01"}, PCP),
    sourced({"resourceType": "AllergyIntolerance", "id": "hosp-pcn", "patient": {"reference": "Patient/a-77"},
             "clinicalStatus": ALLERGY_ACTIVE,
             "code": {"coding": [{"system": SNOMED, "code": "91936005"}]}}, HOSP),
    a1c("lab-a1c", "Patient/lab-00451", LABS),
]


async def seeded(client: httpx.AsyncClient) -> str:
    for resource in WORLD:
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code == 201, answer.text
    person = await person_of(client, "pc-8812")
    assert (await person_of(client, "a-77"))["id"] == person["id"]  # a certain match: joined
    return person["id"]


def by_key(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}": e["resource"] for e in bundle["entry"]}


async def test_one_person_from_two_ehrs(client: httpx.AsyncClient) -> None:
    person = await seeded(client)
    answer = await client.get("Patient/a-77/$aggregate-patient")
    assert answer.status_code == 200, answer.text
    found = by_key(answer.json())
    patient = found.pop(f"Patient/{person}")
    assert answer.json()["entry"][0]["resource"]["id"] == person  # the merged Patient first
    assert {(i["system"], i["value"]) for i in patient["identifier"]} == {
        ("http://hl7.org/fhir/sid/us-mbi", "1EG4TE5MK73")}
    assert {link["other"]["reference"] for link in patient["link"]} == {"Patient/pc-8812", "Patient/a-77"}
    assert patient["birthDate"] == "1958-03-14" and patient["telecom"] == PRIMARY["telecom"]
    provenances = [r for key, r in found.items() if key.startswith("Provenance/")]
    facts = {key for key in found if not key.startswith("Provenance/")}
    # the HbA1c and the diabetes each once (the hospital, written last, is the copy kept), the rest as is
    assert facts == {"Observation/hosp-a1c", "Condition/hosp-dm", "Encounter/hosp-visit", "Immunization/pcp-flu",
                     "AllergyIntolerance/hosp-pcn"}
    assert found["Observation/hosp-a1c"]["subject"] == {"reference": f"Patient/{person}"}
    assert found["Immunization/pcp-flu"]["patient"] == {"reference": f"Patient/{person}"}
    assert found["Observation/hosp-a1c"]["encounter"] == {"reference": "Encounter/hosp-visit"}
    named = {p["target"][0]["reference"]: p for p in provenances}
    assert set(named) == facts | {f"Patient/{person}"} and len(provenances) == len(named)  # each its own
    merged = {key for key, p in named.items() if "activity" in p}
    assert merged == {"Observation/hosp-a1c", "Condition/hosp-dm", f"Patient/{person}"}
    flu = named["Immunization/pcp-flu"]
    assert [e["what"]["reference"] for e in flu["entity"]] == ["Immunization/pcp-flu/_history/1"]
    assert [a["who"]["identifier"]["value"] for a in flu["agent"]] == [PCP]
    assert {e["what"]["reference"] for e in named[f"Patient/{person}"]["entity"]} == {
        "Patient/pc-8812/_history/1", "Patient/a-77/_history/1"}
    a1c_sources = named["Observation/hosp-a1c"]
    assert {e["what"]["reference"].rsplit("/_history", 1)[0] for e in a1c_sources["entity"]} == {
        "Observation/hosp-a1c", "Observation/pcp-a1c"}
    assert {a["who"]["identifier"]["value"] for a in a1c_sources["agent"]} == {PCP, HOSP}
    assert "lab-a1c" not in answer.text  # a probable match is not the same person until a steward says so
    again = by_key((await client.get("Patient/pc-8812/$aggregate-patient")).json())
    assert {k for k in again if not k.startswith("Provenance/")} == {k for k in found if not k.startswith(
        "Provenance/")} | {f"Patient/{person}"}


async def test_filters(client: httpx.AsyncClient) -> None:
    person = await seeded(client)
    only = by_key((await client.get("Patient/pc-8812/$aggregate-patient", params={"_type": "Observation"})).json())
    assert {k for k in only if not k.startswith("Provenance/")} == {"Observation/hosp-a1c"}
    assert len(only) == 2  # and its Provenance
    pcp = by_key((await client.get("Patient/pc-8812/$aggregate-patient", params={"source": PCP})).json())
    assert {k for k in pcp if not k.startswith("Provenance/")} == {
        f"Patient/{person}", "Observation/pcp-a1c", "Condition/pcp-dm", "Immunization/pcp-flu"}
    assert pcp[f"Patient/{person}"]["link"] == [{"other": {"reference": "Patient/pc-8812"}, "type": "seealso"}]
    recent = by_key((await client.get("Patient/pc-8812/$aggregate-patient",
                                      params={"start": "2026-01-01", "end": "2026-12-31"})).json())
    assert {k for k in recent if not k.startswith(("Provenance/", "Patient/"))} == {
        "Observation/hosp-a1c", "Encounter/hosp-visit", "AllergyIntolerance/hosp-pcn"}  # undated: kept
    post = await client.post("Patient/pc-8812/$aggregate-patient", json={"resourceType": "Parameters", "parameter": [
        {"name": "_type", "valueString": "Immunization"}]})
    assert {k for k in by_key(post.json()) if not k.startswith("Provenance/")} == {"Immunization/pcp-flu"}
    assert (await client.get("Patient/nobody/$aggregate-patient")).status_code == 404
    refused = await client.get("Patient/pc-8812/$aggregate-patient", params={"_type": "Nope"})
    assert refused.status_code == 400 and "_type" in str(refused.json()["issue"])


async def test_since(client: httpx.AsyncClient) -> None:
    await seeded(client)
    written = (await client.get("Immunization/pcp-flu")).json()["meta"]["lastUpdated"]
    assert (await client.put("Immunization/pcp-flu", json={**WORLD[8], "primarySource": True})).status_code == 200
    later = (await client.get("Immunization/pcp-flu")).json()["meta"]["lastUpdated"]
    assert later > written
    answer = await client.get("Patient/pc-8812/$aggregate-patient",
                              params={"_since": later, "_type": "Immunization,Observation"})
    assert {k for k in by_key(answer.json()) if not k.startswith("Provenance/")} == {"Immunization/pcp-flu"}
    refused = await client.get("Patient/pc-8812/$aggregate-patient", params={"_since": "2026-01-01T00:00:00"})
    assert refused.status_code == 400 and "_since" in str(refused.json()["issue"])


async def test_a_trusted_source_is_kept_first(settings: Settings) -> None:
    """FHIRLEAD_SOURCE_TRUST: the primary-care EHR above the hospital, though the hospital wrote last."""
    application = create_app(dataclasses.replace(settings, source_trust=source_trust(f"{PCP}=2,{HOSP}=1")))
    async with application.router.lifespan_context(application), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://testserver/fhir",
            headers=await bearer(application)) as client:
        person = await seeded(client)
        found = by_key((await client.get("Patient/a-77/$aggregate-patient")).json())
    facts = {key for key in found if not key.startswith("Provenance/")}
    assert facts == {f"Patient/{person}", "Observation/pcp-a1c", "Condition/pcp-dm", "Encounter/hosp-visit",
                     "Immunization/pcp-flu", "AllergyIntolerance/hosp-pcn"}
    assert [link["other"]["reference"] for link in found[f"Patient/{person}"]["link"]] == [
        "Patient/pc-8812", "Patient/a-77"]  # the trusted record first: its single values win
    assert found[f"Patient/{person}"]["name"][0]["family"] == "Garcia"
