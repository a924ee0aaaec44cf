"""Transient transaction failures on MongoDB: a write that lost a race (nothing written) is run again by the
server, twice at most; what still fails reaches the client as 503/409 with an OperationOutcome, never as a
500, and leaves nothing half-written; a commit whose outcome is unknown is committed again, never re-run.

The failures are injected into the mongomock stand-in's session and collections with the error labels
MongoDB's driver puts on them (`TransientTransactionError`, `UnknownTransactionCommitResult`)."""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from fhirlead.storage.factory import register_scheme
from fhirlead.storage.mongo import MongoStore
from tests.backends.mongomock_async import MockClient, MockCollection, MockSession
from tests.tokens import bearer

BASE = "http://testserver/fhir"
SCHEME = "mongoconflicts"
CLIENTS: dict[str, MockClient] = {}


def labelled(label: str, code: int = 112) -> PyMongoError:
    return OperationFailure("WriteConflict", code=code, details={"errorLabels": [label], "code": code})


# set while the test's own request runs (the ASGI transport runs the app in the caller's context), so
# faults hit its units of work and not those of the server's background workers
IN_REQUEST: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)


class Faults:
    """Errors to raise, in order, from the next commits and from the next inserts into one collection."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.commits: list[BaseException] = []
        self.inserts: dict[str, list[BaseException]] = {}
        self.commit_calls = 0
        commit, insert_one = MockSession.commit_transaction, MockCollection.insert_one

        async def failing_commit(session: MockSession) -> None:
            if not IN_REQUEST.get():  # the server's background workers commit too, meanwhile
                await commit(session)
                return
            self.commit_calls += 1
            if self.commits:
                raise self.commits.pop(0)  # the transaction stays open: end_session rolls it back
            await commit(session)

        async def failing_insert(collection: MockCollection, doc: dict[str, Any], **kw: Any) -> Any:
            planned = self.inserts.get(collection._c.name)
            if planned and kw.get("session") is not None and IN_REQUEST.get():
                raise planned.pop(0)
            return await insert_one(collection, doc, **kw)

        monkeypatch.setattr(MockSession, "commit_transaction", failing_commit)
        monkeypatch.setattr(MockCollection, "insert_one", failing_insert)


@pytest.fixture
async def mongo() -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    """The app over a mongomock store of its own; yields an HTTP client and the raw database."""
    url = f"{SCHEME}://{uuid.uuid4().hex}/fhirlead"
    CLIENTS[url] = MockClient()
    register_scheme(SCHEME, lambda u: MongoStore(client=CLIENTS[u], database="fhirlead"))
    app = create_app(Settings(store=url, audit=False))

    async def in_request(scope: Any, receive: Any, send: Any) -> None:
        IN_REQUEST.set(True)  # this request's context only
        await app(scope, receive, send)

    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=in_request)
            headers = {"Accept": "application/fhir+json", **await bearer(app)}
            async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as client:
                yield client, CLIENTS[url].sync["fhirlead"]
    finally:
        register_scheme(SCHEME, None)
        CLIENTS.pop(url, None)


def patient(id_: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family}]}


async def put(client: httpx.AsyncClient, id_: str, family: str) -> httpx.Response:
    return await client.put(f"/Patient/{id_}", json=patient(id_, family),
                            headers={"Content-Type": "application/fhir+json"})


def untouched(db: Any, id_: str, version: int | None) -> None:
    """The store holds version `version` of Patient/id_ (None: nothing) and only its index documents."""
    state = db["resources"].find_one({"_id": f"Patient/{id_}"})
    assert (state and state["version"]) == version
    assert db["history"].count_documents({"type": "Patient", "id": id_}) == (version or 0)
    if state is None:
        assert db["search_index"].count_documents({"type": "Patient"}) == 0


async def test_an_unknown_commit_result_is_committed_again(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    faults = Faults(monkeypatch)
    faults.commits = [labelled("UnknownTransactionCommitResult", 50), labelled("UnknownTransactionCommitResult", 50)]
    response = await put(client, "a", "Smith")
    assert response.status_code == 201, response.text
    assert faults.commit_calls == 3
    untouched(db, "a", 1)
    found = (await client.get("/Patient", params={"family": "smith"})).json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["a"]


async def test_a_commit_that_stays_unknown_is_a_503(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    faults = Faults(monkeypatch)
    faults.commits = [labelled("UnknownTransactionCommitResult", 50) for _ in range(4)]
    response = await put(client, "a", "Smith")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["code"] == "transient"
    assert "may or may not" in outcome["issue"][0]["diagnostics"]
    assert faults.commit_calls == 4  # committed again, but the interaction itself is not run again
    untouched(db, "a", None)  # here the stand-in rolled it back; on MongoDB it may have committed


async def test_a_transient_commit_failure_is_a_503_and_writes_nothing(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    assert (await put(client, "a", "Smith")).status_code == 201
    faults = Faults(monkeypatch)
    faults.commits = [labelled("TransientTransactionError") for _ in range(3)]  # every attempt
    response = await put(client, "a", "Jones")
    assert response.status_code == 503, response.text
    assert faults.commit_calls == 3
    assert response.headers["Retry-After"] == "1"
    assert response.json()["issue"][0]["code"] == "transient"
    untouched(db, "a", 1)
    assert (await client.get("/Patient/a")).json()["name"] == [{"family": "Smith"}]
    assert (await client.get("/Patient", params={"family": "jones"})).json().get("entry") is None
    assert (await put(client, "a", "Jones")).status_code == 200  # the repeated request succeeds


async def test_a_write_conflict_inside_the_transaction_is_a_503_and_rolls_back(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    faults = Faults(monkeypatch)
    faults.inserts["history"] = [labelled("TransientTransactionError") for _ in range(3)]  # after its own write
    response = await put(client, "b", "Brown")
    assert response.status_code == 503, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    untouched(db, "b", None)
    assert (await client.get("/Patient/b")).status_code == 404


async def test_a_transaction_bundle_conflict_is_a_503_with_nothing_written(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    faults = Faults(monkeypatch)
    faults.commits = [labelled("TransientTransactionError") for _ in range(3)]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(id_, "Lee"), "request": {"method": "PUT", "url": f"Patient/{id_}"}} for id_ in "cd"]}
    response = await client.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 503, response.text
    untouched(db, "c", None)
    untouched(db, "d", None)


async def test_a_concurrent_create_of_the_same_resource_is_a_409(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    faults = Faults(monkeypatch)
    faults.inserts["resources"] = [DuplicateKeyError("E11000 duplicate key error", 11000) for _ in range(3)]
    response = await put(client, "e", "Kim")
    assert response.status_code == 409, response.text
    assert response.json()["issue"][0]["code"] == "conflict"
    untouched(db, "e", None)


async def test_a_write_that_lost_a_race_is_run_again(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, db = mongo
    assert (await put(client, "a", "Smith")).status_code == 201
    faults = Faults(monkeypatch)
    faults.commits = [labelled("TransientTransactionError")]
    response = await put(client, "a", "Jones")
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == "2" and faults.commit_calls == 2
    untouched(db, "a", 2)
    found = (await client.get("/Patient", params={"family": "jones"})).json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == ["a"]


async def test_a_transaction_run_again_resolves_its_placeholders_afresh(
    mongo: tuple[httpx.AsyncClient, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt rewrote the Bundle's urn:uuid references to the ids it chose; the second one
    starts from the request's bytes, so what is stored points at what was stored."""
    client, db = mongo
    faults = Faults(monkeypatch)
    faults.inserts["history"] = [labelled("TransientTransactionError")]
    subject = "urn:uuid:0b0e2f3c-5d84-4d8e-9d4f-4d7b0e0f6a11"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": subject, "resource": {"resourceType": "Patient", "name": [{"family": "Park"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                      "subject": {"reference": subject}},
         "request": {"method": "POST", "url": "Observation"}}]}
    response = await client.post("", json=bundle, headers={"Content-Type": "application/fhir+json"})
    assert response.status_code == 200, response.text
    locations = [entry["response"]["location"] for entry in response.json()["entry"]]
    patient_id = locations[0].split("/Patient/")[1].split("/")[0]
    assert db["resources"].count_documents({"type": "Patient"}) == 1
    assert db["resources"].count_documents({"type": "Observation"}) == 1
    observation = (await client.get("/Observation", params={"subject": f"Patient/{patient_id}"})).json()
    assert len(observation["entry"]) == 1
    assert observation["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient_id}"

