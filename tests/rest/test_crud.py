"""create / read / vread / update / delete over HTTP, with their status codes and headers."""

from __future__ import annotations

import asyncio
import re
import uuid

import httpx

from tests.rest.helpers import FHIR_JSON, create, issue_codes, patient, put

LOCATION = re.compile(r"http://testserver/fhir/Patient/([A-Za-z0-9\-.]{1,64})/_history/1")


async def test_create_answers_201_with_location_etag_and_the_stored_resource(client: httpx.AsyncClient) -> None:
    response = await create(client, patient(id="ignored-by-server"))
    assert response.status_code == 201
    match = LOCATION.fullmatch(response.headers["location"])
    assert match, response.headers["location"]
    body = response.json()
    assert body["id"] == match.group(1) != "ignored-by-server"
    assert body["meta"]["versionId"] == "1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")
    assert response.headers["content-type"].startswith(FHIR_JSON)


async def test_server_ids_are_time_ordered_uuids(client: httpx.AsyncClient) -> None:
    """Version 7 UUIDs (RFC 9562): ids of resources created later sort later (index locality)."""
    ids = []
    for _ in range(3):
        ids.append((await create(client, patient())).json()["id"])
        await asyncio.sleep(0.002)
    assert all(uuid.UUID(id_).version == 7 and str(uuid.UUID(id_)) == id_ for id_ in ids)
    assert ids == sorted(ids) and len(set(ids)) == 3


async def test_read_returns_what_was_created(client: httpx.AsyncClient) -> None:
    created = (await create(client, patient())).json()
    response = await client.get(f"Patient/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["content-type"] == "application/fhir+json; charset=utf-8"


async def test_read_unknown_resource_is_404_and_unknown_type_is_404(client: httpx.AsyncClient) -> None:
    missing = await client.get("Patient/does-not-exist")
    assert missing.status_code == 404
    assert issue_codes(missing) == ["not-found"]
    unknown_type = await client.get("Patient2/abc")
    assert unknown_type.status_code == 404
    assert "Unknown resource type" in unknown_type.json()["issue"][0]["diagnostics"]


async def test_update_creates_new_versions_and_vread_reads_each(client: httpx.AsyncClient) -> None:
    first = await put(client, patient(id="p1"))
    assert first.status_code == 201  # update as create
    assert first.headers["location"].endswith("/Patient/p1/_history/1")
    second = await put(client, patient("Lopez", id="p1"))
    assert second.status_code == 200
    assert second.headers["etag"] == 'W/"2"'
    assert "location" not in second.headers
    old = await client.get("Patient/p1/_history/1")
    new = await client.get("Patient/p1/_history/2")
    assert old.json()["name"][0]["family"] == "Garcia"
    assert new.json()["name"][0]["family"] == "Lopez"
    assert new.json()["meta"]["versionId"] == "2"
    assert (await client.get("Patient/p1/_history/3")).status_code == 404
    assert (await client.get("Patient/p1/_history/x")).status_code == 404


async def test_update_requires_the_body_id_to_match_the_url(client: httpx.AsyncClient) -> None:
    wrong = await client.put("Patient/p1", json=patient(id="p2"), headers={"Content-Type": FHIR_JSON})
    assert wrong.status_code == 400
    missing = await client.put("Patient/p1", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert missing.status_code == 400
    assert (await client.get("Patient/p1")).status_code == 404


async def test_if_match_guards_updates(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    stale = await put(client, patient("Stale", id="p1"), **{"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert issue_codes(stale) == ["conflict"]
    fresh = await put(client, patient("Fresh", id="p1"), **{"If-Match": 'W/"1"'})
    assert fresh.status_code == 200
    assert (await client.get("Patient/p1")).json()["name"][0]["family"] == "Fresh"
    malformed = await put(client, patient(id="p1"), **{"If-Match": "one"})
    assert malformed.status_code == 400


async def test_delete_then_read_is_410_and_history_keeps_the_delete(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    deleted = await client.delete("Patient/p1")
    assert deleted.status_code == 200
    assert deleted.json()["resourceType"] == "OperationOutcome"
    assert deleted.headers["etag"] == 'W/"2"'
    gone = await client.get("Patient/p1")
    assert gone.status_code == 410
    assert issue_codes(gone) == ["deleted"]
    again = await client.delete("Patient/p1")
    assert again.status_code == 200  # deleting what is already deleted succeeds with nothing to do
    assert (await client.get("Patient/p1/_history/1")).status_code == 200
    assert (await client.get("Patient/p1/_history/2")).status_code == 410
    recreated = await put(client, patient(id="p1"))
    assert recreated.status_code == 201
    assert recreated.headers["etag"] == 'W/"3"'


async def test_delete_of_a_resource_that_never_existed_succeeds(client: httpx.AsyncClient) -> None:
    response = await client.delete("Patient/never")
    assert response.status_code == 200
    assert response.json()["issue"][0]["severity"] == "information"


async def test_delete_with_stale_if_match_is_412_and_keeps_the_resource(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    response = await client.delete("Patient/p1", headers={"If-Match": 'W/"5"'})
    assert response.status_code == 412
    assert (await client.get("Patient/p1")).status_code == 200


async def test_prefer_return_chooses_the_body(client: httpx.AsyncClient) -> None:
    minimal = await create(client, patient(), Prefer="return=minimal")
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["location"]
    outcome = await create(client, patient(), Prefer="return=OperationOutcome")
    assert outcome.json()["resourceType"] == "OperationOutcome"
    representation = await create(client, patient(), Prefer="return=representation")
    assert representation.json()["resourceType"] == "Patient"


async def test_server_owns_meta_version_and_last_updated(client: httpx.AsyncClient) -> None:
    sent = patient(id="p1", meta={"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z",
                                  "tag": [{"system": "http://example.org/tags", "code": "keep"}]})
    body = (await put(client, sent)).json()
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert body["meta"]["tag"] == [{"system": "http://example.org/tags", "code": "keep"}]


async def test_conditional_read_with_if_none_match_is_304(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    same = await client.get("Patient/p1", headers={"If-None-Match": 'W/"1"'})
    assert same.status_code == 304
    assert same.content == b""
    changed = await client.get("Patient/p1", headers={"If-None-Match": 'W/"0"'})
    assert changed.status_code == 200


async def test_head_answers_headers_without_a_body(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    response = await client.head("Patient/p1")
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"1"'
    assert response.content == b""
