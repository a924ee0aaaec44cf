"""The Lead's story end to end: a care-management app subscribes to the care-task topic for its navigator;
a hospital's EHR sends a discharge; the care rule raises the follow-up Task and the app is notified of it
(docs/care-coordination.md, docs/subscriptions.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.settings import Settings
from tests.care.world import RESOURCES, encounter, seed
from tests.subscriptions.receiver import Receiver, status_of
from tests.subscriptions.test_rest_hook import (
    BACKPORT,
    eventually_status,
    fast,  # noqa: F401  (fixture)
    hook,  # noqa: F401  (fixture)
    running,
    subscribe,
)

CARE_TASK = "http://fhirlead.org/fhir/SubscriptionTopic/care-task"


@pytest.fixture
async def served(fast: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:  # noqa: F811
    async for both in running(fast):
        yield both


async def test_a_discharge_reaches_the_navigator_s_app_as_a_task(served: tuple[FastAPI, httpx.AsyncClient],
                                                                 hook: Receiver) -> None:  # noqa: F811
    _, client = served
    await seed(client, RESOURCES)
    id_ = await subscribe(client, {
        "resourceType": "Subscription", "meta": {"profile": [BACKPORT + "backport-subscription"]},
        "status": "requested", "reason": "my follow-up work", "criteria": CARE_TASK,
        "_criteria": {"extension": [{"url": BACKPORT + "backport-filter-criteria",
                                     "valueString": "Task?owner=Practitioner/nav"}]},
        "channel": {"type": "rest-hook", "endpoint": hook.url, "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content",
                                                "valueCode": "full-resource"}]}}})
    await eventually_status(client, id_, "active")
    assert (await client.put("Encounter/stay", json=encounter("stay"))).status_code == 201
    assert (await client.put("Encounter/other", json=encounter("other", patient="Patient/stranger"))
            ).status_code == 201  # not attributed: no Task, nothing to notify
    await hook.wait_for(lambda r: len(r.bundles("event-notification")) >= 1, seconds=20)
    [notification] = hook.bundles("event-notification")
    task = notification["entry"][1]["resource"]
    assert task["resourceType"] == "Task" and task["owner"] == {"reference": "Practitioner/nav"}
    assert task["focus"] == {"reference": "Encounter/stay"}
    assert status_of(notification)["events"][0]["event-number"] == "1"
