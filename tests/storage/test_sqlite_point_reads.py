"""Reads by id run on the event loop's own SQLite connection (no hop to a reader thread): they see every
committed version at once, as reads on the reader threads do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fhirlead import fhirjson
from fhirlead.search.extract import Extractor
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.sqlite import SqliteStore

EXTRACTOR = Extractor(SearchRegistry.default())


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "reads.db"))
    await opened.open()
    async with opened.unit_of_work() as uow:
        resource = {"resourceType": "Patient", "id": "p1", "gender": "female"}
        await uow.write("Patient", "p1", resource, EXTRACTOR.extract(resource), "PUT")
    yield opened
    await opened.close()


async def test_a_read_sees_every_committed_version(store: SqliteStore) -> None:
    for gender in ("male", "other", "unknown"):
        async with store.unit_of_work() as uow:
            resource = {"resourceType": "Patient", "id": "p1", "gender": gender}
            await uow.write("Patient", "p1", resource, EXTRACTOR.extract(resource), "PUT")
        found = await store.read("Patient", "p1")
        assert found is not None and fhirjson.loads(found.body)["gender"] == gender
    assert (await store.vread("Patient", "p1", 2)) is not None
    assert await store.read("Patient", "absent") is None
