"""The base R4 element rules and invariants on every write (fhirlead.validation.structure, .invariants), over
HTTP: what the JSON Schema let through before (a missing required element, two types of one choice, a
fraction in an integer, an impossible date, a script in the narrative, a value with a data-absent reason,
nested contained resources, a period ending before it starts) is a 400 that names the element; valid
resources still pass."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

SCRIPT = '<div xmlns="http://www.w3.org/1999/xhtml"><p>ok</p><script>alert(1)</script></div>'
A1C = {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"}, "valueQuantity": {"value": 9.4}}


def issues(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return [(issue["code"], issue["expression"][0]) for issue in body["issue"]]


@pytest.mark.parametrize(("resource", "expected"), [
    ({k: v for k, v in A1C.items() if k != "status"}, ("required", "Observation.status")),
    ({"resourceType": "Patient", "text": {"div": '<div xmlns="http://www.w3.org/1999/xhtml">Maria</div>'}},
     ("required", "Patient.text.status")),
    ({**A1C, "valueString": "9.4%"}, ("structure", "Observation.valueString")),
    ({**{k: v for k, v in A1C.items() if k != "valueQuantity"}, "valueInteger": 1.5},
     ("value", "Observation.valueInteger")),
    ({"resourceType": "Patient", "birthDate": "2020-02-30"}, ("value", "Patient.birthDate")),
    ({"resourceType": "Patient", "photo": [{"contentType": "image/png", "size": -5}]},
     ("value", "Patient.photo[0].size")),
    ({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "flu"},
      "patient": {"reference": "Patient/p"}, "occurrenceDateTime": "2026-02-29",
      "protocolApplied": [{"doseNumberPositiveInt": 0}]},
     ("value", "Immunization.occurrenceDateTime")),
    ({"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "flu"},
      "patient": {"reference": "Patient/p"}, "occurrenceDateTime": "2026-02-28",
      "protocolApplied": [{"doseNumberPositiveInt": 0}]},
     ("value", "Immunization.protocolApplied[0].doseNumberPositiveInt")),
    ({**A1C, "text": {"status": "generated", "div": SCRIPT}}, ("invariant", "Observation.text.div")),
    ({"resourceType": "Patient", "contained": [{k: v for k, v in A1C.items() if k != "status"} | {"id": "a1c"}]},
     ("required", "Patient.contained[0].status")),
    # the invariants (fhirlead.validation.invariants): obs-6, dom-2, per-1
    ({**A1C, "dataAbsentReason": {"text": "not measured"}}, ("invariant", "Observation")),
    ({**A1C, "contained": [{"resourceType": "Patient", "id": "p", "contained": [
        {"resourceType": "Organization", "id": "o", "name": "x"}]}], "subject": {"reference": "#p"}},
     ("invariant", "Observation.contained[0]")),
    ({**A1C, "effectivePeriod": {"start": "2026-03-02", "end": "2026-03-01"}},
     ("invariant", "Observation.effective.ofType(Period)")),
])
async def test_what_the_base_definitions_forbid_is_refused(client: httpx.AsyncClient, resource: dict[str, Any],
                                                           expected: tuple[str, str]) -> None:
    found = issues(await client.post(resource["resourceType"], json=resource))
    assert expected in found, found
    assert (await client.get(resource["resourceType"])).json().get("total", 0) == 0  # nothing was stored


async def test_the_same_rules_on_update_and_in_a_transaction(client: httpx.AsyncClient) -> None:
    created = await client.post("Observation", json=A1C)
    assert created.status_code == 201, created.text
    id_ = created.json()["id"]
    broken = {k: v for k, v in created.json().items() if k not in ("status", "meta")}
    assert ("required", "Observation.status") in issues(await client.put(f"Observation/{id_}", json=broken))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "birthDate": day}, "request": {"method": "POST", "url": "Patient"}}
        for day in ("1958-03-14", "1958-02-31")]}
    answer = await client.post("", json=bundle)
    assert answer.status_code == 400 and "1958-02-31" in answer.text
    assert (await client.get("Patient", params={"birthdate": "1958-03-14"})).json().get("total", 0) == 0


async def test_valid_resources_pass(client: httpx.AsyncClient) -> None:
    written = [
        A1C,
        # a required primitive given by its extension alone (https://hl7.org/fhir/R4/json.html#primitive)
        {**{k: v for k, v in A1C.items() if k != "status"}, "_status": {"extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}},
        {"resourceType": "Patient", "birthDate": "2024-02-29", "multipleBirthInteger": 2,
         "photo": [{"contentType": "image/png", "size": 0}],
         "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><b>Maria</b> &#160;</div>'}},
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": A1C}]},
    ]
    for resource in written:
        answer = await client.post(resource["resourceType"], json=resource)
        assert answer.status_code == 201, (resource, answer.text)
