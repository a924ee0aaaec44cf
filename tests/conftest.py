"""Shared fixtures: the real app over HTTP (httpx ASGI transport) on a real store in a temp folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings

BASE = "http://testserver/fhir"
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(store=f"sqlite:///{tmp_path / 'fhirlead.db'}", max_body_bytes=64 * 1024 * 1024)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers={"Accept": FHIR_JSON}) as c:
        yield c
