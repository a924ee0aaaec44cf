"""`Patient/$match` over HTTP: the same person written by three EHRs is found and graded, best first;
someone else is not; `onlyCertainMatches` and `count`; refusals; the caller's scopes."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.auth.flow import seed
from tests.tokens import bearer

MBI = "http://hl7.org/fhir/sid/us-mbi"
PRIMARY = {"resourceType": "Patient", "id": "pc-8812", "name": [{"family": "Garcia", "given": ["Maria"]}],
           "birthDate": "1958-03-14", "gender": "female",
           "address": [{"line": ["12 Oak Street"], "postalCode": "02139"}],
           "telecom": [{"system": "phone", "value": "617-555-0142"}]}
HOSPITAL = {"resourceType": "Patient", "id": "a-77", "name": [{"family": "GARICA", "given": ["MARIA", "E"]}],
            "birthDate": "1958-03-14", "gender": "female", "identifier": [{"system": MBI, "value": "1EG4TE5MK73"}]}
LAB = {"resourceType": "Patient", "id": "lab-00451", "name": [{"family": "Lopez", "given": ["Maria"]}],
       "birthDate": "1958-03-14", "gender": "female",
       "identifier": [{"system": "http://lab.example.org/mrn", "value": "00451"}]}
NAMESAKE = {"resourceType": "Patient", "id": "other-maria", "name": [{"family": "Garcia", "given": ["Maria"]}],
            "birthDate": "1990-07-22", "gender": "female"}
STRANGER = {"resourceType": "Patient", "id": "stranger", "name": [{"family": "Smith", "given": ["John"]}],
            "birthDate": "1958-03-14", "gender": "male"}


def ask(patient: dict[str, Any], **extra: Any) -> dict[str, Any]:
    parameters = [{"name": "resource", "resource": patient}]
    for name, value in extra.items():
        parameters.append({"name": name, ("valueBoolean" if isinstance(value, bool) else "valueInteger"): value})
    return {"resourceType": "Parameters", "parameter": parameters}


def graded(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.status_code == 200, answer.text
    bundle = answer.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    out = []
    for entry in bundle.get("entry", []):
        if entry["search"]["mode"] == "match":
            assert 0 <= entry["search"]["score"] <= 1
            assert entry["fullUrl"].endswith(f"Patient/{entry['resource']['id']}")
            out.append((entry["resource"]["id"], entry["search"]["extension"][0]["valueCode"]))
    return out


@pytest.fixture
async def world(app: FastAPI) -> FastAPI:
    await seed(app, [PRIMARY, HOSPITAL, LAB, NAMESAKE, STRANGER])
    return app


async def test_one_person_across_three_ehrs(world: FastAPI, client: httpx.AsyncClient) -> None:
    new = {"resourceType": "Patient", "name": [{"family": "García", "given": ["María"]}], "birthDate": "1958-03-14",
           "gender": "female", "telecom": [{"system": "phone", "value": "(617) 555-0142"}]}
    found = graded(await client.post("Patient/$match", json=ask(new)))
    assert found[0] == ("pc-8812", "certain")
    assert ("a-77", "certain") in found  # a typo in the family name, upper case, same birth date
    assert ("lab-00451", "probable") in found  # a married name: a steward decides
    assert ("other-maria", "possible") in found  # the same name, another birth date
    assert "stranger" not in dict(found)
    by_mbi = {"resourceType": "Patient", "identifier": [{"system": MBI, "value": "1EG4TE5MK73"}]}
    assert graded(await client.post("Patient/$match", json=ask(by_mbi)))[0] == ("a-77", "certain")


async def test_only_certain_matches_and_count(world: FastAPI, client: httpx.AsyncClient) -> None:
    by_mbi = {"resourceType": "Patient", "name": [{"family": "Garcia", "given": ["Maria"]}],
              "identifier": [{"system": MBI, "value": "1EG4TE5MK73"}]}
    assert graded(await client.post("Patient/$match", json=ask(by_mbi, onlyCertainMatches=True))) == \
        [("a-77", "certain")]
    both = {key: value for key, value in PRIMARY.items() if key != "id"}  # pc-8812 and a-77 are both certain
    answer = await client.post("Patient/$match", json=ask(both, onlyCertainMatches=True))
    assert graded(answer) == []  # two certain matches: neither is returned
    [advice] = answer.json()["entry"]
    assert advice["search"]["mode"] == "outcome" and advice["resource"]["issue"][0]["code"] == "multiple-matches"
    assert len(graded(await client.post("Patient/$match", json=ask(both, count=1)))) == 1


@pytest.mark.parametrize(("body", "expression"), [
    (ask({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}), "resource"),
    ({"resourceType": "Parameters", "parameter": [{"name": "onlyCertainMatches", "valueBoolean": True}]}, "resource"),
    (ask(PRIMARY, count=0), "count"),
    (ask({"resourceType": "Patient", "birthDate": "not a date"}), "birthDate"),
])
async def test_refusals(world: FastAPI, client: httpx.AsyncClient, body: dict[str, Any], expression: str) -> None:
    answer = await client.post("Patient/$match", json=body)
    assert answer.status_code in (400, 422), answer.text
    assert expression in str(answer.json()["issue"])
    assert (await client.get("Patient/$match", params={"count": "1"})).status_code == 400


async def test_the_caller_needs_to_read_patients(world: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await bearer(world, scope="system/Observation.rs")
    answer = await client.post("Patient/$match", json=ask(PRIMARY), headers=headers)
    assert answer.status_code == 403
