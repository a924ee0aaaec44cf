"""Shared fixtures: the real app over HTTP (httpx ASGI transport) on a real store in a temp folder.

The store's backend is chosen by FHIRLEAD_TEST_BACKEND (see `tests.backends`), so the same REST,
search and bundle suites run against every backend.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from fhirlead.storage.factory import register_scheme
from tests import backends
from tests.tokens import bearer

# Hundreds of apps start in a run: their audit trails write in process (a writer process per app would
# cost a second each). tests/audit/test_writer_process.py runs the writer process itself.
os.environ.setdefault("FHIRLEAD_AUDIT_WRITER", "inline")

BASE = "http://testserver/fhir"
FHIR_JSON = "application/fhir+json"


def pytest_report_header() -> str:
    return f"fhirlead storage backend: {backends.selected()}"


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[backends.Backend]:
    """The storage backend of this run (FHIRLEAD_TEST_BACKEND)."""
    name = backends.selected()
    try:
        chosen = backends.make(name, tmp_path_factory.mktemp("backend"))
    except backends.NxUnavailable as error:
        pytest.skip(f"nx-27017 backend unavailable: {error}")
    for scheme in chosen.schemes:
        register_scheme(scheme, chosen.store)
    yield chosen
    for scheme in chosen.schemes:
        register_scheme(scheme, None)
    chosen.stop()


@pytest.fixture
async def settings(tmp_path: Path, backend: backends.Backend) -> AsyncIterator[Settings]:
    """Settings naming a new, empty store of the selected backend (released after the test)."""
    url = backend.url(tmp_path)
    yield Settings(store=url, max_body_bytes=64 * 1024 * 1024)
    await backend.discard(url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    headers = {"Accept": FHIR_JSON, **await bearer(app)}
    async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=headers) as c:
        yield c
