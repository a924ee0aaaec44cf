"""Transactions in a server with a validation worker (`fhirlead serve`: fhirlead/validation/ahead.py): the
worker validates each transaction while the server writes others, and the server answers exactly as it
does alone — the same ids in the references, the same refusals, profiles written meanwhile in force."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from fhirlead.validation import ahead
from tests.bundle.helpers import bundle, entry, post_bundle
from tests.conftest import BASE, FHIR_JSON
from tests.search.test_live_search_parameters import birth_place
from tests.search.test_live_search_parameters import patient as patient_born
from tests.tokens import bearer
from tests.validation.test_live_definitions import VALUE_SET, patient, profile

pytestmark = pytest.mark.skipif(not ahead.available(), reason="the worker needs Linux and a second core")


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, validate_ahead=True)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=BASE,
            headers={"Accept": FHIR_JSON, **await bearer(app)}) as client:
        yield app, client


def visit(number: int) -> dict[str, Any]:
    """A Patient and two Observations naming it by placeholder (one in its narrative too)."""
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
    observations = [entry("POST", "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": f"m{number}"},
        "subject": {"reference": patient_url}, "valueQuantity": {"value": value, "unit": "%"},
        "text": {"status": "generated",
                 "div": f'<div xmlns="http://www.w3.org/1999/xhtml">HbA1c of {patient_url}</div>'},
    }) for value in (7.1, 9.4)]
    return bundle("transaction", entry("POST", "Patient", {
        "resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": f"m{number}"}], "gender": "female",
    }, full_url=patient_url), *observations)


def reference(location: str) -> str:
    """`Type/id` of a response's location (`[base]/Type/id/_history/n`)."""
    return "/".join(location.removeprefix(BASE + "/").split("/")[:2])


def skipped(app: FastAPI) -> int:
    return app.state.server.ahead.skipped


async def test_concurrent_transactions_are_validated_by_the_worker_and_name_their_own_patients(
        served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = served
    answers = await asyncio.gather(*(post_bundle(client, visit(number)) for number in range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8
    assert skipped(app) == 24  # every resource validated by the worker, in the form the server wrote
    for number, answer in enumerate(answers):
        written = [reference(item["response"]["location"]) for item in answer.json()["entry"]]
        patient_ref = written[0]
        for location in written[1:]:
            observation = (await client.get(location)).json()
            assert observation["subject"]["reference"] == patient_ref
            assert patient_ref in observation["text"]["div"] and observation["code"]["text"] == f"m{number}"


async def test_an_invalid_entry_is_refused_as_without_the_worker(
        served: tuple[FastAPI, httpx.AsyncClient], client: httpx.AsyncClient) -> None:
    _, with_worker = served
    body = visit(1)
    del body["entry"][1]["resource"]["status"]
    refused, alone = await post_bundle(with_worker, body), await post_bundle(client, body)
    assert refused.status_code == alone.status_code == 400
    assert refused.json()["issue"] == alone.json()["issue"]
    assert (await with_worker.get("Patient", params={"identifier": "urn:mrn|m1"})).json().get("total", 0) == 0


async def test_a_profile_written_meanwhile_holds_the_next_transaction(
        served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = served
    assert (await client.post("StructureDefinition", json=profile())).status_code == 201
    assert (await client.post("ValueSet", json=VALUE_SET)).status_code == 201
    refused = await post_bundle(client, bundle("transaction", entry("POST", "Patient", patient(gender="female"))))
    assert refused.status_code == 400 and "birthDate" in refused.text
    before = skipped(app)
    accepted = await post_bundle(client, bundle("transaction", entry(
        "POST", "Patient", patient(gender="female", birthDate="1961-03-02"))))
    assert accepted.status_code == 200
    assert skipped(app) == before + 1  # the worker had the new definitions: its verdict was used


async def test_without_its_worker_the_server_validates_itself(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = served
    app.state.server.ahead.process.kill()
    app.state.server.ahead.process.join()
    answers = [await post_bundle(client, visit(number)) for number in range(2)]
    assert [answer.status_code for answer in answers] == [200, 200]
    body = visit(3)
    del body["entry"][2]["resource"]["code"]
    assert (await post_bundle(client, body)).status_code == 400


async def test_conditional_transactions_are_validated_by_the_server(served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = served
    assert (await post_bundle(client, visit(1))).status_code == 200
    before = skipped(app)
    by_reference = bundle("transaction", entry("POST", "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "m1"},
        "subject": {"reference": "Patient?identifier=urn:mrn|m1"}}))
    once = bundle("transaction", entry("POST", "Patient", {
        "resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "m1"}]},
        ifNoneExist="identifier=urn:mrn|m1"))
    answers = [await post_bundle(client, body) for body in (by_reference, once)]
    assert [answer.status_code for answer in answers] == [200, 200]
    assert answers[1].json()["entry"][0]["response"]["status"].startswith("200")  # matched: nothing written
    assert skipped(app) == before  # neither could be made without the store: the server validated them
    found = (await client.get("Observation", params={"subject:Patient.identifier": "urn:mrn|m1"})).json()
    assert found["total"] == 3


async def test_a_search_parameter_written_meanwhile_indexes_the_next_transaction(
        served: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """The worker extracts the index entries of what it validated: with the server's search parameters,
    those written later included."""
    app, client = served
    assert (await client.post("SearchParameter", json=birth_place())).status_code == 201
    before = skipped(app)
    born = bundle("transaction", entry("POST", "Patient", patient_born("Okafor", "Lagos")),
                  entry("POST", "Patient", patient_born("Moreau", "Lyon")))
    assert (await post_bundle(client, born)).status_code == 200
    assert skipped(app) == before + 2  # the worker had the new parameter: its entries were used
    found = (await client.get("Patient", params={"birth-place": "Lagos"})).json()
    patients = [item["resource"] for item in found["entry"] if item["resource"]["resourceType"] == "Patient"]
    assert [patient["name"][0]["family"] for patient in patients] == ["Okafor"]
