"""SQLite group commit: concurrent units of work share one COMMIT, yet each unit still returns only
once its writes are durable, and a failing unit takes only its own writes with it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fhirlead.search.extract import Extractor
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.sqlite import SqliteStore

EXTRACTOR = Extractor(SearchRegistry.default())


class Refused(Exception):
    """What the failing unit raises."""


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(str(tmp_path / "group.db"))
    await opened.open()
    yield opened
    await opened.close()


def patient(id_: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "gender": "female"}


def committed_ids(path: str) -> set[str]:
    """What a fresh connection (another process, say) sees: only committed rows."""
    with sqlite3.connect(path) as other:
        return {row[0] for row in other.execute("SELECT id FROM resources")}


async def test_concurrent_units_share_commits_and_return_only_when_committed(store: SqliteStore) -> None:
    statements: list[str] = []
    await store._on_writer(lambda conn: conn.set_trace_callback(statements.append))
    seen_at_return: dict[str, bool] = {}

    async def unit(number: int) -> None:
        id_ = f"p{number}"
        async with store.unit_of_work() as uow:
            resource = patient(id_)
            await uow.write("Patient", id_, resource, EXTRACTOR.extract(resource), "PUT")
            await asyncio.sleep(0)  # let the other requests queue up behind this one
        seen_at_return[id_] = id_ in committed_ids(store.path)

    await asyncio.gather(*(unit(number) for number in range(12)))
    assert seen_at_return == {f"p{number}": True for number in range(12)}
    commits = sum(text.strip().upper() == "COMMIT" for text in statements)
    assert 1 <= commits < 12


async def test_a_failing_unit_in_a_group_undoes_only_its_own_writes(store: SqliteStore) -> None:
    async def unit(number: int) -> None:
        async with store.unit_of_work() as uow:
            for id_ in (f"a{number}", f"b{number}"):
                resource = patient(id_)
                await uow.write("Patient", id_, resource, EXTRACTOR.extract(resource), "PUT")
                await asyncio.sleep(0)
            if number == 3:
                raise Refused

    outcomes = await asyncio.gather(*(unit(number) for number in range(8)), return_exceptions=True)
    assert [isinstance(outcome, Refused) for outcome in outcomes] == [number == 3 for number in range(8)]
    expected = {f"{prefix}{number}" for number in range(8) if number != 3 for prefix in "ab"}
    assert committed_ids(store.path) == expected
    assert await store.read("Patient", "a3") is None and await store.read("Patient", "b5") is not None


async def test_a_unit_alone_commits_at_once(store: SqliteStore) -> None:
    async with store.unit_of_work() as uow:
        resource = patient("alone")
        await uow.write("Patient", "alone", resource, EXTRACTOR.extract(resource), "PUT")
    assert committed_ids(store.path) == {"alone"}
