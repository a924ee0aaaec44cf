"""Rule referral-follow-through (fhirlead/care/rules/referral-follow-through.json): an active referral
with no Appointment or Encounter based on it when its window is over becomes one Task for the Lead
navigator, 3 days after the window; the timer fires by itself, survives restarts and never clogs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.care import engine, timers
from tests.care.world import RESOURCES, referral, rule_tasks, seed, settle, today

RULE = "referral-follow-through"


@pytest.fixture
async def world(app: FastAPI, client: httpx.AsyncClient) -> FastAPI:
    await seed(client, RESOURCES)
    return app


def past_window(days_ago: int = 2) -> dict:
    end = today() - timedelta(days=days_ago)
    return {"occurrencePeriod": {"start": (end - timedelta(days=30)).isoformat(), "end": end.isoformat()}}


def soon(seconds: float = 2.5) -> dict:
    """A window closing at least `seconds` from now (a dateTime has whole seconds here: rounded up)."""
    moment = datetime.now(UTC) + timedelta(seconds=seconds + 1)
    return {"occurrenceDateTime": moment.replace(microsecond=0).isoformat()}


async def drained(app: FastAPI, seconds: float = 20.0) -> None:
    """Wait until no timer is left at all (each has fired)."""
    records = app.state.server.store.records
    for _ in range(int(seconds / 0.05)):
        if not await records.list(timers.TIMERS.kind):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timers left")


async def eventually(client: httpx.AsyncClient, seconds: float = 20.0) -> list[dict]:
    for _ in range(int(seconds / 0.05)):
        tasks = await rule_tasks(client, RULE)
        if tasks:
            return tasks
        await asyncio.sleep(0.05)
    raise AssertionError("no Task was raised")


async def test_a_referral_whose_window_passed_raises_one_task(world: FastAPI, client: httpx.AsyncClient) -> None:
    request = referral("cardio", **past_window())
    assert (await client.put("ServiceRequest/cardio", json=request)).status_code == 201
    await settle(world)
    [task] = await rule_tasks(client, RULE)
    end = today() - timedelta(days=2)
    assert task["restriction"]["period"] == {"start": end.isoformat(), "end": (end + timedelta(days=3)).isoformat()}
    assert task["basedOn"] == [{"reference": "ServiceRequest/cardio"}]
    assert task["focus"] == {"reference": "ServiceRequest/cardio"} and task["for"] == {"reference": "Patient/pat"}
    assert task["owner"] == {"reference": "Practitioner/nav"} and task["priority"] == "routine"
    assert task["code"]["coding"][0]["code"] == RULE
    assert (await client.put("ServiceRequest/cardio", json=request)).status_code == 200
    await settle(world)
    assert [t["meta"]["versionId"] for t in await rule_tasks(client, RULE)] == ["1"]


async def test_the_timer_fires_when_the_window_closes_with_nothing_written(world: FastAPI,
                                                                          client: httpx.AsyncClient) -> None:
    assert (await client.put("ServiceRequest/soon", json=referral("soon", **soon()))).status_code == 201
    [timer] = await world.state.server.store.records.list(timers.TIMERS.kind)
    assert timers.due_of(timer.key) > time.time()
    assert await rule_tasks(client) == []  # not before the window is over
    [task] = await eventually(client)
    assert task["restriction"]["period"]["end"] == (today() + timedelta(days=3)).isoformat()


async def test_the_default_window_runs_from_authored_on(world: FastAPI, client: httpx.AsyncClient) -> None:
    authored = today() - timedelta(days=40)
    request = referral("plain", authoredOn=authored.isoformat())
    assert (await client.put("ServiceRequest/plain", json=request)).status_code == 201
    await settle(world)
    [task] = await rule_tasks(client, RULE)
    assert task["restriction"]["period"]["start"] == (authored + timedelta(days=30)).isoformat()
    assert task["restriction"]["period"]["end"] == (authored + timedelta(days=33)).isoformat()


def appointment(based_on: str, status: str = "booked") -> dict:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=5)
    return {"resourceType": "Appointment", "id": "visit", "status": status, "basedOn": [{"reference": based_on}],
            "start": start.isoformat(), "end": (start + timedelta(minutes=30)).isoformat(),
            "participant": [{"actor": {"reference": "Patient/pat"}, "status": "accepted"}]}


def visit(based_on: str) -> dict:
    return {"resourceType": "Encounter", "id": "visit", "status": "finished", "basedOn": [{"reference": based_on}],
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/pat"}}


@pytest.mark.parametrize("follow_through", [appointment, visit])
async def test_an_appointment_or_encounter_before_the_window_closes_means_no_task(
        world: FastAPI, client: httpx.AsyncClient, follow_through) -> None:
    assert (await client.put("ServiceRequest/soon", json=referral("soon", **soon()))).status_code == 201
    made = follow_through("ServiceRequest/soon")
    assert (await client.put(f"{made['resourceType']}/visit", json=made)).status_code == 201
    await drained(world)
    assert await rule_tasks(client) == []


async def test_a_cancelled_appointment_is_no_follow_through(world: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.put("Appointment/visit", json=appointment("ServiceRequest/late", "cancelled"))
            ).status_code == 201
    assert (await client.put("ServiceRequest/late", json=referral("late", **past_window()))).status_code == 201
    await settle(world)
    assert len(await rule_tasks(client, RULE)) == 1


@pytest.mark.parametrize("status", ["revoked", "completed"])
async def test_a_referral_closed_before_the_window_ends_raises_nothing(world: FastAPI, client: httpx.AsyncClient,
                                                                     status: str) -> None:
    request = referral("soon", **soon())
    assert (await client.put("ServiceRequest/soon", json=request)).status_code == 201
    assert (await client.put("ServiceRequest/soon", json={**request, "status": status})).status_code == 200
    await drained(world)
    assert await rule_tasks(client) == []


@pytest.mark.parametrize("request_", [
    referral("revoked", status="revoked", **past_window()),
    referral("proposal", intent="proposal", **past_window()),
    {**referral("lab", **past_window()), "category": [{"coding": [
        {"system": "http://snomed.info/sct", "code": "108252007"}]}]},
    referral("stranger", patient="Patient/stranger", **past_window()),
    referral("ancient", **past_window(days_ago=200)),
])
async def test_no_task_when_the_rule_does_not_apply(world: FastAPI, client: httpx.AsyncClient, request_: dict) -> None:
    request_ = {**request_, "intent": request_.get("intent", "order")}
    assert (await client.put(f"ServiceRequest/{request_['id']}", json=request_)).status_code == 201
    await drained(world)
    assert await rule_tasks(client) == []


async def test_a_window_moved_later_waits_for_the_new_end(world: FastAPI, client: httpx.AsyncClient) -> None:
    later = (today() + timedelta(days=20)).isoformat()
    assert (await client.put("ServiceRequest/moved", json={**referral("moved"), "occurrenceDateTime": later})
            ).status_code == 201
    records = world.state.server.store.records
    # the timer an earlier version (window ending now) left behind fires: the window is not over now
    await timers.arm_now(records, int(time.time() * 1_000_000), RULE, "ServiceRequest/moved")
    await settle(world)
    assert await rule_tasks(client) == []
    [timer] = await records.list(timers.TIMERS.kind)
    assert timer.doc["reference"] == "ServiceRequest/moved" and timers.due_of(timer.key) > time.time() + 19 * 86400


async def test_timers_waiting_for_weeks_do_not_hold_up_a_due_one(world: FastAPI, client: httpx.AsyncClient) -> None:
    records = world.state.server.store.records
    later = int((time.time() + 30 * 86400) * 1_000_000)
    for n in range(250):  # more than a round of the worker
        await timers.arm_now(records, later + n, RULE, f"ServiceRequest/waiting-{n}")
    assert (await client.put("ServiceRequest/due", json=referral("due", **past_window()))).status_code == 201
    await settle(world)
    assert [t["focus"]["reference"] for t in await rule_tasks(client, RULE)] == ["ServiceRequest/due"]
    assert len(await records.list(timers.TIMERS.kind)) == 250


async def test_two_processes_firing_the_same_timer_write_one_task(world: FastAPI, client: httpx.AsyncClient) -> None:
    server = world.state.server
    request = referral("race", **past_window())
    record = timers.Record(timers.TIMERS.kind, timers.timer_key(0, RULE, "ServiceRequest/race"),
                           {"rule": RULE, "reference": "ServiceRequest/race", "pending": True}, 1, None)
    assert (await client.put("ServiceRequest/race", json=request)).status_code == 201
    await asyncio.gather(*(engine.fire(server, record) for _ in range(3)))
    await settle(world)
    assert [t["meta"]["versionId"] for t in await rule_tasks(client, RULE)] == ["1"]
