"""`Patient/[id]/$summary` (IPS 1.1.0) over HTTP: the person written by a primary-care EHR and a hospital
comes back as one IPS document (Composition first, one Patient, every reference resolving inside the
Bundle), each fact once; required sections without data carry a "no information" entry (1.1.0 forbids
emptyReason); optional sections appear only with data; type-level `identifier`; refusals; the token's
scopes limit what is summarised."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from tests.operations.test_aggregate_patient import ALLERGY_ACTIVE, HOSP, LOINC, PCP, SNOMED, seeded, sourced
from tests.operations.test_identity_links import person_of
from tests.operations.test_match import MBI, NAMESAKE, PRIMARY, STRANGER
from tests.tokens import system_token

IPS_BUNDLE = "http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"
ABSENT = "http://hl7.org/fhir/uv/ips/CodeSystem/absent-unknown-uv-ips"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
PROBLEMS, ALLERGIES, MEDICATIONS = "11450-4", "48765-2", "10160-0"
IMMUNIZATIONS, RESULTS, VITALS, PROCEDURES, PAST = "11369-6", "30954-2", "8716-3", "47519-4", "11348-0"
DEVICES, PLAN, SOCIAL, DIRECTIVES = "46264-8", "18776-5", "29762-2", "42348-3"


def observation(id_: str, patient: str, source: str, category: str, code: str, value: float, unit: str, when: str,
                **extra: Any) -> dict[str, Any]:
    return sourced({"resourceType": "Observation", "id": id_, "status": "final",
                    "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
                    "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": patient},
                    "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": unit}, **extra}, source)


MORE = [
    {"resourceType": "Practitioner", "id": "dr-lee", "name": [{"family": "Lee", "given": ["Ana"]}]},
    {"resourceType": "Medication", "id": "metformin", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975", "display": "metformin 500 MG"}]}},
    sourced({"resourceType": "MedicationStatement", "id": "pcp-metformin", "status": "active",
             "medicationReference": {"reference": "Medication/metformin"}, "subject": {"reference": "Patient/pc-8812"},
             "effectiveDateTime": "2024-01-01", "informationSource": {"reference": "Practitioner/dr-lee"},
             "dosage": [{"text": "500 mg twice a day"}]}, PCP),
    sourced({"resourceType": "MedicationStatement", "id": "pcp-old-drug", "status": "completed",
             "medicationCodeableConcept": {"text": "amoxicillin"}, "subject": {"reference": "Patient/pc-8812"},
             "effectiveDateTime": "2020-01-01"}, PCP),
    observation("pcp-weight", "Patient/pc-8812", PCP, "vital-signs", "29463-7", 80, "kg", "2025-01-01"),
    observation("hosp-weight", "Patient/a-77", HOSP, "vital-signs", "29463-7", 78, "kg", "2026-03-01T21:00:00Z"),
    observation("pcp-ldl", "Patient/pc-8812", PCP, "laboratory", "2089-1", 130, "mg/dL", "2026-02-01"),
    observation("hosp-ldl", "Patient/a-77", HOSP, "laboratory", "2089-1", 130, "mg/dL", "2026-02-01",
                encounter={"reference": "Encounter/hosp-visit"}),
    sourced({"resourceType": "Procedure", "id": "hosp-appendectomy", "status": "completed",
             "code": {"coding": [{"system": SNOMED, "code": "80146002", "display": "Appendectomy"}]},
             "subject": {"reference": "Patient/a-77"}, "performedDateTime": "2026-03-02",
             "performer": [{"actor": {"reference": "Practitioner/dr-lee"}},
                           {"actor": {"reference": "Practitioner/not-stored", "display": "Dr Gone"}}]}, HOSP),
    sourced({"resourceType": "Condition", "id": "pcp-fracture", "subject": {"reference": "Patient/pc-8812"},
             "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                            "code": "resolved"}]},
             "code": {"coding": [{"system": SNOMED, "code": "263204007", "display": "Fracture of wrist"}]},
             "onsetDateTime": "2001-06-01"}, PCP),
    sourced({"resourceType": "Condition", "id": "hosp-mistake", "subject": {"reference": "Patient/a-77"},
             "verificationStatus": {"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "entered-in-error"}]},
             "code": {"coding": [{"system": SNOMED, "code": "38341003", "display": "Hypertension"}]}}, HOSP),
    sourced({"resourceType": "AllergyIntolerance", "id": "pcp-peanut", "patient": {"reference": "Patient/pc-8812"},
             "clinicalStatus": ALLERGY_ACTIVE,
             "code": {"text": "Peanut <b>&</b> tree nuts"}}, PCP),
]


async def more(client: httpx.AsyncClient) -> str:
    person = await seeded(client)
    for resource in MORE:
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code == 201, answer.text
    return person


def unresolved(bundle: dict[str, Any]) -> list[str]:
    """Every reference in the Bundle's resources that no entry's fullUrl satisfies (R4 bundle.html#references:
    an absolute reference is a fullUrl; a relative one is resolved against its entry's RESTful base)."""
    full_urls = {entry["fullUrl"] for entry in bundle["entry"]}
    missing = []

    def walk(value: Any, base: str | None, contained: set[str]) -> None:
        if isinstance(value, dict):
            reference = value.get("reference")
            if isinstance(reference, str):
                if reference.startswith("#"):
                    ok = reference[1:] in contained
                elif ":" in reference:
                    ok = reference in full_urls
                else:
                    ok = base is not None and f"{base}/{reference}" in full_urls
                if not ok:
                    missing.append(reference)
            for item in value.values():
                walk(item, base, contained)
        elif isinstance(value, list):
            for item in value:
                walk(item, base, contained)

    for entry in bundle["entry"]:
        url = entry["fullUrl"]
        base = url.rsplit("/", 2)[0] if url.startswith("http") else None
        walk(entry["resource"], base, {str(c.get("id")) for c in entry["resource"].get("contained", [])})
    return missing


def document(answer: httpx.Response) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The IPS document's structure (Bundle-uv-ips 1.1.0 and R4 documents), checked; its Composition and the
    resources by fullUrl."""
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "document"
    identifier = bundle["identifier"]
    assert identifier["system"] == "urn:ietf:rfc:3986" and identifier["value"].startswith("urn:uuid:")
    assert datetime.fromisoformat(bundle["timestamp"]).tzinfo is not None
    entries = bundle["entry"]
    assert all(set(entry) == {"fullUrl", "resource"} for entry in entries)
    by_url = {entry["fullUrl"]: entry["resource"] for entry in entries}
    assert len(by_url) == len(entries)  # every fullUrl once
    assert [e["resource"]["resourceType"] for e in entries].count("Composition") == 1
    assert [e["resource"]["resourceType"] for e in entries].count("Patient") == 1
    composition = entries[0]["resource"]
    assert composition["resourceType"] == "Composition" and composition["status"] == "final"
    assert {"system": LOINC, "code": "60591-5"}.items() <= composition["type"]["coding"][0].items()
    assert composition["title"] == "International Patient Summary"
    assert datetime.fromisoformat(composition["date"]).tzinfo is not None
    assert by_url[composition["subject"]["reference"]]["resourceType"] == "Patient"
    assert [by_url[a["reference"]]["resourceType"] for a in composition["author"]] == ["Device"]
    for section in composition["section"]:
        assert section["title"] and section["code"]["coding"][0]["system"] == LOINC
        assert section["text"]["status"] == "generated"
        assert section["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
        assert "emptyReason" not in section and section["entry"]  # IPS 1.1.0: emptyReason 0..0, entry 1..*
        assert all(e["reference"] in by_url for e in section["entry"])
    assert unresolved(bundle) == []
    return composition, by_url


def sections(composition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {s["code"]["coding"][0]["code"]: s for s in composition["section"]}
    assert len(found) == len(composition["section"])
    return found


def held(section: dict[str, Any], by_url: dict[str, dict[str, Any]]) -> set[str]:
    return {f"{by_url[e['reference']]['resourceType']}/{by_url[e['reference']]['id']}" for e in section["entry"]}


def stored(by_url: dict[str, dict[str, Any]]) -> set[str]:
    """The fullUrls of every entry but the Composition (new for each document)."""
    return {url for url, resource in by_url.items() if resource["resourceType"] != "Composition"}


def keys(by_url: dict[str, dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in by_url.values()}


async def test_one_document_over_both_records(client: httpx.AsyncClient) -> None:
    person = await more(client)
    composition, by_url = document(await client.get("Patient/pc-8812/$summary"))
    patient = by_url[composition["subject"]["reference"]]
    assert patient["id"] == person and "link" not in patient  # the merged Patient; its source records stay out
    assert {(i["system"], i["value"]) for i in patient["identifier"]} == {(MBI, "1EG4TE5MK73")}
    found = sections(composition)
    assert list(found)[:3] == [PROBLEMS, ALLERGIES, MEDICATIONS]
    assert set(found) == {PROBLEMS, ALLERGIES, MEDICATIONS, IMMUNIZATIONS, RESULTS, VITALS, PROCEDURES, PAST}
    # each fact once: the diabetes and the LDL of both EHRs, the hospital's copy (its record was written last)
    assert held(found[PROBLEMS], by_url) == {"Condition/hosp-dm"}
    assert held(found[RESULTS], by_url) == {"Observation/hosp-ldl"}
    everything = keys(by_url)
    assert not everything & {"Condition/pcp-dm", "Observation/pcp-ldl", "Condition/hosp-mistake",
                             "MedicationStatement/pcp-old-drug", "Observation/pcp-weight"}
    assert "Observation/hosp-a1c" not in everything  # no category: not a result the summary can place
    assert held(found[PAST], by_url) == {"Condition/pcp-fracture"}
    assert held(found[ALLERGIES], by_url) == {"AllergyIntolerance/hosp-pcn", "AllergyIntolerance/pcp-peanut"}
    assert held(found[MEDICATIONS], by_url) == {"MedicationStatement/pcp-metformin"}
    assert held(found[VITALS], by_url) == {"Observation/hosp-weight"}  # the most recent weight only
    assert held(found[IMMUNIZATIONS], by_url) == {"Immunization/pcp-flu"}
    assert held(found[PROCEDURES], by_url) == {"Procedure/hosp-appendectomy"}
    # what the entries reference came along: the Medication, the Practitioner, the LDL's Encounter
    assert {"Medication/metformin", "Practitioner/dr-lee", "Encounter/hosp-visit"} <= everything
    statement = by_url[found[MEDICATIONS]["entry"][0]["reference"]]
    assert by_url[statement["medicationReference"]["reference"]]["id"] == "metformin"
    assert by_url[statement["subject"]["reference"]] is patient
    procedure = by_url[found[PROCEDURES]["entry"][0]["reference"]]
    assert by_url[procedure["performer"][0]["actor"]["reference"]]["id"] == "dr-lee"
    assert procedure["performer"][1]["actor"] == {"display": "Dr Gone"}  # not in the store: its display kept
    # narratives: tables of what the entries say, every value escaped
    assert "metformin 500 MG" in found[MEDICATIONS]["text"]["div"]
    assert "500 mg twice a day" in found[MEDICATIONS]["text"]["div"]
    assert "Peanut &lt;b&gt;&amp;&lt;/b&gt; tree nuts" in found[ALLERGIES]["text"]["div"]
    assert "<b>" not in found[ALLERGIES]["text"]["div"]
    assert "78 kg" in found[VITALS]["text"]["div"] and "80 kg" not in found[VITALS]["text"]["div"]
    # the same document from the other record's id (stable fullUrls for stored resources)
    again, by_url_again = document(await client.get("Patient/a-77/$summary"))
    assert by_url_again[again["subject"]["reference"]]["id"] == person
    assert stored(by_url_again) == stored(by_url)


def smoking(id_: str, when: str, status: str) -> dict[str, Any]:
    return sourced({"resourceType": "Observation", "id": id_, "status": "final",
                    "category": [{"coding": [{"system": CATEGORY, "code": "social-history"}]}],
                    "code": {"coding": [{"system": LOINC, "code": "72166-2"}]},
                    "subject": {"reference": "Patient/a-77"}, "effectiveDateTime": when,
                    "valueCodeableConcept": {"text": status}}, HOSP)


OPTIONAL = [
    sourced({"resourceType": "MedicationRequest", "id": "hosp-insulin", "status": "active", "intent": "order",
             "medicationCodeableConcept": {"text": "insulin glargine"}, "subject": {"reference": "Patient/a-77"},
             "authoredOn": "2026-03-02", "dosageInstruction": [{"text": "10 units at night"}]}, HOSP),
    sourced({"resourceType": "MedicationRequest", "id": "hosp-cancelled", "status": "cancelled", "intent": "order",
             "medicationCodeableConcept": {"text": "glipizide"}, "subject": {"reference": "Patient/a-77"}}, HOSP),
    sourced({"resourceType": "DiagnosticReport", "id": "pcp-lipids", "status": "final",
             "code": {"coding": [{"system": LOINC, "code": "57698-3", "display": "Lipid panel"}]},
             "subject": {"reference": "Patient/pc-8812"}, "effectiveDateTime": "2026-02-01",
             "result": [{"reference": "Observation/pcp-ldl"}]}, PCP),
    sourced({"resourceType": "Device", "id": "cgm-1", "patient": {"reference": "Patient/a-77"},
             "deviceName": [{"name": "Glucose monitor", "type": "user-friendly-name"}]}, HOSP),
    sourced({"resourceType": "DeviceUseStatement", "id": "hosp-cgm", "status": "active",
             "subject": {"reference": "Patient/a-77"}, "device": {"reference": "Device/cgm-1"},
             "timingDateTime": "2026-03-01"}, HOSP),
    sourced({"resourceType": "CarePlan", "id": "pcp-plan", "status": "active", "intent": "plan",
             "title": "Diabetes care plan", "subject": {"reference": "Patient/pc-8812"},
             "period": {"start": "2026-01-01"}}, PCP),
    sourced({"resourceType": "CarePlan", "id": "pcp-old-plan", "status": "completed", "intent": "plan",
             "title": "Post-fracture physiotherapy", "subject": {"reference": "Patient/pc-8812"}}, PCP),
    smoking("hosp-smoker-2019", "2019-01-01", "Current every day smoker"),
    smoking("hosp-smoker-2026", "2026-03-01", "Former smoker"),
    sourced({"resourceType": "Consent", "id": "pcp-dnr", "status": "active", "dateTime": "2025-05-01",
             "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}]},
             "category": [{"coding": [{"system": LOINC, "code": "59284-0"}], "text": "Do not resuscitate"}],
             "patient": {"reference": "Patient/pc-8812"}, "policyRule": {"text": "DNR order"}}, PCP),
]


async def test_optional_sections_with_their_data(client: httpx.AsyncClient) -> None:
    await more(client)
    for resource in OPTIONAL:
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code == 201, answer.text
    composition, by_url = document(await client.get("Patient/a-77/$summary"))
    found = sections(composition)
    assert {DEVICES, PLAN, SOCIAL, DIRECTIVES} <= set(found)
    assert held(found[MEDICATIONS], by_url) == {"MedicationStatement/pcp-metformin", "MedicationRequest/hosp-insulin"}
    assert "10 units at night" in found[MEDICATIONS]["text"]["div"] and "glipizide" not in str(by_url)
    assert held(found[RESULTS], by_url) == {"Observation/hosp-ldl", "DiagnosticReport/pcp-lipids"}
    report = next(r for r in by_url.values() if r["id"] == "pcp-lipids")
    assert by_url[report["result"][0]["reference"]]["id"] == "hosp-ldl"  # the duplicate's kept copy
    assert held(found[DEVICES], by_url) == {"DeviceUseStatement/hosp-cgm"}
    assert "Glucose monitor" in found[DEVICES]["text"]["div"] and "Device/cgm-1" in keys(by_url)
    assert held(found[PLAN], by_url) == {"CarePlan/pcp-plan"}
    assert held(found[SOCIAL], by_url) == {"Observation/hosp-smoker-2026"}  # the current smoking status only
    assert "Former smoker" in found[SOCIAL]["text"]["div"]
    assert held(found[DIRECTIVES], by_url) == {"Consent/pcp-dnr"}
    assert "Do not resuscitate" in found[DIRECTIVES]["text"]["div"] and "2025-05-01" in found[DIRECTIVES]["text"]["div"]


async def test_required_sections_without_data_say_so(client: httpx.AsyncClient) -> None:
    await seeded(client)
    composition, by_url = document(await client.post("Patient/a-77/$summary", json={
        "resourceType": "Parameters", "parameter": [{"name": "profile", "valueUri": IPS_BUNDLE}]}))
    found = sections(composition)
    # no medication in either record: IPS 1.1.0 asserts it with an entry, not emptyReason
    medications = found[MEDICATIONS]
    assert "emptyReason" not in medications and len(medications["entry"]) == 1
    statement = by_url[medications["entry"][0]["reference"]]
    assert statement["resourceType"] == "MedicationStatement" and statement["status"] == "unknown"
    assert statement["medicationCodeableConcept"]["coding"] == [
        {"system": ABSENT, "code": "no-medication-info", "display": "No information about medications"}]
    assert by_url[statement["subject"]["reference"]]["resourceType"] == "Patient"
    assert "No information about medications" in medications["text"]["div"]
    # optional sections only where there is data: immunizations yes; no categorised result, vital sign, procedure
    assert set(found) == {PROBLEMS, ALLERGIES, MEDICATIONS, IMMUNIZATIONS}
    assert all(r["resourceType"] != "Observation" for r in by_url.values())


async def test_type_level_by_identifier(client: httpx.AsyncClient) -> None:
    person = await seeded(client)
    answer = await client.get("Patient/$summary", params={"identifier": f"{MBI}|1EG4TE5MK73"})
    composition, by_url = document(answer)
    assert by_url[composition["subject"]["reference"]]["id"] == person
    # the IPS 1.1.0 spelling, in a POST
    posted = await client.post("Patient/$summary", json={"resourceType": "Parameters", "parameter": [
        {"name": "identifer", "valueIdentifier": {"system": MBI, "value": "1EG4TE5MK73"}}]})
    composition, by_url = document(posted)
    assert by_url[composition["subject"]["reference"]]["id"] == person
    # two records of one person with the identifier: that person
    both = {**sourced(PRIMARY, PCP), "identifier": [{"system": MBI, "value": "1EG4TE5MK73"}]}
    assert (await client.put("Patient/pc-8812", json=both)).status_code == 200
    composition, by_url = document(await client.get("Patient/$summary", params={"identifier": f"{MBI}|1EG4TE5MK73"}))
    assert by_url[composition["subject"]["reference"]]["id"] == person
    # records of two different people: refused
    shared = [{"system": "http://clinic.example.org/mrn", "value": "77"}]
    for record in ({**NAMESAKE, "identifier": shared}, {**STRANGER, "identifier": shared}):
        assert (await client.put(f"Patient/{record['id']}", json=record)).status_code == 201
    assert (await person_of(client, "other-maria"))["id"] != (await person_of(client, "stranger"))["id"]
    ambiguous = await client.get("Patient/$summary", params={"identifier": "http://clinic.example.org/mrn|77"})
    assert ambiguous.status_code == 412 and ambiguous.json()["issue"][0]["code"] == "multiple-matches"
    unknown = await client.get("Patient/$summary", params={"identifier": f"{MBI}|0000"})
    assert unknown.status_code == 404 and unknown.json()["resourceType"] == "OperationOutcome"
    for refused in (client.get("Patient/$summary"),
                    client.get("Patient/a-77/$summary", params={"identifier": f"{MBI}|1EG4TE5MK73"})):
        answer = await refused
        assert answer.status_code == 400 and "identifier" in str(answer.json()["issue"])


async def test_refusals(client: httpx.AsyncClient) -> None:
    await seeded(client)
    wrong = await client.get("Patient/a-77/$summary", params={
        "profile": "http://hl7.org/fhir/uv/ips/StructureDefinition/Composition-uv-ips"})
    assert wrong.status_code == 400 and wrong.json()["resourceType"] == "OperationOutcome"
    assert wrong.json()["issue"][0]["expression"] == ["profile"]
    document(await client.get("Patient/a-77/$summary", params={"profile": f"{IPS_BUNDLE}|1.1.0"}))
    graph = await client.get("Patient/a-77/$summary", params={"graph": "http://example.org/GraphDefinition/x"})
    assert graph.status_code == 400 and graph.json()["issue"][0]["expression"] == ["graph"]
    missing = await client.get("Patient/nobody/$summary")
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"


async def test_the_token_limits_the_summary(app: FastAPI, client: httpx.AsyncClient) -> None:
    await more(client)
    scopes = " ".join(f"system/{t}.rs" for t in ("Patient", "Condition", "AllergyIntolerance", "Immunization",
                                                 "MedicationStatement", "MedicationRequest", "Procedure"))
    token = await system_token(app, scope=scopes, client_id="summary-without-observations")
    answer = await client.get("Patient/pc-8812/$summary", headers={"Authorization": f"Bearer {token}"})
    composition, by_url = document(answer)
    found = sections(composition)
    assert RESULTS not in found and VITALS not in found
    assert {r["resourceType"] for r in by_url.values()} == {
        "Composition", "Patient", "Device", "Condition", "AllergyIntolerance", "Immunization",
        "MedicationStatement", "Procedure"}  # no Observation; Medication, Practitioner, Encounter not readable
    statement = by_url[found[MEDICATIONS]["entry"][0]["reference"]]
    assert statement["medicationReference"] == {"display": "Medication not in this summary"}
    assert held(found[PROCEDURES], by_url) == {"Procedure/hosp-appendectomy"}
    no_patients = await system_token(app, scope="system/Observation.rs", client_id="summary-no-patients")
    refused = await client.get("Patient/pc-8812/$summary", headers={"Authorization": f"Bearer {no_patients}"})
    assert refused.status_code == 403

