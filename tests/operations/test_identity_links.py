"""Linking on write: every Patient record belongs to one Person; a certain match joins the Person of its
match, a probable one gets its own Person and a review Task, a deleted record leaves its Person; the
linking job survives a restart (docs/identity.md)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.operations import identity_links
from fhirlead.settings import Settings
from tests.auth.flow import FHIR
from tests.operations.test_match import HOSPITAL, LAB, PRIMARY, STRANGER
from tests.tokens import bearer


async def person_of(client: httpx.AsyncClient, patient: str, *, expect: bool = True) -> dict | None:
    """The Person linking `patient`, once the linking job has run (a few seconds at most)."""
    async with asyncio.timeout(20):
        while True:
            bundle = (await client.get("Person", params={"link": f"Patient/{patient}"})).json()
            found = [e["resource"] for e in bundle.get("entry", [])]
            if bool(found) == expect:
                assert len(found) <= 1, found
                return found[0] if found else None
            await asyncio.sleep(0.05)


async def reviews(client: httpx.AsyncClient, patient: str) -> list[dict]:
    bundle = (await client.get("Task", params={"focus": f"Patient/{patient}",
                                               "code": f"{identity_links.IDENTITY_SYSTEM}|review-match"})).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def linked(person: dict) -> dict[str, str]:
    return {entry["target"]["reference"]: entry["assurance"] for entry in person["link"]}


async def test_records_of_one_person_share_a_person(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.put("Patient/pc-8812", json=PRIMARY)).status_code == 201
    first = await person_of(client, "pc-8812")
    assert linked(first) == {"Patient/pc-8812": "level3"}
    assert first["name"] == PRIMARY["name"] and first["birthDate"] == PRIMARY["birthDate"]
    assert (await client.put("Patient/a-77", json=HOSPITAL)).status_code == 201  # certain: typo, upper case
    joined = await person_of(client, "a-77")
    assert joined["id"] == first["id"]
    assert linked(joined) == {"Patient/pc-8812": "level3", "Patient/a-77": "level3"}
    assert (await client.put("Patient/lab-00451", json=LAB)).status_code == 201  # probable: married name
    own = await person_of(client, "lab-00451")
    assert own["id"] != first["id"] and linked(own) == {"Patient/lab-00451": "level3"}
    async with asyncio.timeout(20):
        while not (found := await reviews(client, "lab-00451")):
            await asyncio.sleep(0.05)
    candidates = {i["valueReference"]["reference"] for t in found for i in t["input"] if "valueReference" in i}
    assert candidates <= {"Patient/pc-8812", "Patient/a-77"} and candidates
    assert all(t["status"] == "requested" and t["intent"] == "proposal" for t in found)
    assert (await client.put("Patient/stranger", json=STRANGER)).status_code == 201
    assert linked(await person_of(client, "stranger")) == {"Patient/stranger": "level3"}
    assert await reviews(client, "stranger") == []
    # updating a record neither moves it nor proposes the same review twice
    assert (await client.put("Patient/lab-00451", json={**LAB, "gender": "female"})).status_code == 200
    await identity_links.link(app.state.server, "lab-00451")  # the job again, as after a restart
    assert (await person_of(client, "lab-00451"))["id"] == own["id"]
    assert len(await reviews(client, "lab-00451")) == len(found)


async def test_a_deleted_record_leaves_its_person(client: httpx.AsyncClient) -> None:
    assert (await client.put("Patient/pc-8812", json=PRIMARY)).status_code == 201
    person = await person_of(client, "pc-8812")
    assert (await client.delete("Patient/pc-8812")).status_code in (200, 204)
    await person_of(client, "pc-8812", expect=False)
    left = (await client.get(f"Person/{person['id']}")).json()
    assert left["active"] is False and "link" not in left


@pytest.fixture
async def no_workers(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(dataclasses.replace(settings, workers=False))
    async with application.router.lifespan_context(application):
        yield application


async def test_a_linking_job_survives_a_restart(no_workers: FastAPI, settings: Settings) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=no_workers), base_url=FHIR,
                                 headers=await bearer(no_workers)) as client:
        assert (await client.put("Patient/pc-8812", json=PRIMARY)).status_code == 201
        job = await no_workers.state.server.store.records.get(identity_links.JOBS.kind, "pc-8812")
        assert job is not None and job.doc["pending"]
        assert (await client.get("Person", params={"link": "Patient/pc-8812"})).json().get("entry") is None
    restarted = create_app(settings)
    async with restarted.router.lifespan_context(restarted), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=restarted), base_url=FHIR, headers=await bearer(restarted)) as client:
        assert linked(await person_of(client, "pc-8812")) == {"Patient/pc-8812": "level3"}


async def test_records_linked_together_leave_no_open_review(no_workers: FastAPI) -> None:
    """Three certain records written at once: the first one's job finds the others without a Person yet and
    proposes reviews; once they join its Person, those reviews are answered (cancelled, with the reason)."""
    again = {**HOSPITAL, "id": "er-5"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=no_workers), base_url=FHIR,
                                 headers=await bearer(no_workers)) as client:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}}
            for r in (PRIMARY, HOSPITAL, again)]}
        assert (await client.post("", json=bundle)).status_code == 200
        server = no_workers.state.server
        await identity_links.link(server, "pc-8812")
        proposed = await reviews(client, "pc-8812")
        assert len(proposed) == 2 and all(t["status"] == "requested" for t in proposed)
        for record in ("a-77", "er-5"):
            await identity_links.link(server, record)
        person = await person_of(client, "pc-8812")
        assert set(linked(person)) == {"Patient/pc-8812", "Patient/a-77", "Patient/er-5"}
        answered = [t for record in ("pc-8812", "a-77", "er-5") for t in await reviews(client, record)]
        assert answered and all(t["status"] == "cancelled" and "linked" in t["statusReason"]["text"] for t in answered)
