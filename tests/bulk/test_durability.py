"""The export as a durable job (DESIGN §7): resumed after a stop without a line lost or written twice,
and failing cleanly (an OperationOutcome, never a silent partial) when it cannot be resumed. The job is
run here slice by slice, as the worker runs it; a stop is what a killed process leaves behind."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.bulk import STATUS, job_folder, run
from fhirlead.settings import Settings
from tests.bulk.conftest import files, finished, http_client, kick_off
from tests.bulk.data import load, stored
from tests.tokens import bearer


@pytest.fixture(autouse=True)
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "PAGE", 2)  # 4 Observations: two pages, a slice each
    monkeypatch.setattr(run, "SLICE_SECONDS", 0.0)


async def test_resumes_after_a_stop_mid_page(idle_client: httpx.AsyncClient, idle_app: FastAPI) -> None:
    await load(idle_client)
    status_url = await kick_off(idle_client, _type="Observation")
    server, job_id = idle_app.state.server, status_url.rsplit("/", 1)[1]
    assert await run.run_slice(server, job_id) == 0  # first page written and recorded
    path = job_folder(server.settings, job_id) / "Observation.ndjson"
    assert len(path.read_bytes().splitlines()) == 2
    with open(path, "ab") as out:  # a process killed while writing the next page, before recording it
        out.write(b'{"resourceType":"Observation","id":"o3","sta')
    while await run.run_slice(server, job_id) is not None:
        pass
    found = await files(idle_client, await finished(idle_client, status_url))
    assert sorted(orjson.loads(line)["id"] for line in found["Observation"]) == ["o1", "o2", "o3", "o4"]
    for line in found["Observation"]:
        assert line == await stored(idle_client, "Observation", orjson.loads(line)["id"])


async def test_a_lost_file_fails_the_export_cleanly(idle_client: httpx.AsyncClient, idle_app: FastAPI) -> None:
    await load(idle_client)
    status_url = await kick_off(idle_client, _type="Observation")
    server, job_id = idle_app.state.server, status_url.rsplit("/", 1)[1]
    assert await run.run_slice(server, job_id) == 0
    (job_folder(server.settings, job_id) / "Observation.ndjson").unlink()
    assert await run.run_slice(server, job_id) is None
    answer = await idle_client.get(status_url)
    assert answer.status_code == 500
    outcome = answer.json()
    assert outcome["resourceType"] == "OperationOutcome" and "failed" in outcome["issue"][0]["diagnostics"]


async def test_cancel_while_running_removes_the_files(idle_client: httpx.AsyncClient, idle_app: FastAPI) -> None:
    await load(idle_client)
    status_url = await kick_off(idle_client, _type="Observation")
    server, job_id = idle_app.state.server, status_url.rsplit("/", 1)[1]
    assert await run.run_slice(server, job_id) == 0
    assert job_folder(server.settings, job_id).is_dir()
    assert (await idle_client.delete(status_url)).status_code == 202
    assert not job_folder(server.settings, job_id).exists()
    assert await run.run_slice(server, job_id) is None  # the worker finds nothing left to do
    assert not job_folder(server.settings, job_id).exists()


async def test_a_restarted_server_finishes_the_export(settings: Settings) -> None:
    """A server stopped mid-export; the next one on the same store (its worker) completes it."""
    first = create_app(replace(settings, workers=False))
    async with first.router.lifespan_context(first):  # noqa: SIM117 (the token needs the started app)
        async with http_client(first, await bearer(first)) as client:
            await load(client)
            status_url = await kick_off(client, _type="Observation")
            assert await run.run_slice(first.state.server, status_url.rsplit("/", 1)[1]) == 0
    second = create_app(settings)
    async with second.router.lifespan_context(second):  # noqa: SIM117 (the token needs the started app)
        async with http_client(second, await bearer(second)) as client:
            found = await files(client, await finished(client, status_url))
            assert sorted(orjson.loads(line)["id"] for line in found["Observation"]) == ["o1", "o2", "o3", "o4"]


async def test_expired_exports_files_are_swept(idle_client: httpx.AsyncClient, idle_app: FastAPI) -> None:
    await load(idle_client)
    status_url = await kick_off(idle_client, _type="Observation")
    server, job_id = idle_app.state.server, status_url.rsplit("/", 1)[1]
    while await run.run_slice(server, job_id) is not None:
        pass
    folder = job_folder(server.settings, job_id)
    assert folder.is_dir()
    await server.store.records.delete(STATUS, job_id)  # what its expiry does
    os.utime(folder, (time.time() - 3600, time.time() - 3600))
    await kick_off(idle_client, _type="Patient")  # a kick-off sweeps
    assert not folder.exists()
    assert (await idle_client.get(status_url)).status_code == 404
