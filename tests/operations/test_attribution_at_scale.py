"""A 100,000-member attribution list over HTTP: membership is an index lookup, a member operation does not
depend on the list's size, the whole list reads back and `_summary=true` leaves the members out. Timings
are for bench/attribution.py; here only the behaviour (and a generous bound against accidental O(n))."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests import backends
from tests.conftest import FHIR_JSON

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
SIZE = 100_000


def member(n: int) -> dict[str, Any]:
    return {"extension": [{"url": ATR + "ext-changeType", "valueCode": "nochange"},
                          {"url": ATR + "ext-attributedProvider",
                           "valueReference": {"reference": f"Practitioner/pr-{n % 500}"}}],
            "entity": {"reference": f"Patient/p-{n}"}, "period": {"start": "2026-01-01"}}


@pytest.fixture
async def big_list(app: FastAPI, client: httpx.AsyncClient) -> httpx.AsyncClient:
    server = app.state.server
    if backends.selected() == "mongomock":
        pytest.skip("mongomock scans every document for every query: 100,000 members take minutes there; the "
                    "member layout is checked on it at small size (tests/storage/test_group_members.py)")
    group = {"resourceType": "Group", "id": "big", "type": "person", "actual": True,
             "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "open"}],
             "member": [member(n) for n in range(SIZE)]}
    async with server.store.unit_of_work() as uow:  # the store's own write path (a PUT would take as long)
        await uow.write("Group", "big", group, server.extractor.extract(group), "PUT")
    for resource in ({"resourceType": "Patient", "id": "newcomer"}, {"resourceType": "Patient", "id": "p-77"},
                     {"resourceType": "Practitioner", "id": "pr-1"}):
        assert (await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)).status_code == 201
    return client


async def test_a_100000_member_list(big_list: httpx.AsyncClient) -> None:
    client = big_list
    found = await client.get("Group?member=Patient/p-99999&_summary=true")
    assert found.json()["total"] == 1 and "member" not in found.json()["entry"][0]["resource"]
    summary = await client.get("Group/big?_summary=true")
    assert summary.status_code == 200 and "member" not in summary.json()

    started = time.perf_counter()
    added = await client.post("Group/big/$member-add", headers={"Content-Type": FHIR_JSON}, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "patientReference", "valueReference": {"reference": "Patient/newcomer"}},
            {"name": "providerReference", "valueReference": {"reference": "Practitioner/pr-1"}}]})
    removed = await client.post("Group/big/$member-remove", headers={"Content-Type": FHIR_JSON}, json={
        "resourceType": "Parameters", "parameter": [
            {"name": "patientReference", "valueReference": {"reference": "Patient/p-77"}}]})
    elapsed = time.perf_counter() - started
    assert added.status_code == 200 and removed.status_code == 200, (added.text, removed.text)
    assert elapsed < 2.0, f"two member operations on 100,000 members took {elapsed:.2f} s"

    assert (await client.get("Group?member=Patient/newcomer")).json()["total"] == 1
    assert (await client.get("Group?member=Patient/p-77")).json()["total"] == 0
    status = await client.get("Group/big/$attribution-status?patientReference=Patient/newcomer")
    assert status.status_code == 200 and len(status.json()["entry"][0]["resource"]["member"]) == 1

    whole = (await client.get("Group/big")).json()
    assert whole["meta"]["versionId"] == "3" and len(whole["member"]) == SIZE
    assert whole["member"][-1]["entity"] == {"reference": "Patient/newcomer"}
    assert {"reference": "Patient/p-77"} not in (m["entity"] for m in whole["member"])
    first = (await client.get("Group/big/_history/1")).json()
    assert len(first["member"]) == SIZE and first["member"][77]["entity"] == {"reference": "Patient/p-77"}
