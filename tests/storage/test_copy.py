"""`fhirlead copy`: whole histories move between backends unchanged (sqlite -> mongomock -> sqlite)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from fhirlead import cli
from fhirlead.copy import CopyError, copy_store
from fhirlead.search.extract import Extractor
from fhirlead.search.query import Clause, SearchQuery, SortKey, StringMatch
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.mongo import MongoStore
from fhirlead.storage.port import ResourceVersion, Store
from fhirlead.storage.sqlite import SqliteStore
from tests.backends.mongomock_async import MockClient


async def _write(store: Store, *resources: dict[str, Any], delete: tuple[str, str] | None = None) -> None:
    extractor = Extractor(SearchRegistry.default())
    async with store.unit_of_work() as uow:
        for resource in resources:
            await uow.write(resource["resourceType"], resource["id"], resource, extractor.extract(resource), "PUT")
        if delete:
            await uow.write(*delete, None, None, "DELETE")


async def _all(store: Store) -> list[ResourceVersion]:
    return [version async for version in store.all_versions()]


async def _names(store: Store) -> list[str]:
    query = SearchQuery(("Patient",), (Clause((StringMatch("family", "start", "sm"),)),), (SortKey("given", "string"),))
    return [version.id for version in (await store.search(query)).matches]


async def test_copy_keeps_every_version_through_mongo_and_back(tmp_path: Path) -> None:
    source = SqliteStore(str(tmp_path / "source.db"))
    await source.open()
    await _write(source, {"resourceType": "Patient", "id": "a", "name": [{"family": "Smith", "given": ["Zoe"]}]})
    await _write(source, {"resourceType": "Patient", "id": "b", "name": [{"family": "Smythe", "given": ["Al"]}]},
                 {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/a"},
                  "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}})
    await _write(source, {"resourceType": "Patient", "id": "a", "name": [{"family": "Smith", "given": ["Ann"]}]},
                 delete=("Observation", "o1"))
    await _write(source, {"resourceType": "Observation", "id": "o1", "status": "amended"})
    middle = MongoStore(client=MockClient())
    back = SqliteStore(str(tmp_path / "back.db"))
    await middle.open()
    await back.open()
    try:
        await source.records.put("client", "ehr", {"client_id": "ehr"})
        await source.records.put("jti", "ehr:1", {}, expires=time.time() + 60)
        assert await copy_store(source, middle, batch=2) == 6
        assert await copy_store(middle, back) == 6
        original = await _all(source)
        assert [v.method for v in original] == ["PUT"] * 4 + ["DELETE", "PUT"]
        assert await _all(middle) == original
        assert await _all(back) == original
        for store in (middle, back):  # durable records (clients, users, keys) move too; replay records do not
            assert (await store.records.get("client", "ehr")).doc == {"client_id": "ehr"}  # type: ignore[union-attr]
            assert await store.records.get("jti", "ehr:1") is None
        for store in (source, middle, back):
            assert await _names(store) == ["b", "a"]  # index re-derived: Al Smythe before Ann Smith
            assert (await store.read("Patient", "a")).version == 2  # type: ignore[union-attr]
            assert (await store.history("Observation", "o1", None, 10, None)).versions[0].version == 3
        with pytest.raises(CopyError, match="not empty"):
            await copy_store(source, back)
    finally:
        for store in (source, middle, back):
            await store.close()


def test_copy_command_reports_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    async def seed() -> None:
        store = SqliteStore(str(tmp_path / "from.db"))
        await store.open()
        await _write(store, {"resourceType": "Patient", "id": "a"}, {"resourceType": "Patient", "id": "b"})
        await store.close()

    asyncio.run(seed())
    code = cli.main(["copy", "--from", f"sqlite:///{tmp_path / 'from.db'}", "--to", f"sqlite:///{tmp_path / 'to.db'}"])
    assert code == 0
    assert "copied 2 versions of 2 resources" in capsys.readouterr().err
    code = cli.main(["copy", "--from", f"sqlite:///{tmp_path / 'from.db'}", "--to", f"sqlite:///{tmp_path / 'to.db'}"])
    assert code == 1
    assert "not empty" in capsys.readouterr().err
