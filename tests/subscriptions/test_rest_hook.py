"""rest-hook Subscriptions end to end: the real app over HTTP on a real store, its delivery worker
running, and a real HTTP receiver on loopback (R4 subscription.html; Subscriptions R5 Backport IG 1.1.0)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from tests.conftest import BASE, FHIR_JSON
from tests.subscriptions.receiver import Receiver, receiver, status_of
from tests.tokens import bearer

A1C = {"system": "http://loinc.org", "code": "4548-4"}
DISCHARGE = "http://fhirlead.org/fhir/SubscriptionTopic/encounter-discharge"
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as one:
        yield one


@pytest.fixture
def fast(settings: Settings) -> Settings:
    return dataclasses.replace(settings, subscription_retry_seconds=0.1, subscription_max_attempts=3)


async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        headers = {"Accept": FHIR_JSON, **await bearer(application)}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=BASE,
                                     headers=headers) as client:
            yield application, client


@pytest.fixture
async def served(fast: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async for both in running(fast):
        yield both


@pytest.fixture
def client(served: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return served[1]


def observation(id_: str, code: dict[str, str] = A1C, value: float = 9.5, patient: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id_, "status": "final", "code": {"coding": [code]},
            "subject": {"reference": f"Patient/{patient}"}, "valueQuantity": {"value": value, "unit": "%"}}


def classic(endpoint: str, criteria: str, payload: str | None = None) -> dict[str, Any]:
    channel: dict[str, Any] = {"type": "rest-hook", "endpoint": endpoint, "header": ["Authorization: Bearer s3cret"]}
    if payload:
        channel["payload"] = payload
    return {"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": criteria,
            "channel": channel}


def topic_based(endpoint: str, content: str = "id-only", filters: tuple[str, ...] = (), **channel: Any
                ) -> dict[str, Any]:
    extensions = [{"url": BACKPORT + "backport-filter-criteria", "valueString": f} for f in filters]
    resource: dict[str, Any] = {
        "resourceType": "Subscription", "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested", "reason": "follow-up after discharge", "criteria": DISCHARGE,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
                    **channel},
    }
    if extensions:
        resource["_criteria"] = {"extension": extensions}
    return resource


def encounter(id_: str, status: str, patient: str = "p1") -> dict[str, Any]:
    return {"resourceType": "Encounter", "id": id_, "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": f"Patient/{patient}"}}


async def subscribe(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    created = await client.post("Subscription", json=resource)
    assert created.status_code == 201, created.text
    return created.json()["id"]


async def eventually_status(client: httpx.AsyncClient, id_: str, status: str) -> dict[str, Any]:
    import asyncio

    for _ in range(300):
        current = (await client.get(f"Subscription/{id_}")).json()
        if current["status"] == status:
            return current
        await asyncio.sleep(0.05)
    raise AssertionError(f"Subscription/{id_} is {current['status']}, not {status}: {current}")


async def test_classic_criteria_notify_matching_creates_and_updates_only(client: httpx.AsyncClient,
                                                                         hook: Receiver) -> None:
    id_ = await subscribe(client, classic(hook.url, "Observation?code=http://loinc.org|4548-4&value-quantity=gt9"))
    await eventually_status(client, id_, "active")
    assert (await client.put("Observation/high", json=observation("high"))).status_code == 201
    assert (await client.put("Observation/low", json=observation("low", value=7.0))).status_code == 201
    other = observation("ldl", code={"system": "http://loinc.org", "code": "2089-1"})
    assert (await client.put("Observation/ldl", json=other)).status_code == 201
    assert (await client.put("Observation/low", json=observation("low", value=10.1))).status_code == 200
    await hook.wait_for(lambda r: len(r.requests) >= 2)
    import asyncio

    await asyncio.sleep(0.5)  # nothing else arrives
    assert [(r.method, r.path, r.body) for r in hook.requests] == [("POST", "/hook", b""), ("POST", "/hook", b"")]
    assert all(r.headers["Authorization"] == "Bearer s3cret" for r in hook.requests)


async def test_classic_payload_puts_the_resource_as_stored(client: httpx.AsyncClient, hook: Receiver) -> None:
    id_ = await subscribe(client, classic(hook.url, "Observation?patient=Patient/p7", "application/fhir+json"))
    await eventually_status(client, id_, "active")
    stored = (await client.put("Observation/mine", json=observation("mine", patient="p7"))).json()
    await client.put("Observation/theirs", json=observation("theirs", patient="p8"))
    await hook.wait_for(lambda r: len(r.requests) >= 1)
    [request] = hook.requests
    assert (request.method, request.path) == ("PUT", "/hook/Observation/mine")
    assert request.headers["Content-Type"] == "application/fhir+json"
    assert request.json() == stored


async def test_topic_handshake_then_event_numbers_in_order(client: httpx.AsyncClient, hook: Receiver) -> None:
    id_ = await subscribe(client, topic_based(hook.url, filters=("Encounter?patient=Patient/p1",)))
    await hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
    await eventually_status(client, id_, "active")
    for number in range(5):
        await client.put(f"Encounter/e{number}", json=encounter(f"e{number}", "in-progress"))
    for number in range(5):
        await client.put(f"Encounter/e{number}", json=encounter(f"e{number}", "finished"))
    await client.put("Encounter/e0", json={**encounter("e0", "finished"), "length": {"value": 3}})  # was finished
    await client.put("Encounter/other", json=encounter("other", "finished", patient="p2"))  # filtered out
    await hook.wait_for(lambda r: len(r.bundles("event-notification")) >= 5)
    import asyncio

    await asyncio.sleep(0.5)
    notifications = hook.bundles("event-notification")
    assert len(notifications) == 5
    events = [status_of(b)["events"][0] for b in notifications]
    assert [e["event-number"] for e in events] == ["1", "2", "3", "4", "5"]
    assert [e["focus"]["reference"].rsplit("/", 1)[1] for e in events] == ["e0", "e1", "e2", "e3", "e4"]
    first = notifications[0]
    assert first["type"] == "history"
    assert status_of(first)["subscription"]["valueReference"]["reference"].endswith(f"Subscription/{id_}")
    assert status_of(first)["topic"]["valueCanonical"] == DISCHARGE
    assert status_of(notifications[-1])["events-since-subscription-start"]["valueString"] == "5"
    assert "resource" not in first["entry"][1]  # id-only
    assert first["entry"][1]["fullUrl"].endswith("/Encounter/e0")
    status = (await client.get(f"Subscription/{id_}/$status")).json()
    [entry] = status["entry"]
    parameters = {p["name"]: p for p in entry["resource"]["parameter"]}
    assert status["type"] == "searchset" and parameters["type"]["valueCode"] == "query-status"
    assert parameters["events-since-subscription-start"]["valueString"] == "5"
    assert parameters["status"]["valueCode"] == "active"


async def test_full_resource_content_embeds_the_stored_version(client: httpx.AsyncClient, hook: Receiver) -> None:
    await subscribe(client, topic_based(hook.url, content="full-resource"))
    await hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
    stored = (await client.put("Encounter/done", json=encounter("done", "finished"))).json()
    await hook.wait_for(lambda r: len(r.bundles("event-notification")) == 1)
    [bundle] = hook.bundles("event-notification")
    assert bundle["entry"][1]["resource"] == stored
    assert bundle["entry"][1]["request"] == {"method": "POST", "url": "Encounter"}


async def test_a_failing_endpoint_is_retried_then_delivered_in_order(client: httpx.AsyncClient,
                                                                     hook: Receiver) -> None:
    id_ = await subscribe(client, topic_based(hook.url))
    await hook.wait_for(lambda r: len(r.bundles("handshake")) == 1)
    await eventually_status(client, id_, "active")
    hook.fail_next(500, 503)
    for number in range(3):
        await client.put(f"Encounter/r{number}", json=encounter(f"r{number}", "finished"))
    await hook.wait_for(lambda r: len(r.bundles("event-notification")) >= 5)
    received = [status_of(b)["events"][0]["event-number"] for b in hook.bundles("event-notification")]
    assert received[-3:] == ["1", "2", "3"]  # the first one failed twice, then all in order
    assert set(received[:2]) == {"1"}
    assert (await client.get(f"Subscription/{id_}")).json()["status"] == "active"


async def test_an_endpoint_that_keeps_failing_puts_the_subscription_in_error(client: httpx.AsyncClient,
                                                                             hook: Receiver) -> None:
    id_ = await subscribe(client, classic(hook.url, "Observation?patient=Patient/p1"))
    await eventually_status(client, id_, "active")
    hook.fail_next(500, 500, 500)
    await client.put("Observation/x", json=observation("x"))
    failed = await eventually_status(client, id_, "error")
    assert "HTTP 500" in failed["error"]
    status = (await client.get(f"Subscription/{id_}/$status")).json()
    parameters = {p["name"]: p for p in status["entry"][0]["resource"]["parameter"]}
    assert parameters["status"]["valueCode"] == "error"
    # the client asks again: delivery resumes with what was recorded before the error
    again = {**failed, "status": "requested"}
    again.pop("error")
    assert (await client.put(f"Subscription/{id_}", json=again)).status_code == 200
    await eventually_status(client, id_, "active")
    await hook.wait_for(lambda r: len(r.requests) == 4)


async def test_a_heartbeat_is_sent_when_nothing_happens(client: httpx.AsyncClient, hook: Receiver) -> None:
    heartbeat = [{"url": BACKPORT + "backport-heartbeat-period", "valueUnsignedInt": 1}]
    await subscribe(client, topic_based(hook.url, content="empty", extension=heartbeat))
    await hook.wait_for(lambda r: len(r.bundles("heartbeat")) >= 1, seconds=10)
    assert status_of(hook.bundles("heartbeat")[0])["events-since-subscription-start"]["valueString"] == "0"


async def test_events_recorded_without_a_worker_are_delivered_after_a_restart(fast: Settings,
                                                                              hook: Receiver) -> None:
    async for _, client in running(dataclasses.replace(fast, workers=False)):
        id_ = await subscribe(client, topic_based(hook.url))
        for number in range(3):
            await client.put(f"Encounter/k{number}", json=encounter(f"k{number}", "finished"))
        assert hook.requests == [] and (await client.get(f"Subscription/{id_}")).json()["status"] == "requested"
    async for _, client in running(fast):
        await hook.wait_for(lambda r: len(r.bundles("event-notification")) == 3)
        assert [status_of(b)["events"][0]["focus"]["reference"].rsplit("/", 1)[1]
                for b in hook.bundles("event-notification")] == ["k0", "k1", "k2"]
        assert len(hook.bundles("handshake")) == 1
        await eventually_status(client, id_, "active")


@pytest.mark.parametrize(("change", "status", "says"), [
    ({"channel": {"type": "rest-hook", "endpoint": "http://example.org/hook"}}, 422, "https"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://10.1.2.3/hook"}}, 422, "non-public"),
    ({"channel": {"type": "rest-hook", "endpoint": "https://169.254.169.254/latest"}}, 422, "non-public"),
    ({"channel": {"type": "websocket"}}, 422, "rest-hook"),
    ({"criteria": "Observation?subject:Patient.name=smith"}, 422, "Chain"),
    ({"criteria": "Observation?no-such-parameter=1"}, 400, "no-such-parameter"),
    ({"criteria": "Nonsense?x=1"}, 422, "search URL"),
    ({"criteria": "http://example.org/SubscriptionTopic/unknown"}, 422, "unknown SubscriptionTopic"),
])
async def test_subscriptions_the_server_cannot_honour_are_refused(client: httpx.AsyncClient, hook: Receiver,
                                                                  change: dict[str, Any], status: int,
                                                                  says: str) -> None:
    refused = await client.post("Subscription", json={**classic(hook.url, "Observation?patient=Patient/1"), **change})
    assert refused.status_code == status, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert says in refused.text
    assert (await client.get("Subscription")).json().get("total", 0) == 0


async def test_a_topic_filter_outside_can_filter_by_is_refused(client: httpx.AsyncClient, hook: Receiver) -> None:
    refused = await client.post("Subscription", json=topic_based(hook.url, filters=("Encounter?length=3",)))
    assert refused.status_code == 422 and "canFilterBy" in refused.text


async def test_the_capability_statement_offers_the_topics_and_status(client: httpx.AsyncClient) -> None:
    statement = (await client.get("metadata")).json()
    [subscription] = [r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription"]
    offered = {e["valueCanonical"] for e in subscription["extension"]
               if e["url"] == BACKPORT + "capabilitystatement-subscriptiontopic-canonical"}
    assert DISCHARGE in offered and "http://fhirlead.org/fhir/SubscriptionTopic/care-task" in offered
    assert "status" in {o["name"] for o in subscription["operation"]}


async def test_a_deleted_subscription_leaves_no_waiting_events(served: tuple[FastAPI, httpx.AsyncClient],
                                                               hook: Receiver) -> None:
    app, client = served
    records = app.state.server.store.records
    id_ = await subscribe(client, classic(hook.url, "Observation?patient=Patient/gone"))
    await eventually_status(client, id_, "active")
    hook.fail_next(*[500] * 20)
    await client.put("Observation/g1", json=observation("g1", patient="gone"))
    await client.put("Observation/g2", json=observation("g2", patient="gone"))
    await hook.wait_for(lambda r: len(r.requests) >= 1)
    assert len(await records.list(f"subscription-events:{id_}")) == 2
    assert (await client.delete(f"Subscription/{id_}")).status_code in (200, 204)
    import asyncio

    for _ in range(100):
        if not await records.list(f"subscription-events:{id_}"):
            break
        await asyncio.sleep(0.1)
    assert await records.list(f"subscription-events:{id_}") == []
    assert await records.get("subscription-state", id_) is None
