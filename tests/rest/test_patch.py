"""patch with JSON Patch: applied to the current version, validated, version-guarded."""

from __future__ import annotations

import httpx

from tests.rest.helpers import patient, put

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def test_json_patch_changes_the_resource_and_makes_a_new_version(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Lopez"},
           {"op": "add", "path": "/active", "value": True},
           {"op": "test", "path": "/gender", "value": "female"}]
    response = await client.patch("Patient/p1", json=ops, headers=JSON_PATCH)
    assert response.status_code == 200
    assert response.headers["etag"] == 'W/"2"'
    body = (await client.get("Patient/p1")).json()
    assert body["name"][0]["family"] == "Lopez" and body["active"] is True


async def test_failed_test_operation_is_422_and_changes_nothing(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    ops = [{"op": "replace", "path": "/name/0/family", "value": "Lopez"},
           {"op": "test", "path": "/gender", "value": "male"}]
    response = await client.patch("Patient/p1", json=ops, headers=JSON_PATCH)
    assert response.status_code == 422
    assert (await client.get("Patient/p1")).json()["name"][0]["family"] == "Garcia"


async def test_patch_that_makes_the_resource_invalid_is_422(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    response = await client.patch("Patient/p1", json=[{"op": "replace", "path": "/gender", "value": "martian"}],
                                  headers=JSON_PATCH)
    assert response.status_code == 422
    assert response.json()["issue"][0]["expression"] == ["Patient.gender"]


async def test_patch_may_not_change_the_id(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    response = await client.patch("Patient/p1", json=[{"op": "replace", "path": "/id", "value": "p2"}],
                                  headers=JSON_PATCH)
    assert response.status_code == 422


async def test_malformed_patch_document_is_400_and_wrong_format_415(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    assert (await client.patch("Patient/p1", json={"op": "add"}, headers=JSON_PATCH)).status_code == 400
    unknown_op = [{"op": "jump", "path": "/a"}]
    assert (await client.patch("Patient/p1", json=unknown_op, headers=JSON_PATCH)).status_code == 400
    wrong = await client.patch("Patient/p1", json=[], headers={"Content-Type": "application/merge-patch+json"})
    assert wrong.status_code == 415


async def test_patch_with_stale_if_match_is_412(client: httpx.AsyncClient) -> None:
    await put(client, patient(id="p1"))
    response = await client.patch("Patient/p1", json=[{"op": "add", "path": "/active", "value": False}],
                                  headers={**JSON_PATCH, "If-Match": 'W/"4"'})
    assert response.status_code == 412


async def test_patch_of_missing_or_deleted_resource(client: httpx.AsyncClient) -> None:
    ops = [{"op": "add", "path": "/active", "value": False}]
    assert (await client.patch("Patient/none", json=ops, headers=JSON_PATCH)).status_code == 404
    await put(client, patient(id="p1"))
    await client.delete("Patient/p1")
    assert (await client.patch("Patient/p1", json=ops, headers=JSON_PATCH)).status_code == 410
