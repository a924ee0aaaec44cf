"""MongoStore's unit of work against a real wire-protocol server: nx-27017 (MongoDB's protocol over
SQLite, driven by the real PyMongo driver with real sessions and transactions), and the refusal of a
standalone server. mongomock has no sessions, so these are checked here and not in the contract suite.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fhirlead.search.extract import Extractor
from fhirlead.search.query import Clause, SearchQuery, TokenMatch
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.mongo import MongoStore
from fhirlead.storage.port import StoreError, VersionConflict
from tests import backends
from tests.backends.mongomock_async import MockClient

EXTRACTOR = Extractor(SearchRegistry.default())


@pytest.fixture(scope="module")
def nx_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        process = backends.start_nx(tmp_path_factory.mktemp("nx"))
    except backends.NxUnavailable as error:
        pytest.skip(f"cannot start nx-27017: {error}")
    port = process.args[process.args.index("--port") + 1]
    yield f"mongodb://127.0.0.1:{port}/fhirlead_{uuid.uuid4().hex[:8]}?directConnection=true"
    backends.stop_nx(process)


@pytest.fixture
async def store(nx_uri: str) -> AsyncIterator[MongoStore]:
    """A store on a fresh database; nx runs transactions without reporting a replica set."""
    url = nx_uri.replace("/fhirlead_", f"/t{uuid.uuid4().hex[:8]}_")
    opened = MongoStore(url, transactions=True)
    await opened.open()
    yield opened
    await opened.close()


def patient(id_: str, family: str = "Smith") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"family": family}], "gender": "female"}


async def write(uow: Any, resource: dict[str, Any], expected: int | None = None) -> Any:
    return await uow.write(resource["resourceType"], resource["id"], resource, EXTRACTOR.extract(resource), "PUT",
                           expected)


FEMALE = SearchQuery(("Patient",), (Clause((TokenMatch("gender", None, "female"),)),), total="accurate")


async def test_commit_makes_every_write_visible_together(store: MongoStore) -> None:
    async with store.unit_of_work() as uow:
        await write(uow, patient("a"))
        await write(uow, patient("b"))
        assert (await uow.read("Patient", "a")) is not None  # the unit reads its own writes
        assert (await uow.search(FEMALE)).total == 2
    assert (await store.read("Patient", "b")).version == 1  # type: ignore[union-attr]
    assert (await store.search(FEMALE)).total == 2
    assert len((await store.history(None, None, None, 10, None)).versions) == 2


async def test_an_exception_rolls_back_every_write(store: MongoStore) -> None:
    async with store.unit_of_work() as uow:
        await write(uow, patient("kept"))
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            await write(uow, patient("lost"))
            await write(uow, patient("kept", "Jones"))
            raise RuntimeError("abort")
    assert await store.read("Patient", "lost") is None
    assert (await store.read("Patient", "kept")).version == 1  # type: ignore[union-attr]
    assert (await store.search(FEMALE)).total == 1
    assert [v.id for v in (await store.history(None, None, None, 10, None)).versions] == ["kept"]


async def test_version_conflict_rolls_back_the_unit(store: MongoStore) -> None:
    async with store.unit_of_work() as uow:
        await write(uow, patient("a"))
    with pytest.raises(VersionConflict) as raised:
        async with store.unit_of_work() as uow:
            await write(uow, patient("b"), expected=0)  # b must not exist: fine
            await write(uow, patient("a", "Jones"), expected=0)  # a exists: conflict
    assert (raised.value.expected, raised.value.current) == (0, 1)
    assert await store.read("Patient", "b") is None
    async with store.unit_of_work() as uow:
        assert (await write(uow, patient("a", "Jones"), expected=1)).version == 2
        await uow.write("Patient", "a", None, None, "DELETE", 2)
        assert (await write(uow, patient("a"), expected=0)).version == 4  # deleted counts as absent


async def test_a_standalone_server_is_refused_before_anything_is_written(nx_uri: str) -> None:
    """nx-27017's `hello` reports a standalone server (no setName), as a standalone mongod does."""
    store = MongoStore(nx_uri.replace("/fhirlead_", "/standalone_"))
    await store.open()
    try:
        with pytest.raises(StoreError, match="replica set"):
            async with store.unit_of_work() as uow:
                await write(uow, patient("a"))
        assert await store.read("Patient", "a") is None
        assert (await store.history(None, None, None, 10, None)).versions == []
    finally:
        await store.close()


async def test_mongomock_standalone_mode_is_refused_too() -> None:
    store = MongoStore(client=MockClient(standalone=True))
    await store.open()
    with pytest.raises(StoreError, match=r"replica set.*Nothing was written"):
        async with store.unit_of_work():
            pass
    assert await store.read("Patient", "a") is None
