"""Fixtures of the Bulk Data `$export` suite: the app with its export folder in the test's temp folder,
and helpers that run the async pattern over HTTP as a Bulk Data client does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from tests.conftest import BASE, FHIR_JSON
from tests.tokens import bearer, register_system_client, system_token

ASYNC = {"Prefer": "respond-async"}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    return replace(settings, export_dir=str(tmp_path / "exports"))


@pytest.fixture
async def idle_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app without background workers: an export stays running (for progress, cancel and 429)."""
    application = create_app(replace(settings, workers=False))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def idle_client(idle_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(idle_app, await bearer(idle_app)) as c:
        yield c


def http_client(app: FastAPI, headers: dict[str, str]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                             headers={"Accept": FHIR_JSON, **headers})


async def other_client(app: FastAPI, client_id: str, scope: str) -> httpx.AsyncClient:
    """A second Backend Services client with its own token."""
    await register_system_client(app, client_id, scope)
    token = await system_token(app, scope=scope, client_id=client_id)
    return http_client(app, {"Authorization": f"Bearer {token}"})


async def kick_off(client: httpx.AsyncClient, path: str = "$export", **params: Any) -> str:
    answer = await client.get(path, params=params, headers=ASYNC)
    assert answer.status_code == 202, answer.text
    return answer.headers["Content-Location"]


async def finished(client: httpx.AsyncClient, status_url: str, seconds: float = 30) -> dict[str, Any]:
    """Poll the status URL until the manifest comes (as a client does, but without waiting Retry-After)."""
    for _ in range(int(seconds * 20)):
        answer = await client.get(status_url)
        if answer.status_code == 200:
            return answer.json()
        assert answer.status_code == 202, answer.text
        assert answer.headers["X-Progress"] and answer.headers["Retry-After"]
        await asyncio.sleep(0.05)
    raise AssertionError("the export did not finish")


async def lines(client: httpx.AsyncClient, url: str) -> list[bytes]:
    answer = await client.get(url, headers={"Accept": "application/fhir+ndjson"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/fhir+ndjson")
    return answer.content.splitlines()


async def files(client: httpx.AsyncClient, manifest: dict[str, Any]) -> dict[str, list[bytes]]:
    """Every output file of a manifest: type -> its lines."""
    found: dict[str, list[bytes]] = {}
    for entry in manifest["output"]:
        found.setdefault(entry["type"], []).extend(await lines(client, entry["url"]))
    return found
