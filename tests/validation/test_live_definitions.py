"""Conformance resources written through the API take effect without a restart: a StructureDefinition and
the ValueSet it binds to, posted, hold the next write to them; changed or deleted, they stop; a server
started on the store, or another server on the same store, has them too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from tests.conftest import BASE, FHIR_JSON
from tests.tokens import bearer

PROFILE = "http://lead.example.org/fhir/StructureDefinition/enrolled-patient"
GENDERS = "http://lead.example.org/fhir/ValueSet/binary-gender"


def profile(birth_date_min: int = 1) -> dict[str, Any]:
    return {
        "resourceType": "StructureDefinition", "url": PROFILE, "name": "EnrolledPatient", "status": "active",
        "kind": "resource", "abstract": False, "type": "Patient", "derivation": "constraint",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
        "differential": {"element": [
            {"id": "Patient", "path": "Patient"},
            {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": birth_date_min},
            {"id": "Patient.gender", "path": "Patient.gender", "min": 1,
             "binding": {"strength": "required", "valueSet": GENDERS}},
        ]},
    }


VALUE_SET = {
    "resourceType": "ValueSet", "url": GENDERS, "status": "active",
    "compose": {"include": [{"system": "http://hl7.org/fhir/administrative-gender",
                             "concept": [{"code": "male"}, {"code": "female"}]}]},
}


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "meta": {"profile": [PROFILE]}, "name": [{"family": "Okafor"}], **elements}


async def test_a_posted_profile_holds_the_next_write(client: httpx.AsyncClient) -> None:
    assert (await client.post("Patient", json=patient())).status_code == 201  # not known yet: not checked
    created = (await client.post("StructureDefinition", json=profile())).json()
    assert (await client.post("ValueSet", json=VALUE_SET)).status_code == 201
    refused = await client.post("Patient", json=patient(gender="female"))
    assert refused.status_code == 400 and refused.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    other = await client.post("Patient", json=patient(gender="other", birthDate="1961-03-02"))
    assert other.status_code == 400 and "binary-gender" in other.json()["issue"][0]["diagnostics"]
    assert (await client.post("Patient", json=patient(gender="male", birthDate="1961-03-02"))).status_code == 201

    loosened = await client.put(f"StructureDefinition/{created['id']}", json={**profile(0), "id": created["id"]})
    assert loosened.status_code == 200
    assert (await client.post("Patient", json=patient(gender="female"))).status_code == 201
    assert (await client.delete(f"StructureDefinition/{created['id']}")).status_code in (200, 204)
    assert (await client.post("Patient", json=patient())).status_code == 201


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        headers = {"Accept": FHIR_JSON, **await bearer(application)}
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as client:
            yield application, client


async def test_another_server_on_the_store_and_a_restart_have_them(settings: Settings) -> None:
    async with serving(settings) as (_, first), serving(settings) as (second_app, second):
        assert (await first.post("StructureDefinition", json=profile())).status_code == 201
        assert (await first.post("ValueSet", json=VALUE_SET)).status_code == 201
        assert (await second.post("Patient", json=patient(gender="female"))).status_code == 201  # not polled yet
        await second_app.state.server.live.load()  # what its poll does every few seconds
        assert (await second.post("Patient", json=patient(gender="female"))).status_code == 400
        assert (await second.post("Patient", json=patient(gender="other", birthDate="1961-03-02"))).status_code == 400
    async with serving(settings) as (_, restarted):
        assert (await restarted.post("Patient", json=patient(gender="female"))).status_code == 400
        assert (await restarted.post("Patient", json=patient(gender="male", birthDate="1961-03-02"))).status_code == 201


async def test_validate_sees_a_posted_profile(client: httpx.AsyncClient) -> None:
    assert (await client.post("StructureDefinition", json=profile())).status_code == 201
    answer = await client.post(f"Patient/$validate?profile={PROFILE}", json={"resourceType": "Patient"})
    assert answer.status_code == 200
    assert {issue["expression"][0] for issue in answer.json()["issue"]} == {"Patient.birthDate", "Patient.gender"}
