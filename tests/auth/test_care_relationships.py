"""Care-relationship access (auth/care.py): a practitioner user with user/ scopes reaches the patients
attributed to them (or their role, or its organization) on a final attribution list within its periods,
those whose general practitioner they are, and those on whose active CareTeam they are; not the others.
Access ends when the membership ends or the member is removed. Admins reach everyone."""

from __future__ import annotations

from datetime import date, timedelta

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.auth import care
from fhirlead.auth.tokens import Authorization
from tests.auth.flow import FHIR, seed

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
PAST = (date.today() - timedelta(days=30)).isoformat()
YESTERDAY = (date.today() - timedelta(days=1)).isoformat()


def attributed(patient: str, provider: str, **extra: object) -> dict:
    return {"extension": [{"url": ATR + "ext-attributedProvider", "valueReference": {"reference": provider}}],
            "entity": {"reference": f"Patient/{patient}"}, **extra}


def attribution_list(id_: str, status: str, *members: dict) -> dict:
    return {"resourceType": "Group", "id": id_, "type": "person", "actual": True,
            "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": status}], "member": list(members)}


PATIENTS = ["by-gp", "by-team", "by-role", "by-org", "ended", "dropped", "open-list", "stranger"]


@pytest.fixture
async def world(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setattr(care, "CACHE_SECONDS", 0.0)  # every request sees the store as it is now
    await seed(app, [
        {"resourceType": "Practitioner", "id": "dr-a"},
        {"resourceType": "Organization", "id": "clinic-a", "name": "Clinic A"},
        {"resourceType": "PractitionerRole", "id": "role-a", "active": True,
         "practitioner": {"reference": "Practitioner/dr-a"}, "organization": {"reference": "Organization/clinic-a"}},
        *({"resourceType": "Patient", "id": p} for p in PATIENTS),
        *({"resourceType": "Observation", "id": f"obs-{p}", "status": "final", "code": {"text": "x"},
           "subject": {"reference": f"Patient/{p}"}} for p in PATIENTS),
        {"resourceType": "CareTeam", "id": "team", "status": "active", "subject": {"reference": "Patient/by-team"},
         "participant": [{"member": {"reference": "Practitioner/dr-a"}}]},
        attribution_list("final", "final", attributed("by-role", "PractitionerRole/role-a"),
                         attributed("by-org", "Organization/clinic-a"),
                         attributed("ended", "Practitioner/dr-a", period={"start": PAST, "end": YESTERDAY}),
                         attributed("dropped", "Practitioner/dr-a", inactive=True)),
        attribution_list("draft", "open", attributed("open-list", "Practitioner/dr-a")),
    ])
    await seed(app, [{"resourceType": "Patient", "id": "by-gp",
                      "generalPractitioner": [{"reference": "Practitioner/dr-a"}]}])
    return app


async def client_for(app: FastAPI, scope: str, admin: bool = False) -> httpx.AsyncClient:
    token = await app.state.server.auth.tokens.access_token(
        Authorization("app", scope, "dr-a", fhir_user="Practitioner/dr-a", admin=admin), FHIR, FHIR)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})


REACHED = {"by-gp", "by-team", "by-role", "by-org"}


async def test_a_practitioner_reaches_the_patients_in_their_care(world: FastAPI) -> None:
    async with await client_for(world, "user/*.rs") as fhir:
        patients = (await fhir.get("Patient?_count=100")).json()
        assert {e["resource"]["id"] for e in patients.get("entry", [])} == REACHED
        observations = (await fhir.get("Observation?_count=100")).json()
        assert {e["resource"]["id"] for e in observations.get("entry", [])} == {f"obs-{p}" for p in REACHED}
        for patient in PATIENTS:
            answer = await fhir.get(f"Patient/{patient}")
            assert answer.status_code == (200 if patient in REACHED else 404), patient
            assert (await fhir.get(f"Observation/obs-{patient}")).status_code == (200 if patient in REACHED else 404)
        assert (await fhir.get("Practitioner/dr-a")).status_code == 200  # not a patient's: reachable


async def test_access_ends_with_the_membership(world: FastAPI) -> None:
    async with await client_for(world, "user/*.rs") as fhir:
        assert (await fhir.get("Patient/by-role")).status_code == 200
    await seed(world, [attribution_list("final", "final", attributed("by-org", "Organization/clinic-a"))])
    async with await client_for(world, "user/*.rs") as fhir:
        assert (await fhir.get("Patient/by-role")).status_code == 404
        assert (await fhir.get("Patient/by-org")).status_code == 200


async def test_an_admin_reaches_everyone(world: FastAPI) -> None:
    async with await client_for(world, "user/*.rs", admin=True) as fhir:
        patients = (await fhir.get("Patient?_count=100")).json()
        assert {e["resource"]["id"] for e in patients["entry"]} >= set(PATIENTS)


async def test_a_practitioner_reads_the_lists_that_hold_a_patient_in_their_care(world: FastAPI) -> None:
    async with await client_for(world, "user/*.rs") as fhir:
        assert (await fhir.get("Group/final")).status_code == 200  # holds by-role and by-org
        assert (await fhir.get("Group/draft")).status_code == 404  # holds only open-list, not in their care
        found = (await fhir.get("Group?_count=10")).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == ["final"]


async def test_tasks_follow_the_patient_they_are_for(world: FastAPI) -> None:
    """Task is outside R4's Patient compartment, yet a care team's Tasks are about one patient: a
    practitioner's token reaches the Tasks for the patients in their care only, a patient's those for them."""
    await seed(world, [{"resourceType": "Task", "id": f"task-{p}", "status": "requested", "intent": "order",
                        "for": {"reference": f"Patient/{p}"}} for p in PATIENTS])
    async with await client_for(world, "user/*.cruds") as practitioner:
        found = (await practitioner.get("Task", params={"_count": "100"})).json()
        assert {e["resource"]["id"] for e in found.get("entry", ())} == {f"task-{p}" for p in REACHED}
        assert (await practitioner.get("Task/task-stranger")).status_code == 404
        assert (await practitioner.get("Task/task-by-team")).status_code == 200
        stray = {"resourceType": "Task", "status": "requested", "intent": "order",
                 "for": {"reference": "Patient/stranger"}}
        assert (await practitioner.post("Task", json=stray)).status_code == 403
    token = await world.state.server.auth.tokens.access_token(
        Authorization("app", "patient/Task.rs", "someone", patient="by-gp"), FHIR, FHIR)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=FHIR,
                                 headers={"Authorization": f"Bearer {token}"}) as patient_app:
        found = (await patient_app.get("Task")).json()
        assert [e["resource"]["id"] for e in found.get("entry", ())] == ["task-by-gp"]
