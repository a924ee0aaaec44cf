"""Gaps that become work (operations/gap_tasks.py): `$care-gaps` with recordTasks makes one Task per patient,
measure and period (never two), and new data that closes the gap completes the Task in the background,
whichever way the data arrives (an update, a transaction, `fhirlead load`), also after a restart."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.operations import gap_tasks
from fhirlead.settings import Settings
from tests.auth.flow import FHIR, seed
from tests.operations.gap_measure import content, patient
from tests.tokens import bearer

RECORD = {"resourceType": "Parameters", "parameter": [
    {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
    {"name": "practitioner", "valueString": "Practitioner/dr-gp"}, {"name": "status", "valueCode": "open-gap"},
    {"name": "recordTasks", "valueBoolean": True}]}
GAPS = {"system": gap_tasks.GAP_SYSTEM}


async def seeded(app: FastAPI) -> None:
    gp = {"generalPractitioner": [{"reference": "Practitioner/dr-gp"}]}
    await seed(app, [*content(), {"resourceType": "Practitioner", "id": "dr-gp"},
                     {"resourceType": "CareTeam", "id": "team-gap", "status": "active",
                      "subject": {"reference": "Patient/gap"}},
                     *patient("gap", 10.2, **gp), *patient("other-gap", 11.0, **gp), *patient("controlled", 6.9, **gp)])


async def gap_tasks_of(client: httpx.AsyncClient) -> list[dict]:
    found = (await client.get("Task", params={"identifier": f"{gap_tasks.GAP_SYSTEM}|", "_count": 100})).json()
    return [e["resource"] for e in found.get("entry", [])]


async def eventually_completed(client: httpx.AsyncClient, task: str, seconds: float = 15.0) -> dict:
    for _ in range(int(seconds / 0.05)):
        body = (await client.get(task)).json()
        if body["status"] == "completed":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{task} was not completed: {body}")


def corrected(value: float) -> dict:
    return next(r for r in patient("gap", value) if r["id"] == "gap-a1c")


@pytest.fixture
async def world(app: FastAPI) -> FastAPI:
    await seeded(app)
    return app


async def test_open_gaps_become_tasks_once(world: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("Measure/$care-gaps", params={"periodStart": "2026-01-01", "periodEnd": "2026-12-31",
                                                           "practitioner": "Practitioner/dr-gp",
                                                           "status": "open-gap", "recordTasks": "true"})
            ).status_code == 405  # it writes: POST only
    first = await client.post("Measure/$care-gaps", json=RECORD)
    assert first.status_code == 200, first.text
    tasks = {t["for"]["reference"]: t for t in await gap_tasks_of(client)}
    assert set(tasks) == {"Patient/gap", "Patient/other-gap"}
    task = tasks["Patient/gap"]
    assert task["status"] == "requested" and task["intent"] == "plan"
    assert task["code"]["coding"][0]["code"] == "CAREGAP" and task["focus"] == {"reference": "Measure/gap-test"}
    assert task["owner"] == {"reference": "Practitioner/dr-gp"}
    assert task["restriction"]["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    again = await client.post("Measure/$care-gaps", json=RECORD)
    assert again.status_code == 200
    assert sorted(t["id"] for t in await gap_tasks_of(client)) == sorted(t["id"] for t in tasks.values())
    assert all(t["meta"]["versionId"] == "1" for t in await gap_tasks_of(client))
    worklist = (await client.get("Task", params={"code": "http://terminology.hl7.org/CodeSystem/v3-ActCode|CAREGAP",
                                                 "status": "requested", "owner": "Practitioner/dr-gp"})).json()
    assert {e["resource"]["for"]["reference"] for e in worklist["entry"]} == {"Patient/gap", "Patient/other-gap"}


async def test_new_evidence_completes_the_task(world: FastAPI, client: httpx.AsyncClient) -> None:
    await client.post("Measure/$care-gaps", json=RECORD)
    tasks = {t["for"]["reference"]: t for t in await gap_tasks_of(client)}
    assert (await client.put("Observation/gap-a1c", json=corrected(6.5))).status_code == 200
    done = await eventually_completed(client, f"Task/{tasks['Patient/gap']['id']}")
    assert done["businessStatus"]["text"] == "closed-gap"
    evidence = {o["valueReference"]["reference"] for o in done["output"]}
    assert "Observation/gap-a1c" in evidence
    other = (await client.get(f"Task/{tasks['Patient/other-gap']['id']}")).json()
    assert other["status"] == "requested"  # untouched: its patient has no new data
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "request": {"method": "PUT", "url": "Observation/other-gap-a1c"},
        "resource": {**next(r for r in patient("other-gap", 7.1) if r["id"] == "other-gap-a1c")}}]}
    assert (await client.post("", json=bundle)).status_code == 200
    await eventually_completed(client, f"Task/{tasks['Patient/other-gap']['id']}")


async def test_a_write_for_a_patient_without_open_gaps_records_no_job(world: FastAPI,
                                                                      client: httpx.AsyncClient) -> None:
    await client.post("Measure/$care-gaps", json=RECORD)
    assert (await client.put("Observation/controlled-a1c",
                             json=next(r for r in patient("controlled", 6.0) if r["id"] == "controlled-a1c"))
            ).status_code == 200
    records = world.state.server.store.records
    assert await records.get(gap_tasks.JOB, "controlled") is None


@pytest.fixture
async def no_workers(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(dataclasses.replace(settings, workers=False))
    async with application.router.lifespan_context(application):
        yield application


async def test_a_pending_recheck_survives_a_restart(no_workers: FastAPI, settings: Settings,
                                                   tmp_path: Path) -> None:
    from fhirlead.load import load_files

    await seeded(no_workers)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=no_workers), base_url=FHIR,
                                 headers=await bearer(no_workers)) as client:
        assert (await client.post("Measure/$care-gaps", json=RECORD)).status_code == 200
        [task] = [t for t in await gap_tasks_of(client) if t["for"]["reference"] == "Patient/gap"]
    # new evidence arrives through `fhirlead load` while no server works the jobs
    path = tmp_path / "correction.ndjson"
    path.write_bytes(orjson.dumps(corrected(6.0)) + b"\n")
    assert not (await load_files(settings, [path])).failures
    job = await no_workers.state.server.store.records.get(gap_tasks.JOB, "gap")
    assert job is not None and job.doc["pending"]
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted):
        headers = await bearer(restarted)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=restarted), base_url=FHIR,
                                     headers=headers) as client:
            done = await eventually_completed(client, f"Task/{task['id']}")
            assert "Observation/gap-a1c" in {o["valueReference"]["reference"] for o in done["output"]}
            records = restarted.state.server.store.records
            for _ in range(100):  # the job is done once its record is gone (expired)
                if await records.get(gap_tasks.JOB, "gap") is None:
                    break
                await asyncio.sleep(0.05)
            assert await records.get(gap_tasks.JOB, "gap") is None


async def test_a_failed_transaction_records_no_job(world: FastAPI, client: httpx.AsyncClient) -> None:
    """The job commits with the data or not at all: a transaction that fails leaves neither."""
    await client.post("Measure/$care-gaps", json=RECORD)
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": "Observation/gap-a1c"}, "resource": corrected(6.0)},
        {"request": {"method": "PUT", "url": "Observation/gap-bp", "ifMatch": 'W/"99"'},  # fails after the first
         "resource": next(r for r in patient("gap") if r["id"] == "gap-bp")}]}
    assert (await client.post("", json=bundle)).status_code == 412
    assert await world.state.server.store.records.get(gap_tasks.JOB, "gap") is None
    assert (await client.get("Observation/gap-a1c")).json()["valueQuantity"]["value"] == 10.2


async def test_without_a_practitioner_the_care_team_or_the_gp_owns_the_task(world: FastAPI,
                                                                            client: httpx.AsyncClient) -> None:
    for patient_id in ("gap", "other-gap"):
        parameters = [p for p in RECORD["parameter"] if p["name"] != "practitioner"]
        parameters.append({"name": "subject", "valueString": f"Patient/{patient_id}"})
        answer = await client.post("Measure/$care-gaps", json={"resourceType": "Parameters", "parameter": parameters})
        assert answer.status_code == 200, answer.text
    owners = {t["for"]["reference"]: t["owner"]["reference"] for t in await gap_tasks_of(client)}
    assert owners == {"Patient/gap": "CareTeam/team-gap", "Patient/other-gap": "Practitioner/dr-gp"}
