"""Who may subscribe, and several server processes on one store (DESIGN §6).

A Subscription's notifications carry every matching resource, whoever may read it, so only a token that
reads and searches the criteria's types without restriction may create one; and a Subscription written
through one server is in force, delivered exactly once in order, in another server on the same store."""

from __future__ import annotations

import asyncio
import dataclasses

import httpx
from fastapi import FastAPI

from fhirlead.auth.tokens import Authorization
from fhirlead.settings import Settings
from tests.conftest import BASE
from tests.subscriptions.receiver import Receiver, status_of
from tests.subscriptions.test_rest_hook import (
    classic,
    encounter,
    eventually_status,
    hook,  # noqa: F401  (fixture)
    observation,
    running,
    subscribe,
    topic_based,
)
from tests.tokens import system_token

A1C_CRITERIA = "Observation?code=http://loinc.org|4548-4"


def client_with(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                             headers={"Authorization": f"Bearer {token}"})


async def test_a_practitioner_reaching_their_patients_only_cannot_subscribe(app: FastAPI,
                                                                            hook: Receiver) -> None:  # noqa: F811
    """user/ scopes reach a practitioner's own patients (docs/security.md); a Subscription would reach all."""
    token = await app.state.server.auth.tokens.access_token(
        Authorization("app", "user/*.cruds", "okafor", fhir_user="Practitioner/pcp"), BASE, BASE)
    async with client_with(app, token) as practitioner_app:
        refused = await practitioner_app.post("Subscription", json=classic(hook.url, A1C_CRITERIA))
    assert refused.status_code == 403 and "without restriction" in refused.text
    admin = await app.state.server.auth.tokens.access_token(
        Authorization("app", "user/*.cruds", "admin", fhir_user="Practitioner/admin", admin=True), BASE, BASE)
    async with client_with(app, admin) as admin_app:
        assert (await admin_app.post("Subscription", json=classic(hook.url, A1C_CRITERIA))).status_code == 201


async def test_a_system_client_needs_read_and_search_on_what_it_subscribes_to(app: FastAPI,
                                                                             hook: Receiver) -> None:  # noqa: F811
    narrow = await system_token(app, scope="system/Subscription.cruds system/Observation.rs", client_id="narrow")
    async with client_with(app, narrow) as client:
        assert (await client.post("Subscription", json=classic(hook.url, A1C_CRITERIA))).status_code == 201
        refused = await client.post("Subscription", json=classic(hook.url, "Encounter?status=finished"))
        assert refused.status_code == 403 and "Encounter" in refused.text
        topic = await client.post("Subscription", json=topic_based(hook.url))  # the discharge topic: Encounters
        assert topic.status_code == 403
    read_only = await system_token(app, scope="system/Subscription.cruds system/Observation.r", client_id="ro")
    async with client_with(app, read_only) as client:
        assert (await client.post("Subscription", json=classic(hook.url, A1C_CRITERIA))).status_code == 403


async def test_two_servers_on_one_store_deliver_each_event_once_in_order(settings: Settings,
                                                                        hook: Receiver) -> None:  # noqa: F811
    fast = dataclasses.replace(settings, subscription_retry_seconds=0.1)
    first, second = running(fast), running(fast)
    (_, one), (_, two) = await anext(first), await anext(second)
    try:
        id_ = await subscribe(one, topic_based(hook.url, filters=("Encounter?patient=Patient/p1",)))
        await eventually_status(two, id_, "active")
        await asyncio.sleep(1.2)  # every process has seen the new Subscription (docs/subscriptions.md)
        for number in range(6):
            server = one if number % 2 else two
            written = await server.put(f"Encounter/two-{number}", json=encounter(f"two-{number}", "finished"))
            assert written.status_code == 201
        await hook.wait_for(lambda r: len(r.bundles("event-notification")) >= 6)
        await asyncio.sleep(2.5)  # a full delivery round of both workers: nothing is sent twice
        events = [status_of(b)["events"][0] for b in hook.bundles("event-notification")]
        assert [e["event-number"] for e in events] == ["1", "2", "3", "4", "5", "6"]
        assert [e["focus"]["reference"].rsplit("/", 1)[1] for e in events] == [f"two-{n}" for n in range(6)]
        assert len(hook.bundles("handshake")) == 1
        assert (await one.put("Observation/other", json=observation("other"))).status_code == 201
    finally:
        for generator in (first, second):
            await generator.aclose()
