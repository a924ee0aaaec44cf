"""Who sees an export (Bulk Data 2.0.0 §"Bulk Data Status Request", §"Bulk Data Delete Request"): the
client that started it, scoped by its SMART grant; cancelling; 429 when too many run."""

from __future__ import annotations

import httpx
import orjson

from tests.bulk.conftest import ASYNC, files, finished, kick_off, other_client
from tests.bulk.data import load


async def test_progress_while_running(idle_client: httpx.AsyncClient) -> None:
    status_url = await kick_off(idle_client)
    answer = await idle_client.get(status_url)
    assert answer.status_code == 202
    assert answer.headers["X-Progress"] and int(answer.headers["Retry-After"]) > 0


async def test_delete_cancels(idle_client: httpx.AsyncClient) -> None:
    status_url = await kick_off(idle_client)
    assert (await idle_client.delete(status_url)).status_code == 202
    assert (await idle_client.get(status_url)).status_code == 404
    assert (await idle_client.delete(status_url)).status_code == 404
    assert (await idle_client.get("$export-status/" + "0" * 32)).status_code == 404
    assert (await idle_client.get("$export-status/../../etc")).status_code == 404


async def test_too_many_running(idle_client: httpx.AsyncClient) -> None:
    await kick_off(idle_client)
    second = await kick_off(idle_client)
    answer = await idle_client.get("$export", headers=ASYNC)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
    assert (await idle_client.delete(second)).status_code == 202
    await kick_off(idle_client)  # room again


async def test_another_client_cannot_poll_or_download(client: httpx.AsyncClient, app) -> None:
    await load(client)
    status_url = await kick_off(client, _type="Patient")
    manifest = await finished(client, status_url)
    async with await other_client(app, "other-system", "system/*.rs") as other:
        assert (await other.get(status_url)).status_code == 404
        assert (await other.delete(status_url)).status_code == 404
        assert (await other.get(manifest["output"][0]["url"])).status_code == 404
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as anonymous:
        assert (await anonymous.get(status_url)).status_code == 401
        assert (await anonymous.get(manifest["output"][0]["url"])).status_code == 401
    assert (await client.get(manifest["output"][0]["url"])).status_code == 200


async def test_grant_limits_the_types(client: httpx.AsyncClient, app) -> None:
    await load(client)
    async with await other_client(app, "observations-only", "system/Observation.rs") as narrow:
        manifest = await finished(narrow, await kick_off(narrow))
        found = await files(narrow, manifest)
        assert set(found) == {"Observation"} and len(found["Observation"]) == 4
        assert all(orjson.loads(line)["resourceType"] == "Observation" for line in found["Observation"])
        assert (await narrow.get("$export", params={"_type": "Patient"}, headers=ASYNC)).status_code == 403
