"""`UnitOfWork.create_many` (how a transaction's POST entries are written): the same outcome as one
`write(..., expected_version=0)` per item, on whichever backend FHIRLEAD_TEST_BACKEND selects."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fhirlead.search.query import Clause, SearchQuery, TokenMatch
from fhirlead.server import Server
from fhirlead.settings import Settings
from fhirlead.storage.port import NewResource, VersionConflict
from fhirlead.storage.sqlite import schema
from fhirlead.storage.sqlite import store as sqlite_store
from tests import backends


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    started = await Server.start(settings)
    yield started
    await started.stop()


def item(server: Server, id_: str, gender: str = "female") -> NewResource:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": id_, "gender": gender, "name": [{"family": id_}]}
    return "Patient", id_, resource, server.extractor.extract(resource)


async def ids_with_gender(server: Server, gender: str) -> set[str]:
    page = await server.store.search(SearchQuery(("Patient",), (Clause((TokenMatch("gender", None, gender),)),)))
    return {version.id for version in page.matches}


async def test_created_resources_are_readable_and_searchable(server: Server) -> None:
    async with server.store.unit_of_work() as uow:
        versions = await uow.create_many([item(server, f"p{n}") for n in range(5)], "POST")
    assert [(version.id, version.version) for version in versions] == [(f"p{n}", 1) for n in range(5)]
    read = await server.store.read("Patient", "p3")
    assert read is not None and read.version == 1 and read.method == "POST"
    assert await ids_with_gender(server, "female") == {f"p{n}" for n in range(5)}


async def test_a_deleted_id_is_created_again_as_its_next_version(server: Server) -> None:
    async with server.store.unit_of_work() as uow:
        await uow.create_many([item(server, "gone")], "POST")
    async with server.store.unit_of_work() as uow:
        await uow.write("Patient", "gone", None, None, "DELETE")
    async with server.store.unit_of_work() as uow:
        versions = await uow.create_many([item(server, "new"), item(server, "gone", "male")], "POST")
    assert [(version.id, version.version) for version in versions] == [("new", 1), ("gone", 3)]
    assert await ids_with_gender(server, "male") == {"gone"}


@pytest.mark.parametrize("clash", ["live", "twice in one call"])
async def test_an_existing_id_conflicts_and_the_unit_writes_nothing(server: Server, clash: str) -> None:
    async with server.store.unit_of_work() as uow:
        await uow.create_many([item(server, "taken")], "POST")
    batch = [item(server, "fresh"), item(server, "taken" if clash == "live" else "fresh", "male")]
    with pytest.raises(VersionConflict):
        async with server.store.unit_of_work() as uow:
            await uow.create_many(batch, "POST")
    assert await server.store.read("Patient", "fresh") is None
    assert await ids_with_gender(server, "male") == set()


@pytest.mark.skipif(backends.selected() != "sqlite", reason="SQLite query plans: SQLite backend only")
async def test_sqlite_create_many_reads_by_index_only(server: Server, settings: Settings) -> None:
    """Every read of a bulk create seeks an index: a scan would make ingest slow down as the store grows."""
    async with server.store.unit_of_work() as uow:
        await uow.create_many([item(server, f"old{n}") for n in range(50)], "POST")
    conn = schema.connect(settings.store.removeprefix("sqlite:///"), synchronous="FULL", read_only=False)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    conn.execute("BEGIN IMMEDIATE")
    sqlite_store._create_many(conn, [item(server, "a"), item(server, "b")], "POST")
    conn.set_trace_callback(None)
    reads = [text for text in statements if text.lstrip().upper().startswith("SELECT")]
    assert reads
    for text in reads:
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {text}")]
        assert not any(re.search(r"\bSCAN (resources|versions|idx_)", line) for line in plan), (text, plan)
    conn.execute("ROLLBACK")
    conn.close()
