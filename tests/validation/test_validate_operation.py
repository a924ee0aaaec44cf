"""`$validate` (R4 Resource-validate): the same checks as a write, answered 200 with an OperationOutcome
whether or not the resource is valid; modes create, update and delete; the profile parameter; scopes."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from tests.tokens import bearer

A1C = {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"}, "valueQuantity": {"value": 9.4}}


def outcome(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def parameters(resource: dict[str, Any] | None = None, **values: str) -> dict[str, Any]:
    given: list[dict[str, Any]] = [{"name": "resource", "resource": resource}] if resource else []
    given += [{"name": name, "valueUri" if name == "profile" else "valueCode": value} for name, value in values.items()]
    return {"resourceType": "Parameters", "parameter": given}


async def test_a_valid_resource_gets_information_and_nothing_is_stored(client: httpx.AsyncClient) -> None:
    for body in (A1C, parameters(A1C), parameters(A1C, mode="create")):
        issues = outcome(await client.post("Observation/$validate", json=body))
        assert [i["severity"] for i in issues] == ["information"]
    assert (await client.get("Observation")).json().get("total", 0) == 0


async def test_an_invalid_resource_gets_its_errors_with_200(client: httpx.AsyncClient) -> None:
    broken = {**{k: v for k, v in A1C.items() if k != "status"}, "effectiveDateTime": "2026-02-30"}
    issues = outcome(await client.post("Observation/$validate", json=parameters(broken)))
    assert {(i["severity"], i["expression"][0]) for i in issues} == {
        ("error", "Observation.status"), ("error", "Observation.effectiveDateTime")}
    wrong_type = outcome(await client.post("Patient/$validate", json=A1C))
    assert wrong_type[0]["severity"] == "error" and "Patient" in wrong_type[0]["diagnostics"]


async def test_modes_update_and_delete(client: httpx.AsyncClient) -> None:
    created = (await client.post("Observation", json=A1C)).json()
    id_ = created["id"]
    same = outcome(await client.post(f"Observation/{id_}/$validate", json=parameters(created, mode="update")))
    assert [i["severity"] for i in same] == ["information"]
    other = outcome(await client.post(f"Observation/{id_}/$validate",
                                      json=parameters({**created, "id": "someone-else"}, mode="update")))
    assert [(i["severity"], i["expression"]) for i in other] == [("error", ["Observation.id"])]
    deleting = outcome(await client.post(f"Observation/{id_}/$validate", json=parameters(mode="delete")))
    assert deleting[0]["severity"] == "information"
    assert (await client.post("Observation/nobody/$validate", json=parameters(mode="delete"))).status_code == 404
    assert (await client.post("Observation/$validate", json=parameters(A1C, mode="update"))).status_code == 400
    assert (await client.post("Observation/$validate", json=parameters(A1C, mode="sideways"))).status_code == 400
    assert (await client.get(f"Observation/{id_}")).json()["meta"]["versionId"] == "1"  # nothing changed


async def test_profile_and_missing_resource(client: httpx.AsyncClient) -> None:
    base = outcome(await client.post("Observation/$validate?profile=http://hl7.org/fhir/StructureDefinition/Observation",
                                     json=A1C))
    assert base[0]["severity"] == "information"
    unknown = await client.post("Observation/$validate", json=parameters(
        A1C, profile="http://example.org/fhir/StructureDefinition/not-held"))
    assert unknown.status_code == 400 and unknown.json()["issue"][0]["code"] == "not-supported"
    lab = outcome(await client.post("Observation/$validate", json=parameters(
        A1C, profile="http://hl7.org/fhir/us/core/StructureDefinition/us-core-observation-lab")))
    failed = {i["expression"][0] for i in lab if i["severity"] == "error"}
    assert {"Observation.category", "Observation.subject"} <= failed
    assert (await client.post("Observation/$validate", json=parameters())).status_code == 400


async def test_the_token_needs_a_scope_on_the_type(app: FastAPI, client: httpx.AsyncClient) -> None:
    allowed = await bearer(app, scope="system/Observation.c")
    assert (await client.post("Observation/$validate", json=A1C, headers=allowed)).status_code == 200
    refused = await client.post("Observation/$validate", json=A1C, headers=await bearer(app, scope="system/Patient.rs"))
    assert refused.status_code == 403
