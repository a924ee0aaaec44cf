"""Extensions are checked against the definitions their urls name, whether or not the resource claims a
profile: their content, where they may be used (context, context invariants) and a complex extension's
sub-extensions. R4 core extension definitions (superseded by HL7's extensions package) only warn."""

from __future__ import annotations

from typing import Any

import httpx

US = "http://hl7.org/fhir/us/core/StructureDefinition/"
HOME_ONLY = "http://lead.example.org/fhir/StructureDefinition/home-access-notes"


def race(*subs: dict[str, Any]) -> dict[str, Any]:
    return {"url": f"{US}us-core-race", "extension": [
        {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}},
        {"url": "text", "valueString": "White"}, *subs]}


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Nakamura"}], **elements}


async def refusal(client: httpx.AsyncClient, resource: dict[str, Any]) -> list[dict[str, Any]]:
    answer = await client.post(resource["resourceType"], json=resource)
    assert answer.status_code == 400, answer.text
    return answer.json()["issue"]


async def test_content_is_checked_without_a_claimed_profile(client: httpx.AsyncClient) -> None:
    assert (await client.post("Patient", json=patient(extension=[race()]))).status_code == 201
    wrong_type = patient(extension=[{"url": f"{US}us-core-birthsex", "valueInteger": 1}])
    issues = await refusal(client, wrong_type)
    assert issues[0]["expression"] == ["Patient.extension[0].valueInteger"]
    assert "US Core Birth Sex" in issues[0]["diagnostics"]
    no_text = patient(extension=[{**race(), "extension": race()["extension"][:1]}])  # text is 1..1
    assert "US Core Race" in (await refusal(client, no_text))[0]["diagnostics"]


async def test_where_an_extension_may_be_used(client: httpx.AsyncClient) -> None:
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "note"}, "extension": [race()]}
    issues = await refusal(client, observation)
    assert issues[0]["expression"] == ["Observation.extension[0]"]
    assert "not allowed here" in issues[0]["diagnostics"] and "Patient" in issues[0]["diagnostics"]


async def test_a_complex_extension_defines_its_sub_extensions(client: httpx.AsyncClient) -> None:
    issues = await refusal(client, patient(extension=[race({"url": "tribe", "valueString": "x"})]))
    assert issues[0]["expression"] == ["Patient.extension[0].extension[2]"]
    assert "'tribe' is not defined" in issues[0]["diagnostics"]


async def test_core_extension_definitions_only_warn(client: httpx.AsyncClient) -> None:
    birth_time = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                  "valueDateTime": "1961-03-02T07:30:00Z"}
    on_birth_date = patient(birthDate="1961-03-02", _birthDate={"extension": [birth_time]})
    assert (await client.post("Patient", json=on_birth_date)).status_code == 201
    on_gender = patient(gender="female", _gender={"extension": [birth_time]})  # its context is Patient.birthDate
    assert (await client.post("Patient", json=on_gender)).status_code == 201
    issues = (await client.post("Patient/$validate", json=on_gender)).json()["issue"]
    assert [(i["severity"], i["expression"]) for i in issues] == [("warning", ["Patient._gender.extension[0]"])]


async def test_a_fhirpath_context_and_a_context_invariant(client: httpx.AsyncClient) -> None:
    definition = {
        "resourceType": "StructureDefinition", "url": HOME_ONLY, "name": "HomeAccessNotes", "status": "active",
        "kind": "complex-type", "abstract": False, "type": "Extension", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Extension",
        "context": [{"type": "fhirpath", "expression": "Patient.address.where(use = 'home')"}],
        "contextInvariant": ["city.exists()"],
        "differential": {"element": [
            {"id": "Extension", "path": "Extension"},
            {"id": "Extension.url", "path": "Extension.url", "fixedUri": HOME_ONLY},
            {"id": "Extension.value[x]", "path": "Extension.value[x]", "type": [{"code": "string"}]}]}}
    assert (await client.post("StructureDefinition", json=definition)).status_code == 201
    notes = [{"url": HOME_ONLY, "valueString": "side door"}]
    home = {"use": "home", "city": "Dayton", "extension": notes}
    assert (await client.post("Patient", json=patient(address=[home]))).status_code == 201
    work = await refusal(client, patient(address=[{**home, "use": "work"}]))
    assert work[0]["expression"] == ["Patient.address[0].extension[0]"] and "not allowed here" in work[0]["diagnostics"]
    cityless = await refusal(client, patient(address=[{"use": "home", "extension": notes}]))
    assert "context invariant 'city.exists()'" in cityless[0]["diagnostics"]
