"""SearchParameters written through the API are in force without a restart, and the resources written
before them are re-indexed (docs/search.md "SearchParameters written to the store"): created, updated and
deleted ones change the searches of this server at once, of another server on the store at its next poll,
and of a restarted one; a colliding code, a derived url or an expression that cannot run are refused; an
expression that fails on some data never fails that data's write; the re-indexing job resumes after a
restart and covers Groups, whose members are indexed one by one."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.copy import copy_store
from fhirlead.load import load_files
from fhirlead.search import reindex
from fhirlead.settings import Settings
from fhirlead.storage.factory import open_store
from tests.conftest import BASE, FHIR_JSON
from tests.tokens import bearer

BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
CITY = f"Patient.extension.where(url='{BIRTH_PLACE}').value.as(Address).city"
STATE = f"Patient.extension.where(url='{BIRTH_PLACE}').value.as(Address).state"
SP_URL = "http://lead.example.org/fhir/SearchParameter/patient-birth-place"
STRICT = {"Prefer": "handling=strict"}


def birth_place(expression: str = CITY, **elements: Any) -> dict[str, Any]:
    return {"resourceType": "SearchParameter", "url": SP_URL, "name": "BirthPlace", "status": "active",
            "description": "Where the patient was born (the core patient-birthPlace extension)",
            "code": "birth-place", "base": ["Patient"], "type": "string", "expression": expression, **elements}


def patient(family: str, city: str | None = None, state: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if city or state:
        address = {key: value for key, value in (("city", city), ("state", state)) if value}
        resource["extension"] = [{"url": BIRTH_PLACE, "valueAddress": address}]
    return resource


@pytest.fixture(autouse=True)
def no_settling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jobs start at once: these servers have no writes in flight from before a SearchParameter changed."""
    monkeypatch.setattr(reindex, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(reindex, "LOCAL_SETTLE_SECONDS", 0.0)


@asynccontextmanager
async def serving(settings: Settings, *, workers: bool = True) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(dataclasses.replace(settings, workers=workers))
    async with application.router.lifespan_context(application):
        headers = {"Accept": FHIR_JSON, **await bearer(application)}
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as client:
            yield application, client


async def pending_jobs(app: FastAPI) -> list[str]:
    return [job.key for job in await app.state.server.store.records.list(reindex.JOBS.kind) if job.doc.get("pending")]


async def reindexed(app: FastAPI) -> None:
    """Once the background worker has finished every re-indexing job."""
    async with asyncio.timeout(20):
        while await pending_jobs(app):
            await asyncio.sleep(0.02)


async def drain(app: FastAPI) -> None:
    """Run the pending re-indexing jobs now, as the worker does (for servers started without workers)."""
    worker = reindex.worker(app.state.server)
    for _ in range(100):
        if not await pending_jobs(app):
            return
        await worker.run_once()
    raise AssertionError("re-indexing did not finish")


async def families(client: httpx.AsyncClient, type_: str = "Patient", **params: str) -> set[str]:
    response = await client.get(type_, params=params, headers=STRICT)
    assert response.status_code == 200, response.text
    return {entry["resource"]["name"][0]["family"] for entry in response.json().get("entry", [])
            if entry["search"]["mode"] == "match"}


async def test_a_posted_search_parameter_is_in_force_and_indexes_what_was_there(settings: Settings) -> None:
    async with serving(settings) as (app, client):
        for resource in (patient("Old-Lyon", "Lyon", "Rhone"), patient("Old-Paris", "Paris", "Seine"),
                         patient("Nowhere")):
            assert (await client.post("Patient", json=resource)).status_code == 201
        unknown = await client.get("Patient", params={"birth-place": "Lyon"}, headers=STRICT)
        assert unknown.status_code == 400 and "birth-place" in unknown.text
        created = await client.post("SearchParameter", json=birth_place())
        assert created.status_code == 201, created.text
        sp_id = created.json()["id"]
        await reindexed(app)
        assert await families(client, **{"birth-place": "Lyon"}) == {"Old-Lyon"}
        assert (await client.post("Patient", json=patient("New-Lyon", "lyon"))).status_code == 201
        assert await families(client, **{"birth-place": "lyon"}) == {"Old-Lyon", "New-Lyon"}
        assert await families(client, **{"birth-place:exact": "Paris"}) == {"Old-Paris"}
        assert await families(client, **{"birth-place:missing": "true"}) == {"Nowhere"}
        statement = (await client.get("metadata")).json()
        patient_params = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")["searchParam"]
        assert {"name": "birth-place", "definition": SP_URL, "type": "string"} in patient_params

        # a changed expression: in force at once, and what was indexed is indexed again
        changed = await client.put(f"SearchParameter/{sp_id}", json={**birth_place(STATE), "id": sp_id})
        assert changed.status_code == 200, changed.text
        await reindexed(app)
        assert await families(client, **{"birth-place": "Rhone"}) == {"Old-Lyon"}
        assert await families(client, **{"birth-place": "Lyon"}) == set()

        # deleted: an unknown parameter again (400 when strict; ignored with a warning otherwise)
        assert (await client.delete(f"SearchParameter/{sp_id}")).status_code in (200, 204)
        refused = await client.get("Patient", params={"birth-place": "Rhone"}, headers=STRICT)
        assert refused.status_code == 400 and refused.json()["issue"][0]["expression"] == ["birth-place"]
        lenient = (await client.get("Patient", params={"birth-place": "Rhone"})).json()
        assert lenient["entry"][0]["search"]["mode"] == "outcome" and len(lenient["entry"]) == 5
        statement = (await client.get("metadata")).json()
        patient_params = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")["searchParam"]
        assert "birth-place" not in {p["name"] for p in patient_params}


async def test_another_server_sees_it_at_its_poll_and_a_restart_keeps_it(settings: Settings) -> None:
    async with serving(settings) as (first_app, first), serving(settings, workers=False) as (second_app, second):
        assert (await second.post("Patient", json=patient("Before", "Lyon"))).status_code == 201
        assert (await first.post("SearchParameter", json=birth_place())).status_code == 201
        await reindexed(first_app)
        assert (await second.get("Patient", params={"birth-place": "Lyon"}, headers=STRICT)).status_code == 400
        await second_app.state.server.live.load()  # what its poll does every few seconds
        assert await families(second, **{"birth-place": "Lyon"}) == {"Before"}
        assert (await second.post("Patient", json=patient("Written-by-second", "Lyon"))).status_code == 201
        assert await families(first, **{"birth-place": "Lyon"}) == {"Before", "Written-by-second"}
    async with serving(settings, workers=False) as (_, restarted):
        assert await families(restarted, **{"birth-place": "Lyon"}) == {"Before", "Written-by-second"}
        assert (await restarted.post("Patient", json=patient("After-restart", "Lyon"))).status_code == 201
        assert await families(restarted, **{"birth-place": "Lyon"}) == {"Before", "Written-by-second",
                                                                        "After-restart"}


async def test_a_conflicting_code_is_refused(settings: Settings) -> None:
    async with serving(settings, workers=False) as (app, client):
        first = await client.post("SearchParameter", json=birth_place())
        assert first.status_code == 201
        other = await client.post("SearchParameter", json=birth_place(url="http://elsewhere.example/birth-place"))
        assert other.status_code == 400
        diagnostics = other.json()["issue"][0]["diagnostics"]
        assert "birth-place" in diagnostics and SP_URL in diagnostics and first.json()["id"] in diagnostics
        core = await client.post("SearchParameter", json=birth_place(url="http://elsewhere.example/name", code="name"))
        assert core.status_code == 400
        assert "http://hl7.org/fhir/SearchParameter/Patient-name" in core.json()["issue"][0]["diagnostics"]
        common = await client.post("SearchParameter", json=birth_place(url="http://elsewhere.example/tag", code="_tag"))
        assert common.status_code == 400
        for code in ("birth.place", "birth:place", "_birth"):
            odd = await client.post("SearchParameter", json=birth_place(url=f"http://elsewhere.example/{code}",
                                                                        code=code))
            assert odd.status_code == 400, code
        # on another base the code is free; the same url replaces (an update of its definition)
        practitioner = birth_place(url="http://elsewhere.example/practitioner-birth-place", base=["Practitioner"],
                                   expression=CITY.replace("Patient.", "Practitioner."))
        assert (await client.post("SearchParameter", json=practitioner)).status_code == 201
        assert (await client.post("SearchParameter", json=birth_place(STATE))).status_code == 201  # same url
        # two in one transaction collide with each other: nothing of it is stored
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": birth_place(url=f"http://elsewhere.example/{n}", code="born-in"),
             "request": {"method": "POST", "url": "SearchParameter"}} for n in (1, 2)]}
        refused = await client.post("", json=bundle)
        assert refused.status_code == 400 and "born-in" in refused.text
        found = (await client.get("SearchParameter", params={"code": "born-in"})).json()
        assert not [e for e in found.get("entry", []) if e["search"]["mode"] == "match"]
        # a retired one is not in force: it collides with nothing
        retired = birth_place(url="http://elsewhere.example/retired", status="retired")
        assert (await client.post("SearchParameter", json=retired)).status_code == 201
        assert app.state.server.search.get("Patient", "birth-place").url == SP_URL


async def test_derived_parameters_and_expressions_that_cannot_run_are_refused(settings: Settings) -> None:
    async with serving(settings, workers=False) as (_, client):
        derived = birth_place(url="http://fhirlead.org/SearchParameter/Patient-match-key", code="match-key-2",
                              type="token", expression="Patient.name")
        refused = await client.post("SearchParameter", json=derived)
        assert refused.status_code == 400 and "server's own code" in refused.json()["issue"][0]["diagnostics"]
        for expression in ("Patient.name.frobnicate()", "Patient.name.where("):
            bad = await client.post("SearchParameter", json=birth_place(expression))
            assert bad.status_code == 400, expression
            assert bad.json()["issue"][0]["expression"] == ["SearchParameter.expression"]
        unknown_base = await client.post("SearchParameter", json=birth_place(base=["Nonsense"]))
        assert unknown_base.status_code == 400


async def test_an_expression_failing_on_some_data_fails_no_write(settings: Settings) -> None:
    """`first() + 1` on a name runs on an empty Patient, but raises on one with a given name: that
    Patient is still written (without values for it), and so is everything else."""
    async with serving(settings) as (app, client):
        assert (await client.post("Patient", json={**patient("Stored-before"), "name": [
            {"family": "Stored-before", "given": ["Ann"]}]})).status_code == 201
        fragile = birth_place("(Patient.name.given.first() + 1)", code="fragile",
                              url="http://lead.example.org/fhir/SearchParameter/fragile")
        assert (await client.post("SearchParameter", json=fragile)).status_code == 201
        await reindexed(app)  # the job meets the failure too, and finishes
        written = await client.post("Patient", json={**patient("Given"),
                                                     "name": [{"family": "Given", "given": ["Bo"]}]})
        assert written.status_code == 201
        assert (await client.post("Observation", json={
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{written.json()['id']}"}})).status_code == 201
        assert await families(client, name="Given") == {"Given"}
        assert await families(client, fragile="x") == set()


async def test_the_job_resumes_after_a_restart_and_warns_while_pending(settings: Settings,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reindex, "PAGE", 2)
    async with serving(settings, workers=False) as (app, client):
        for n in range(5):
            assert (await client.post("Patient", json=patient(f"P{n}", "Lyon"))).status_code == 201
        assert (await client.post("SearchParameter", json=birth_place())).status_code == 201
        assert await pending_jobs(app) == ["Patient"]
        monkeypatch.setattr(reindex, "SLICE_SECONDS", 0.0)  # one page per run
        assert await reindex.handle(app.state.server, "Patient") == 0.0
        progress = await app.state.server.store.records.get(reindex.PROGRESS, "Patient")
        assert progress is not None and progress.doc["done"] == 2 and progress.doc["total"] == 5
        assert progress.doc["last"]
        answer = (await client.get("Patient", params={"birth-place": "Lyon"})).json()
        outcome = [e for e in answer["entry"] if e["search"]["mode"] == "outcome"]
        assert outcome and outcome[0]["resource"]["issue"][0]["code"] == "incomplete"
        assert len([e for e in answer["entry"] if e["search"]["mode"] == "match"]) == 2
    monkeypatch.setattr(reindex, "SLICE_SECONDS", 30.0)
    async with serving(settings, workers=False) as (app, client):
        assert await pending_jobs(app) == ["Patient"]
        assert await reindex.handle(app.state.server, "Patient") is None
        assert await app.state.server.store.records.get(reindex.PROGRESS, "Patient") is None
        await drain(app)  # marks it done
        assert await pending_jobs(app) == []
        answer = (await client.get("Patient", params={"birth-place": "Lyon"})).json()
        assert [e["search"]["mode"] for e in answer["entry"]] == ["match"] * 5


async def test_a_changed_parameter_starts_the_job_over(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reindex, "PAGE", 2)
    monkeypatch.setattr(reindex, "SLICE_SECONDS", 0.0)
    async with serving(settings, workers=False) as (app, client):
        for n in range(4):
            assert (await client.post("Patient", json=patient(f"P{n}", "Lyon", "Rhone"))).status_code == 201
        sp_id = (await client.post("SearchParameter", json=birth_place())).json()["id"]
        assert await reindex.handle(app.state.server, "Patient") == 0.0  # half way
        changed = await client.put(f"SearchParameter/{sp_id}", json={**birth_place(STATE), "id": sp_id})
        assert changed.status_code == 200
        await drain(app)
        assert await families(client, **{"birth-place": "Rhone"}) == {"P0", "P1", "P2", "P3"}


async def test_groups_are_reindexed_with_their_members(settings: Settings) -> None:
    members = [{"entity": {"reference": f"Patient/p{n}"}, "period": {"start": f"202{n}-01-01"}} for n in range(3)]
    group = {"resourceType": "Group", "id": "cohort", "type": "person", "actual": True, "member": members}
    joined = {"resourceType": "SearchParameter", "url": "http://lead.example.org/fhir/SearchParameter/member-since",
              "name": "MemberSince", "status": "active", "description": "When a member joined",
              "code": "member-since", "base": ["Group"], "type": "date", "expression": "Group.member.period.start"}
    async with serving(settings, workers=False) as (app, client):
        assert (await client.put("Group/cohort", json=group)).status_code == 201
        assert (await client.post("SearchParameter", json=joined)).status_code == 201
        await drain(app)
        for year, expected in (("2021", {"cohort"}), ("2024", set())):
            answer = (await client.get("Group", params={"member-since": year, "_summary": "true"},
                                       headers=STRICT)).json()
            assert {e["resource"]["id"] for e in answer.get("entry", [])} == expected
        # members one by one still: the member index serves `member` searches
        answer = (await client.get("Group", params={"member": "Patient/p2", "_summary": "true"})).json()
        assert {e["resource"]["id"] for e in answer["entry"]} == {"cohort"}


async def test_fhirlead_load_records_the_job_a_server_runs(settings: Settings, tmp_path: Path) -> None:
    """`fhirlead load` runs no workers: what it loads with a SearchParameter is re-indexed by the next
    server; a conflicting SearchParameter in a loaded Bundle fails that Bundle only."""
    loaded = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
        for resource in (patient("Loaded-Lyon", "Lyon"), patient("Loaded-Paris", "Paris"), birth_place())]}
    clash = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": birth_place(url="http://elsewhere.example/birth-place"),
         "request": {"method": "POST", "url": "SearchParameter"}}]}
    files = [tmp_path / "loaded.json", tmp_path / "clash.json"]
    for path, bundle in zip(files, (loaded, clash), strict=True):
        path.write_bytes(orjson.dumps(bundle))
    report = await load_files(settings, files)
    assert len(report.failures) == 1 and "clash.json" in report.failures[0] and "birth-place" in report.failures[0]
    async with serving(settings) as (app, client):
        await reindexed(app)
        assert await families(client, **{"birth-place": "Lyon"}) == {"Loaded-Lyon"}


async def test_a_copy_is_indexed_with_the_source_search_parameters(settings: Settings, tmp_path: Path) -> None:
    async with serving(settings) as (app, client):
        assert (await client.post("SearchParameter", json=birth_place())).status_code == 201
        assert (await client.post("Patient", json=patient("Copied", "Lyon"))).status_code == 201
        await reindexed(app)
    source, target = open_store(settings.store), open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    await source.open()
    await target.open()
    try:
        await copy_store(source, target)
    finally:
        await target.close()
        await source.close()
    copied = dataclasses.replace(settings, store=f"sqlite:///{tmp_path / 'copy.db'}")
    async with serving(copied, workers=False) as (app, client):
        assert await reindex.catch_up(app.state.server) == 0  # its marks came along: nothing to re-index
        assert await families(client, **{"birth-place": "Lyon"}) == {"Copied"}


async def test_search_parameters_stored_before_are_caught_up_and_broken_ones_break_nothing(settings: Settings) -> None:
    """Stored without the write checks (as before this existed, or by a tool writing to the store): a
    server starting on them re-indexes for them, and one whose expression cannot run at all is in force
    without failing any write."""
    broken = birth_place("Patient.name.frobnicate()", code="broken", url="http://lead.example.org/fhir/broken")
    async with serving(settings, workers=False) as (app, client):
        assert (await client.post("Patient", json=patient("Early", "Lyon"))).status_code == 201
        server = app.state.server
        async with server.store.wrapped.unit_of_work() as uow:  # no observers: no checks, no job
            for id_, resource in (("birth-place", birth_place()), ("broken", broken)):
                await uow.write("SearchParameter", id_, {**resource, "id": id_}, server.extractor.extract(resource),
                                "PUT")
    async with serving(settings) as (app, client):
        await reindexed(app)
        assert await families(client, **{"birth-place": "Lyon"}) == {"Early"}
        assert (await client.post("Patient", json=patient("Later", "Lyon"))).status_code == 201
        assert await families(client, **{"birth-place": "Lyon"}) == {"Early", "Later"}
        assert await families(client, broken="x") == set()
