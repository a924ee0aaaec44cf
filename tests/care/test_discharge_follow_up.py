"""Rule discharge-follow-up (fhirlead/care/rules/discharge-follow-up.json): a finished inpatient,
observation or emergency Encounter of an attributed patient becomes one follow-up Task for the Lead
navigator, due 7 days after discharge (2 for a high-risk patient), over HTTP on a real store."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.care import engine, timers
from fhirlead.care.tasks import task_id
from fhirlead.settings import Settings
from tests.care.world import RESOURCES, encounter, rule_tasks, seed, settle
from tests.conftest import BASE
from tests.tokens import bearer

RULE = "discharge-follow-up"


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient) -> FastAPI:
    await seed(client, RESOURCES)
    return app


async def test_a_discharge_raises_one_task_for_the_navigator(world: FastAPI, client: httpx.AsyncClient) -> None:
    end = (datetime.now(UTC) - timedelta(days=2)).replace(hour=15, minute=30, second=0, microsecond=0)
    stay = encounter("stay", end=end)
    assert (await client.put("Encounter/stay", json=stay)).status_code == 201
    await settle(world)
    [task] = await rule_tasks(client, RULE)
    assert task["id"] == task_id(RULE, "Encounter/stay")
    assert task["for"] == {"reference": "Patient/pat"}
    assert task["focus"] == task["reasonReference"] == {"reference": "Encounter/stay"}
    assert task["owner"] == {"reference": "Practitioner/nav"}  # not the navigator whose period ended
    assert task["requester"] == {"reference": "Organization/lead"}
    assert (task["status"], task["intent"], task["priority"]) == ("requested", "order", "routine")
    assert task["code"]["coding"] == [{"system": "http://fhirlead.org/fhir/CodeSystem/care-rule",
                                       "code": RULE, "display": "Follow-up after discharge"}]
    assert task["restriction"]["period"] == {"start": end.date().isoformat(),
                                             "end": (end.date() + timedelta(days=7)).isoformat()}
    # found by the worklist's query: due date in restriction.period.end, owner the navigator
    due = task["restriction"]["period"]["end"]
    mine = (await client.get("Task", params={"owner": "Practitioner/nav", "status": "requested", "due": f"le{due}",
                                             "_sort": "due"})).json()
    assert [e["resource"]["id"] for e in mine["entry"]] == [task["id"]]
    worklist = (await client.get("CareTeam/team-pat/$worklist")).json()  # the team's worklist shows it
    assert [e["resource"]["id"] for e in worklist["entry"] if e["resource"]["resourceType"] == "Task"] == [task["id"]]

    # sent again, updated again, and the timer run twice more: still one Task, never a second version
    assert (await client.put("Encounter/stay", json=stay)).status_code == 200
    assert (await client.put("Encounter/stay", json={**stay, "length": {"value": 3, "unit": "d"}})).status_code == 200
    await settle(world)
    record = timers.timer_key(0, RULE, "Encounter/stay")
    for _ in range(2):
        await engine.fire(world.state.server, _record(record))
    [again] = await rule_tasks(client, RULE)
    assert again["id"] == task["id"] and again["meta"]["versionId"] == "1"


def _record(key: str) -> timers.Record:
    rule, reference = key.split("|")[1:]
    return timers.Record(timers.TIMERS.kind, key, {"rule": rule, "reference": reference, "pending": True}, 1, None)


@pytest.mark.parametrize("evidence", [
    {"resourceType": "RiskAssessment", "id": "risk", "status": "final", "subject": {"reference": "Patient/pat"},
     "prediction": [{"qualitativeRisk": {"coding": [{
         "system": "http://terminology.hl7.org/CodeSystem/risk-probability", "code": "high"}]}}]},
    {"resourceType": "Flag", "id": "risk", "status": "active", "subject": {"reference": "Patient/pat"},
     "code": {"coding": [{"system": "http://fhirlead.org/fhir/CodeSystem/care-rule", "code": "high-risk-patient"}]}},
])
async def test_a_high_risk_patient_is_followed_up_within_two_days(world: FastAPI, client: httpx.AsyncClient,
                                                                 evidence: dict) -> None:
    assert (await client.put(f"{evidence['resourceType']}/risk", json=evidence)).status_code == 201
    stay = encounter("er-visit", code="EMER")
    assert (await client.put("Encounter/er-visit", json=stay)).status_code == 201
    await settle(world)
    [task] = await rule_tasks(client, RULE)
    day = datetime.fromisoformat(stay["period"]["end"]).date()
    assert task["restriction"]["period"]["end"] == (day + timedelta(days=2)).isoformat()
    assert task["priority"] == "urgent"
    assert task["input"][0]["valueReference"] == {"reference": f"{evidence['resourceType']}/risk"}


async def test_low_or_retired_risk_is_not_high_risk(world: FastAPI, client: httpx.AsyncClient) -> None:
    system = "http://terminology.hl7.org/CodeSystem/risk-probability"
    for id_, status, code in (("low", "final", "low"), ("wrong", "entered-in-error", "high")):
        assert (await client.put(f"RiskAssessment/{id_}", json={
            "resourceType": "RiskAssessment", "id": id_, "status": status, "subject": {"reference": "Patient/pat"},
            "prediction": [{"qualitativeRisk": {"coding": [{"system": system, "code": code}]}}]})).status_code == 201
    assert (await client.put("Flag/old", json={
        "resourceType": "Flag", "id": "old", "status": "inactive", "subject": {"reference": "Patient/pat"},
        "code": {"coding": [{"system": "http://fhirlead.org/fhir/CodeSystem/care-rule", "code": "high-risk-patient"}]},
    })).status_code == 201
    assert (await client.put("Encounter/stay", json=encounter("stay"))).status_code == 201
    await settle(world)
    [task] = await rule_tasks(client, RULE)
    assert task["priority"] == "routine" and "input" not in task


@pytest.mark.parametrize("stay", [
    encounter("not-attributed", patient="Patient/stranger"),  # on a draft list only, with a care team
    encounter("inactive-member", patient="Patient/lapsed"),
    encounter("unknown-patient", patient="Patient/nobody"),
    encounter("ambulatory", code="AMB"),
    encounter("still-in", status="in-progress"),
    encounter("long-ago", end=datetime(2026, 1, 2, tzinfo=UTC)),  # older than the rule's maxAgeDays
    encounter("before-attribution", end=datetime(2025, 12, 20, tzinfo=UTC)),
])
async def test_no_task_when_the_rule_does_not_apply(world: FastAPI, client: httpx.AsyncClient, stay: dict) -> None:
    assert (await client.put(f"Encounter/{stay['id']}", json=stay)).status_code == 201
    await settle(world)
    assert await rule_tasks(client) == []


async def test_without_a_navigator_the_team_then_the_attributed_provider_owns_it(
        world: FastAPI, client: httpx.AsyncClient) -> None:
    for stay in (encounter("a", patient="Patient/no-nav"), encounter("b", patient="Patient/teamless")):
        assert (await client.put(f"Encounter/{stay['id']}", json=stay)).status_code == 201
    await settle(world)
    owners = {t["for"]["reference"]: (t["owner"], t.get("requester")) for t in await rule_tasks(client, RULE)}
    assert owners == {"Patient/no-nav": ({"reference": "CareTeam/team-no-nav"}, {"reference": "Organization/lead"}),
                      "Patient/teamless": ({"reference": "Practitioner/pcp"}, None)}


async def test_a_failed_transaction_records_no_timer(world: FastAPI, client: httpx.AsyncClient) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Encounter/stay"}, "resource": encounter("stay")},
        {"request": {"method": "PUT", "url": "Patient/pat", "ifMatch": 'W/"99"'},
         "resource": {"resourceType": "Patient", "id": "pat"}}]}
    assert (await client.post("", json=bundle)).status_code == 412
    assert await world.state.server.store.records.list(timers.TIMERS.kind) == []


@pytest.fixture
async def no_workers(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(dataclasses.replace(settings, workers=False))
    async with application.router.lifespan_context(application):
        yield application


async def test_a_recorded_timer_survives_a_restart(no_workers: FastAPI, settings: Settings) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=no_workers), base_url=BASE,
                                 headers=await bearer(no_workers)) as client:
        await seed(client, RESOURCES)
        assert (await client.put("Encounter/stay", json=encounter("stay"))).status_code == 201
        [timer] = await no_workers.state.server.store.records.list(timers.TIMERS.kind)
        assert timer.doc["pending"] and await rule_tasks(client) == []
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        headers = await bearer(restarted)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted), base_url=BASE,
                                     headers=headers) as client:
            await settle(restarted)
            [task] = await rule_tasks(client, RULE)
            assert task["owner"] == {"reference": "Practitioner/nav"}
            assert await restarted.state.server.store.records.list(timers.TIMERS.kind) == []
