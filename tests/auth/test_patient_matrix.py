"""Authorization matrix: a token for patient A reaches nothing of patient B, through every path; a
granular `category=laboratory` token sees no vital signs. Tokens are minted by the server's own token
service (the flows that issue them are tested in test_app_launch.py)."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.auth.tokens import Authorization
from tests.auth.flow import FHIR, seed
from tests.persons import persons_of
from tests.tokens import bearer

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"patient/Observation.rs?category={CATEGORY}|laboratory"


def observation(id_: str, patient: str, category: str, **extra: object) -> dict:
    return {"resourceType": "Observation", "id": id_, "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "subject": {"reference": f"Patient/{patient}"}, **extra}


@pytest.fixture
async def world(app: FastAPI) -> FastAPI:
    await seed(app, [
        {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Doc"}]},
        {"resourceType": "Patient", "id": "pa", "name": [{"family": "Alpha"}]},
        {"resourceType": "Patient", "id": "pb", "name": [{"family": "Beta"}]},
        observation("ob-lab", "pb", "laboratory"),
        observation("oa-lab", "pa", "laboratory", hasMember=[{"reference": "Observation/ob-lab"}],
                    performer=[{"reference": "Practitioner/dr"}]),
        observation("oa-vital", "pa", "vital-signs"),
        {"resourceType": "Encounter", "id": "eb", "status": "finished", "class": {"code": "AMB"},
         "subject": {"reference": "Patient/pb"}},
    ])
    return app


async def client_for(app: FastAPI, scope: str, patient: str = "pa") -> httpx.AsyncClient:
    token = await app.state.server.auth.tokens.access_token(
        Authorization("app", scope, "someone", patient=patient), FHIR, FHIR)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR,
                             headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})


@pytest.fixture
async def fhir(world: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(world, "patient/*.cruds") as c:
        yield c


def ids(bundle: dict) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if "resource" in e and e["resource"]["resourceType"] != "OperationOutcome"}


def mentions_b(text: str) -> bool:
    """B's own resources appear (A's observation may point at B's: that reference is A's data)."""
    return any(marker in text for marker in ('"id":"ob-lab"', '"id":"pb"', '"id":"eb"', "Beta", "Patient/pb"))


async def test_reads_of_b_are_not_found(fhir: httpx.AsyncClient) -> None:
    for path in ("Patient/pb", "Observation/ob-lab", "Observation/ob-lab/_history/1", "Observation/ob-lab/_history",
                 "Encounter/eb"):
        answer = await fhir.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["resourceType"] == "OperationOutcome" and "Beta" not in answer.text, path
    assert (await fhir.get("Patient/pa")).status_code == 200
    assert (await fhir.get("Observation/oa-lab/_history/1")).status_code == 200


async def test_searches_and_histories_hold_only_a(world: FastAPI, fhir: httpx.AsyncClient) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=FHIR,
                                 headers=await bearer(world)) as system:
        # the Provenance of the write of Patient/pa is in pa's compartment (docs/sources.md)
        [provenance] = ids((await system.get("Provenance", params={"target": "Patient/pa"})).json())
        # and the Person linking Patient/pa is too, once linked (docs/identity.md)
        person = (await persons_of(system, "Patient/pa"))["Patient/pa"]
    searches = {
        "Observation": {"Observation/oa-lab", "Observation/oa-vital"},
        "Observation?subject=Patient/pb": set(),
        "Patient": {"Patient/pa"},
        "Encounter": set(),
        "?_type=Observation,Patient": {"Observation/oa-lab", "Observation/oa-vital", "Patient/pa"},
        "Patient/pa/*": {"Patient/pa", "Observation/oa-lab", "Observation/oa-vital", provenance, person},
        "Observation?_include=Observation:has-member": {"Observation/oa-lab", "Observation/oa-vital"},
        "Patient?_revinclude=Observation:subject": {"Patient/pa", "Observation/oa-lab", "Observation/oa-vital"},
        "Observation?subject:Patient.name=Beta": set(),
        "Patient?_has:Observation:subject:code=4548-4": {"Patient/pa"},
        "Observation?_include=Observation:performer": {"Observation/oa-lab", "Observation/oa-vital"},
    }
    for query, expected in searches.items():
        answer = await fhir.get(query)
        assert answer.status_code == 200, (query, answer.text)
        assert ids(answer.json()) == expected, query
        assert not mentions_b(orjson.dumps(answer.json().get("entry", [])).decode()), query
    for history in ("Observation/_history", "_history", "Patient/_history"):
        answer = await fhir.get(history)
        assert answer.status_code == 200
        assert not mentions_b(answer.text), history
        assert ids(answer.json()) <= {"Patient/pa", "Observation/oa-lab", "Observation/oa-vital", provenance, person}
    assert (await fhir.get("Patient/pb/*")).status_code == 404


async def test_chains_through_types_it_cannot_read_are_refused(fhir: httpx.AsyncClient) -> None:
    assert (await fhir.get("Observation?performer:Practitioner.name=Doc")).status_code == 403
    assert (await fhir.get("Practitioner")).status_code == 403
    assert (await fhir.get("Practitioner/dr")).status_code == 403
    # GuidanceResponse: outside the Patient compartment (Tasks are not: docs/security.md "Tasks count as the
    # patient's")
    assert (await fhir.get("Patient?_has:GuidanceResponse:patient:identifier=x")).status_code == 403


async def test_writes_cannot_reach_b(fhir: httpx.AsyncClient, world: FastAPI) -> None:
    body = orjson.dumps(observation("new", "pb", "laboratory"))
    assert (await fhir.post("Observation", content=body)).status_code == 403
    assert (await fhir.put("Observation/ob-lab", content=body)).status_code == 404
    moved = orjson.dumps(observation("oa-lab", "pb", "laboratory"))
    assert (await fhir.put("Observation/oa-lab", content=moved)).status_code == 403
    patch = [{"op": "replace", "path": "/subject/reference", "value": "Patient/pb"}]
    answer = await fhir.patch("Observation/oa-lab", content=orjson.dumps(patch),
                              headers={"Content-Type": "application/json-patch+json"})
    assert answer.status_code == 403
    assert (await fhir.delete("Observation/ob-lab")).status_code == 404
    assert (await fhir.delete("Observation?subject=Patient/pb")).status_code == 403
    assert (await fhir.post("Observation", content=orjson.dumps(observation("x", "pa", "laboratory")))
            ).status_code == 201
    check = await client_for_system(world)
    assert (await check.get("Observation/oa-lab")).json()["subject"]["reference"] == "Patient/pa"
    assert (await check.get("Observation/ob-lab")).status_code == 200


async def client_for_system(app: FastAPI) -> httpx.AsyncClient:
    from tests.tokens import bearer

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR, headers=await bearer(app))


def entry(method: str, url: str, resource: dict | None = None) -> dict:
    item: dict = {"request": {"method": method, "url": url}}
    if resource is not None:
        item["resource"] = resource
    return item


async def test_batch_and_transaction(fhir: httpx.AsyncClient, world: FastAPI) -> None:
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        entry("GET", "Patient/pb"), entry("GET", "Observation?subject=Patient/pb"), entry("GET", "Patient/pa"),
        entry("POST", "Observation", observation("b1", "pb", "laboratory")),
    ]}
    answer = (await fhir.post("", content=orjson.dumps(batch))).json()
    statuses = [e["response"]["status"].split()[0] for e in answer["entry"]]
    assert statuses[0] == "404" and statuses[2] == "200" and statuses[3] == "403"
    assert not mentions_b(orjson.dumps(answer["entry"][1]).decode())
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("POST", "Observation", observation("t1", "pa", "laboratory")),
        entry("POST", "Observation", observation("t2", "pb", "laboratory")),
    ]}
    refused = await fhir.post("", content=orjson.dumps(transaction))
    assert refused.status_code == 403
    system = await client_for_system(world)
    found = (await system.get("Observation?_count=100")).json()
    assert ids(found) == {"Observation/oa-lab", "Observation/oa-vital", "Observation/ob-lab"}  # t1 not written


async def test_granular_category_scope_sees_no_vital_signs(world: FastAPI) -> None:
    async with await client_for(world, LAB) as lab:
        assert ids((await lab.get("Observation")).json()) == {"Observation/oa-lab"}
        assert (await lab.get("Observation/oa-vital")).status_code == 404
        assert (await lab.get("Observation/oa-lab")).status_code == 200
        assert ids((await lab.get("Observation?category=vital-signs")).json()) == set()
        assert (await lab.get("Patient/pa")).status_code == 403
        history = await lab.get("Observation/_history")
        assert "oa-vital" not in history.text


async def test_audit_events_need_admin_or_system(world: FastAPI) -> None:
    async with await client_for(world, "user/*.rs", patient=None) as user:  # type: ignore[arg-type]
        assert (await user.get("AuditEvent")).status_code == 403
    async with await client_for(world, "system/AuditEvent.rs") as system:
        assert (await system.get("AuditEvent")).status_code == 200
    forged = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=") + ".e30."
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=FHIR,
                                 headers={"Authorization": f"Bearer {forged}"}) as anonymous:
        assert (await anonymous.get("AuditEvent")).status_code == 401


async def test_versions_from_before_a_move_stay_with_their_patient(fhir: httpx.AsyncClient, world: FastAPI) -> None:
    system = await client_for_system(world)
    moved = observation("ob-lab", "pa", "laboratory")  # B's observation, re-attributed to A (version 2)
    assert (await system.put("Observation/ob-lab", content=orjson.dumps(moved),
                             headers={"Content-Type": "application/fhir+json"})).status_code == 200
    assert (await fhir.get("Observation/ob-lab")).status_code == 200
    assert (await fhir.get("Observation/ob-lab/_history/2")).status_code == 200
    assert (await fhir.get("Observation/ob-lab/_history/1")).status_code == 404
    history = (await fhir.get("Observation/ob-lab/_history")).json()
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2"]
