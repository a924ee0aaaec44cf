"""Chaining (several levels, with and without a type), reverse chaining (_has, nested) and _list."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.search.conftest import expect_matches, search, seed


def obs(id_: str, subject: str, code: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": subject},
        **extra,
    }


FIXTURES = [
    {"resourceType": "Organization", "id": "o1", "name": "Acme Health"},
    {
        "resourceType": "Organization",
        "id": "o2",
        "name": "Beta Clinic",
        "partOf": {"reference": "Organization/o1"},
    },
    {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "male",
        "name": [{"family": "Alpha"}],
        "managingOrganization": {"reference": "Organization/o1"},
    },
    {
        "resourceType": "Patient",
        "id": "p2",
        "gender": "female",
        "name": [{"family": "Beta"}],
        "managingOrganization": {"reference": "Organization/o2"},
    },
    {"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "House"}]},
    {
        "resourceType": "Group",
        "id": "g1",
        "type": "person",
        "actual": True,
        "name": "Alpha group",
        "code": {"coding": [{"system": "urn:groups", "code": "cohort"}]},
    },
    obs("ob1", "Patient/p1", "8867-4", performer=[{"reference": "Practitioner/pr1"}]),
    obs("ob2", "Patient/p2", "8867-4"),
    obs("ob3", "Group/g1", "29463-7"),
    obs("ob4", "Patient/p2", "29463-7"),
    {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p1"},
    },
    {
        "resourceType": "List",
        "id": "l1",
        "status": "current",
        "mode": "working",
        "entry": [{"item": {"reference": "Patient/p2"}}, {"item": {"reference": "Observation/ob1"}}],
    },
]


@pytest.fixture
async def graph(client: httpx.AsyncClient) -> httpx.AsyncClient:
    await seed(client, *FIXTURES)
    return client


CASES = [
    ("Observation?subject:Patient.name=alpha", {"ob1"}),
    ("Observation?subject:Group.code=cohort", {"ob3"}),
    ("Observation?subject.gender=female", {"ob2", "ob4"}),  # only Patient has gender: unambiguous
    ("Observation?subject:Patient.organization.name=acme", {"ob1"}),
    ("Observation?subject:Patient.organization:Organization.name=beta", {"ob2", "ob4"}),
    ("Observation?subject:Patient.organization.partof.name=acme", {"ob2", "ob4"}),  # three levels
    ("Observation?subject:Patient.name=alpha,beta&code=29463-7", {"ob4"}),
    ("Observation?subject:Patient._id=p2", {"ob2", "ob4"}),
    ("Observation?performer:Practitioner.family=house", {"ob1"}),
    ("Encounter?subject:Patient.name=alpha", {"e1"}),
    ("Patient?_has:Observation:patient:code=8867-4", {"p1", "p2"}),
    ("Patient?_has:Observation:patient:code=29463-7", {"p2"}),
    ("Patient?_has:Observation:performer:_id=ob1", set()),  # performer does not point at Patients here
    ("Practitioner?_has:Observation:performer:subject:Patient.name=alpha", {"pr1"}),
    ("Patient?_has:Observation:patient:code=8867-4&gender=male", {"p1"}),
    ("Patient?_has:Encounter:subject:status=finished", {"p1"}),
    ("Organization?_has:Patient:organization:_has:Observation:patient:code=29463-7", {"o2"}),
    ("Organization?_has:Patient:organization:gender=male,female", {"o1", "o2"}),
    ("Patient?_list=l1", {"p2"}),
    ("Observation?_list=l1", {"ob1"}),
    ("Patient?_list=nope", set()),
]


async def test_chains_and_reverse_chains(graph: httpx.AsyncClient) -> None:
    await expect_matches(graph, "", CASES)


async def test_ambiguous_chain_is_400(graph: httpx.AsyncClient) -> None:
    outcome = await search(graph, "Observation?subject.name=alpha", status=400)
    assert "ambiguous" in outcome["issue"][0]["diagnostics"]


BAD = [
    "Observation?code.name=x",
    "Observation?subject:Nope.name=x",
    "Patient?_has:Observation:nope:code=1",
    "Patient?_has:Nope:patient:code=1",
    "Patient?_has:Observation:patient=1",
    "Patient?_has:Observation:code:code=1",
    "Observation?subject:Patient.organization.partof.partof.partof.name=x",
]


async def test_bad_chains_are_400(graph: httpx.AsyncClient) -> None:
    for url in BAD:
        await search(graph, url, status=400)


async def test_unknown_chained_parameter_is_reported(graph: httpx.AsyncClient) -> None:
    bundle = await search(graph, "Observation?subject:Patient.nope=x")
    outcome = bundle["entry"][0]
    assert outcome["search"]["mode"] == "outcome"
    assert outcome["resource"]["issue"][0]["severity"] == "warning"
    await search(graph, "Observation?subject:Patient.nope=x", status=400, prefer="handling=strict")
