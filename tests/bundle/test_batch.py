"""Batch Bundles: entries succeed or fail on their own; malformed Bundles are refused."""

from __future__ import annotations

import httpx
import pytest

from tests.bundle.helpers import bundle, count, entry, post_bundle, statuses
from tests.rest.helpers import patient, put


async def test_batch_entries_are_independent(client: httpx.AsyncClient) -> None:
    await put(client, patient("Twice", id="v"))
    await put(client, patient("Twice", id="v"))
    response = await post_bundle(client, bundle(
        "batch",
        entry("POST", "Patient", patient("Good")),
        entry("POST", "Observation", {"resourceType": "Observation", "status": "bogus", "code": {"text": "x"}}),
        entry("PUT", "Patient/v", patient("Stale", id="v"), ifMatch='W/"1"'),
        entry("GET", "Patient/missing"),
        entry("GET", "Patient?family=Good"),
        entry("DELETE", "Patient/v"),
    ))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "batch-response"
    codes = [status.split()[0] for status in statuses(response)]
    assert codes[0] == "201" and codes[1] in ("400", "422") and codes[2:4] == ["412", "404"]
    assert codes[4:] == ["200", "200"]
    for failed in body["entry"][1:4]:
        assert failed["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert await count(client, "Patient?family=Good") == 1
    assert await count(client, "Observation") == 0
    assert (await client.get("Patient/v")).status_code == 410


async def test_malformed_bundles_are_refused_with_an_operation_outcome(client: httpx.AsyncClient) -> None:
    cases = [
        {"resourceType": "Patient"},
        {"resourceType": "Bundle", "type": "collection"},
        bundle("transaction", {"resource": patient()}),
        bundle("transaction", entry("FETCH", "Patient")),
        bundle("transaction", entry("POST", "Patient")),
        bundle("transaction", entry("POST", "NotAType", {"resourceType": "NotAType"})),
        bundle("transaction", entry("POST", "Observation", patient())),
        bundle("batch", entry("PUT", "Patient", patient())),
    ]
    for case in cases:
        response = await post_bundle(client, case)
        if case.get("type") == "batch":
            assert response.status_code == 200 and statuses(response)[0].startswith("400"), response.text
            continue
        assert response.status_code in (400, 404), (case, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
    assert await count(client, "Patient") == 0


async def test_batch_does_not_resolve_references_between_entries(client: httpx.AsyncClient) -> None:
    urn = "urn:uuid:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
    response = await post_bundle(client, bundle(
        "batch",
        entry("POST", "Patient", patient("Batch"), full_url=urn),
        entry("POST", "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "subject": {"reference": urn}}),
    ))
    observation = response.json()["entry"][1]["response"]["location"].split("/_history")[0]
    stored = (await client.get(observation)).json()
    assert stored["subject"]["reference"] == urn


async def test_an_unexpected_failure_in_one_entry_is_that_entrys_500(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import fhirlead.interaction.create as create

    original = create.prepare
    details = "Fragile, born 1950"  # (traceback lines show code: keep the data off the raise line)

    def prepare(server, resource, type_):  # type: ignore[no-untyped-def]
        if resource.get("gender") == "unknown":
            raise KeyError(details)  # an internal bug hit by this one entry only
        return original(server, resource, type_)

    monkeypatch.setattr(create, "prepare", prepare)
    answer = await post_bundle(client, bundle(
        "batch",
        entry("POST", "Patient", patient("first")),
        entry("POST", "Patient", {**patient("broken"), "gender": "unknown"}),
        entry("POST", "Patient", patient("third")),
    ))
    assert answer.status_code == 200
    assert [status.split()[0] for status in statuses(answer)] == ["201", "500", "201"]
    assert await count(client, "Patient") == 2
    assert "KeyError" in caplog.text and "Fragile" not in caplog.text
