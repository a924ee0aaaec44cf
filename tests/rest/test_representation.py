"""_summary, _elements and _pretty on reads, and the CapabilityStatement."""

from __future__ import annotations

import httpx

from tests.rest.helpers import put

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}

OBSERVATION = {
    "resourceType": "Observation", "id": "o1", "status": "final",
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">HbA1c 9.8%</div>"},
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
    "subject": {"reference": "Patient/p1"},
    "valueQuantity": {"value": 9.8, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    "interpretation": [{"text": "high"}],
}


async def test_summary_true_keeps_summary_elements_and_tags_the_subset(client: httpx.AsyncClient) -> None:
    await put(client, OBSERVATION)
    body = (await client.get("Observation/o1", params={"_summary": "true"})).json()
    assert {"status", "code", "subject", "valueQuantity"} <= body.keys()
    assert "interpretation" not in body and "text" not in body
    assert SUBSETTED in body["meta"]["tag"]


async def test_summary_data_and_text(client: httpx.AsyncClient) -> None:
    await put(client, OBSERVATION)
    data = (await client.get("Observation/o1", params={"_summary": "data"})).json()
    assert "text" not in data and "interpretation" in data
    text = (await client.get("Observation/o1", params={"_summary": "text"})).json()
    assert set(text) == {"resourceType", "id", "meta", "text", "status", "code"}  # status and code are mandatory


async def test_elements_keeps_listed_and_mandatory_elements(client: httpx.AsyncClient) -> None:
    await put(client, OBSERVATION)
    body = (await client.get("Observation/o1", params={"_elements": "value,subject"})).json()
    assert set(body) == {"resourceType", "id", "meta", "valueQuantity", "subject", "status", "code"}
    assert SUBSETTED in body["meta"]["tag"]


async def test_invalid_summary_is_400(client: httpx.AsyncClient) -> None:
    await put(client, OBSERVATION)
    assert (await client.get("Observation/o1", params={"_summary": "some"})).status_code == 400


async def test_pretty_indents_without_changing_content(client: httpx.AsyncClient) -> None:
    await put(client, OBSERVATION)
    plain = await client.get("Observation/o1")
    pretty = await client.get("Observation/o1", params={"_pretty": "true"})
    assert b"\n  " in pretty.content and b"\n" not in plain.content
    assert pretty.json() == plain.json()


async def test_capability_statement_describes_what_the_server_supports(client: httpx.AsyncClient) -> None:
    response = await client.get("metadata")
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    rest = statement["rest"][0]
    resources = {r["type"]: r for r in rest["resource"]}
    assert len(resources) == 146  # every concrete R4 resource type
    patient = resources["Patient"]
    assert {i["code"] for i in patient["interaction"]} >= {"read", "vread", "create", "update", "patch", "delete"}
    names = {p["name"] for p in patient["searchParam"]}
    assert {"name", "birthdate", "identifier", "_id", "_lastUpdated"} <= names
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "search-system", "history-system"}
