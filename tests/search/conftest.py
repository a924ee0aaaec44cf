"""Search fixtures: the official R4 examples loaded once into a store of the selected backend, copied
per test, and helpers to seed hand-made resources and read search Bundles."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhirlead.api.app import create_app
from fhirlead.search.extract import Extractor
from fhirlead.search.registry import SearchRegistry
from fhirlead.settings import Settings
from tests import backends
from tests.tokens import bearer

EXAMPLES = Path(__file__).resolve().parents[1] / "data" / "r4-examples.ndjson.gz"
BASE = "http://testserver/fhir"
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="session")
def registry() -> SearchRegistry:
    return SearchRegistry.default()


@pytest.fixture(scope="session")
def extractor(registry: SearchRegistry) -> Extractor:
    return Extractor(registry)


@pytest.fixture(scope="session")
def examples() -> list[dict[str, Any]]:
    """The 728 official R4 examples (resources only), in file order."""
    with gzip.open(EXAMPLES) as handle:
        return [orjson.loads(line)["resource"] for line in handle]


@pytest.fixture(scope="session")
def examples_template(
    tmp_path_factory: pytest.TempPathFactory,
    examples: list[dict[str, Any]],
    extractor: Extractor,
    backend: backends.Backend,
) -> Any:
    """A store holding every example, written once per session through the store's write path."""
    folder = tmp_path_factory.mktemp("examples")
    return asyncio.run(backend.template(folder, [r for r in examples if r.get("id")], extractor))


async def _client(backend: backends.Backend, url: str) -> AsyncIterator[httpx.AsyncClient]:
    store = backend.fast_store(url) if isinstance(backend, backends.SqliteBackend) else backend.store(url)
    app = create_app(Settings(store=url), store=store)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE, headers={"Accept": FHIR_JSON, **await bearer(app)}
            ) as c:
                yield c
    finally:
        await backend.discard(url)


@pytest.fixture
async def client(tmp_path: Path, backend: backends.Backend) -> AsyncIterator[httpx.AsyncClient]:
    """The real app on an empty store (search tests seed their own resources)."""
    async for c in _client(backend, backend.url(tmp_path, "search.db")):
        yield c


@pytest.fixture
async def examples_client(
    examples_template: Any, tmp_path: Path, backend: backends.Backend
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app over a private copy of the examples store."""
    async for c in _client(backend, await backend.from_template(examples_template, tmp_path, "examples.db")):
        yield c


async def seed(client: httpx.AsyncClient, *resources: dict[str, Any]) -> None:
    """PUT each resource (ids given), failing loudly if the server refuses one."""
    for resource in resources:
        response = await client.put(
            f"{resource['resourceType']}/{resource['id']}", json=resource, headers={"Content-Type": FHIR_JSON}
        )
        assert response.status_code in (200, 201), response.text


async def search(client: httpx.AsyncClient, url: str, status: int = 200, **headers: str) -> dict[str, Any]:
    response = await client.get(url, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    """`Type/id` of the entries with this search mode, in Bundle order."""
    return [
        f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == mode
    ]


def id_set(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return set(ids(bundle, mode))


def link(bundle: dict[str, Any], relation: str) -> str | None:
    return next((item["url"] for item in bundle.get("link", []) if item["relation"] == relation), None)


async def match_ids(client: httpx.AsyncClient, url: str) -> set[str]:
    """The ids (without type) of every match of a search, following next links."""
    found: set[str] = set()
    bundle = await search(client, url)
    while True:
        found |= {entry.split("/", 1)[1] for entry in ids(bundle)}
        following = link(bundle, "next")
        if following is None:
            return found
        bundle = await search(client, following)


async def expect_matches(client: httpx.AsyncClient, prefix: str, cases: list[tuple[str, set[str]]]) -> None:
    """Run every `prefix + query` and compare the match ids; report all mismatches at once."""
    wrong = []
    for query, expected in cases:
        found = await match_ids(client, f"{prefix}{query}")
        if found != expected:
            wrong.append(f"{prefix}{query}: expected {sorted(expected)}, found {sorted(found)}")
    assert not wrong, "\n".join(wrong)
