"""Sources of batch and transaction writes (docs/sources.md): every written entry gets meta.source, a
transaction one Provenance per activity covering all it wrote (none for what the Bundle's own Provenance
targets), each batch entry its own; a transaction that fails leaves none."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from fhirlead.sources import client_uri
from tests.bundle.helpers import bundle, count, entry, json_patch, location_reference, post_bundle, statuses
from tests.rest.test_sources import observation, provenances
from tests.tokens import SYSTEM_CLIENT


def patient(id_: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "Okoye"}], **extra}
    if id_ is not None:
        body["id"] = id_
    return body


def versioned(answer: httpx.Response) -> list[str]:
    """`Type/id/_history/n` of each written entry of a response Bundle (from its location)."""
    return ["/".join(item["response"]["location"].split("/")[-4:]) for item in answer.json()["entry"]
            if "location" in item["response"]]


async def test_a_transaction_gets_one_provenance_per_activity(client: httpx.AsyncClient) -> None:
    assert (await client.put("Patient/known", json=patient("known"))).status_code == 201
    assert (await client.put("Patient/other", json=patient("other"))).status_code == 201
    before = len(await provenances(client))
    answer = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient(), full_url="urn:uuid:0a4f6e1e-0000-4000-8000-000000000001"),
        entry("POST", "Observation", observation(subject={"reference": "urn:uuid:0a4f6e1e-0000-4000-8000-000000000001"},
                                                 meta={"source": "https://lab.example/feed#42"})),
        entry("PUT", "Patient/known", patient("known", gender="female")),
        entry("PATCH", "Patient/other", json_patch([{"op": "add", "path": "/active", "value": True}])),
        entry("DELETE", "Observation/nothing-here"),
    ))
    assert answer.status_code == 200, answer.text
    assert statuses(answer)[:2] == ["201 Created", "201 Created"]
    written = versioned(answer)
    found = (await provenances(client))[before:]
    assert len(found) == 2
    by_activity = {item["activity"]["coding"][0]["code"]: item for item in found}
    assert [target["reference"] for target in by_activity["CREATE"]["target"]] == written[:2]
    assert sorted(target["reference"] for target in by_activity["UPDATE"]["target"]) == sorted(written[2:])
    assert {item["what"]["identifier"]["value"] for item in by_activity["CREATE"]["entity"]} == {
        client_uri(SYSTEM_CLIENT), "https://lab.example/feed#42"}
    assert by_activity["CREATE"]["recorded"] == by_activity["UPDATE"]["recorded"]
    sources = {}
    for reference in written:
        read = (await client.get(reference)).json()
        sources[reference] = read["meta"]["source"]
    assert list(sources.values()) == [client_uri(SYSTEM_CLIENT), "https://lab.example/feed#42",
                                      client_uri(SYSTEM_CLIENT), client_uri(SYSTEM_CLIENT)]


async def test_a_bundle_that_carries_its_own_provenance_gets_none_for_what_it_covers(
        client: httpx.AsyncClient) -> None:
    first, second = "urn:uuid:0a4f6e1e-0000-4000-8000-00000000000a", "urn:uuid:0a4f6e1e-0000-4000-8000-00000000000b"
    own = {"resourceType": "Provenance", "recorded": "2026-02-03T04:05:06Z",
           "target": [{"reference": first}], "agent": [{"who": {"display": "Northside EHR"}}]}
    answer = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient(), full_url=first),
        entry("POST", "Provenance", own),
    ))
    assert answer.status_code == 200, answer.text
    patient_ref = location_reference(answer.json()["entry"][0])
    [stored] = await provenances(client)
    assert stored["agent"] == own["agent"]
    assert stored["target"] == [{"reference": patient_ref}]
    # covering one entry of two: the server's Provenance names the other only
    answer = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient(), full_url=first),
        entry("POST", "Observation", observation(), full_url=second),
        entry("POST", "Provenance", own),
    ))
    assert answer.status_code == 200, answer.text
    observation_version = versioned(answer)[1]
    found = (await provenances(client))[1:]
    assert len(found) == 2
    server_made = [item for item in found if item["agent"] != own["agent"]]
    assert [item["target"] for item in server_made] == [[{"reference": observation_version}]]


async def test_a_failed_transaction_leaves_no_provenance(client: httpx.AsyncClient) -> None:
    answer = await post_bundle(client, bundle(
        "transaction",
        entry("POST", "Patient", patient()),
        entry("POST", "Observation", observation()),
        entry("PUT", "Patient/x", {"resourceType": "Patient", "id": "x", "gender": "nonsense"}),
    ))
    assert answer.status_code == 400
    assert await provenances(client) == []
    assert await count(client, "Patient") == 0


async def test_each_batch_entry_gets_its_own_provenance(client: httpx.AsyncClient) -> None:
    answer = await post_bundle(client, bundle(
        "batch",
        entry("POST", "Patient", patient()),
        entry("PUT", "Patient/bad", {"resourceType": "Patient", "id": "bad", "gender": "nonsense"}),
        entry("PUT", "Patient/b2", patient("b2")),
        entry("POST", "Provenance", {"resourceType": "Provenance", "recorded": "2026-02-03T04:05:06Z",
                                     "target": [{"reference": "Patient/b2"}],
                                     "agent": [{"who": {"display": "lab"}}]}),
    ))
    assert answer.status_code == 200
    assert [status.split()[0] for status in statuses(answer)] == ["201", "400", "201", "201"]
    written = versioned(answer)
    found = await provenances(client)
    server_made = [item for item in found if item["agent"][0]["who"].get("display") != "lab"]
    # batch entries commit on their own: each written entry has its own (the Provenance entry none)
    assert sorted(item["target"][0]["reference"] for item in server_made) == sorted(written[:2])
    assert all(len(item["target"]) == 1 for item in server_made)
    assert len(found) == 3


async def test_x_provenance_on_a_bundle(client: httpx.AsyncClient) -> None:
    own = {"resourceType": "Provenance", "recorded": "2026-02-03T04:05:06Z", "meta": {"tag": [{"code": "feed"}]},
           "agent": [{"who": {"display": "Northside EHR"}}]}
    header = {"X-Provenance": orjson.dumps(own).decode()}
    answer = await post_bundle(client, bundle("transaction", entry("POST", "Patient", patient()),
                                              entry("POST", "Observation", observation())), **header)
    assert answer.status_code == 200, answer.text
    [stored] = await provenances(client)
    assert [target["reference"] for target in stored["target"]] == versioned(answer)
    assert stored["agent"] == own["agent"] and stored["meta"]["tag"] == own["meta"]["tag"]
    answer = await post_bundle(client, bundle("batch", entry("PUT", "Patient/b1", patient("b1")),
                                              entry("PUT", "Patient/b2", patient("b2"))), **header)
    assert answer.status_code == 200, answer.text
    found = (await provenances(client))[1:]
    assert [item["target"] for item in found] == [[{"reference": reference}] for reference in versioned(answer)]
    assert all(item["agent"] == own["agent"] for item in found)
