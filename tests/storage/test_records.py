"""`Store.records`: keyed documents with compare-and-set revisions and expiry, on whichever backend
FHIRLEAD_TEST_BACKEND selects; SQLite also shares them between stores on one file and adds their table
to a version-1 database."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from fhirlead.server import Server
from fhirlead.settings import Settings
from fhirlead.storage.records import Record, RecordConflict, Records
from fhirlead.storage.sqlite import SqliteStore, schema
from tests import backends
from tests.storage.older_schema import downgrade

PAST = 1.0  # epoch seconds: long expired


def later() -> float:
    """An hour from now in whole seconds (nx-27017 keeps fewer digits of a double than Python prints)."""
    return float(int(time.time()) + 3600)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[Server]:
    started = await Server.start(settings)
    yield started
    await started.stop()


@pytest.fixture
def records(server: Server) -> Records:
    return server.store.records


async def test_an_absent_record_reads_as_none(records: Records) -> None:
    assert await records.get("client", "nobody") is None
    assert await records.list("client") == []
    assert await records.delete("client", "nobody") is False


async def test_a_new_record_has_revision_one_and_reads_back(records: Records) -> None:
    expires = later()
    put = await records.put("code", "abc", {"client": "app", "scopes": ["a", "b"]}, expires=expires)
    assert put == Record("code", "abc", {"client": "app", "scopes": ["a", "b"]}, 1, expires)
    assert await records.get("code", "abc") == put
    assert await records.get("code", "other") is None
    assert await records.get("other", "abc") is None


async def test_unconditional_puts_count_revisions(records: Records) -> None:
    await records.put("user", "u", {"n": 1})
    second = await records.put("user", "u", {"n": 2})
    assert second.rev == 2
    assert await records.get("user", "u") == Record("user", "u", {"n": 2}, 2, None)


async def test_create_only_conflicts_with_a_live_record_and_changes_nothing(records: Records) -> None:
    first = await records.put("jti", "j1", {"seen": 1}, expected_rev=0)
    assert first.rev == 1
    with pytest.raises(RecordConflict) as raised:
        await records.put("jti", "j1", {"seen": 2}, expected_rev=0)
    assert (raised.value.kind, raised.value.key) == ("jti", "j1")
    assert await records.get("jti", "j1") == first


async def test_expected_revision_guards_the_write(records: Records) -> None:
    await records.put("family", "f", {"generation": 1}, expected_rev=0)
    second = await records.put("family", "f", {"generation": 2}, expected_rev=1)
    assert second.rev == 2
    for stale in (1, 3):
        with pytest.raises(RecordConflict):
            await records.put("family", "f", {"generation": 99}, expected_rev=stale)
    assert await records.get("family", "f") == second
    with pytest.raises(RecordConflict):
        await records.put("family", "absent", {}, expected_rev=1)
    assert await records.get("family", "absent") is None


async def test_an_expired_record_is_absent_everywhere(records: Records) -> None:
    await records.put("code", "old", {"used": False}, expires=PAST)
    await records.put("code", "live", {"used": False}, expires=later())
    assert await records.get("code", "old") is None
    assert [record.key for record in await records.list("code")] == ["live"]
    with pytest.raises(RecordConflict):
        await records.put("code", "old", {"used": True}, expected_rev=1)
    assert await records.delete("code", "old") is False


async def test_an_expired_record_can_be_created_again(records: Records) -> None:
    await records.put("throttle", "ip", {"failures": 5}, expires=PAST)
    again = await records.put("throttle", "ip", {"failures": 1}, expected_rev=0)
    assert again.doc == {"failures": 1} and again.expires is None
    assert await records.get("throttle", "ip") == again
    with pytest.raises(RecordConflict):
        await records.put("throttle", "ip", {"failures": 2}, expected_rev=0)
    assert (await records.put("throttle", "ip", {"failures": 2}, expected_rev=again.rev)).rev == again.rev + 1


async def test_purge_removes_only_expired_records(records: Records) -> None:
    await records.put("code", "a", {}, expires=PAST)
    await records.put("jti", "b", {}, expires=PAST)
    await records.put("code", "c", {}, expires=later())
    await records.put("code", "d", {})
    assert await records.purge_expired() == 2
    assert await records.purge_expired() == 0
    assert [record.key for record in await records.list("code")] == ["c", "d"]
    created = await records.put("code", "a", {"new": True}, expected_rev=0)
    assert created.rev == 1


async def test_delete_removes_a_live_record(records: Records) -> None:
    await records.put("key", "k1", {"kty": "EC"})
    assert await records.delete("key", "k1") is True
    assert await records.get("key", "k1") is None
    assert await records.delete("key", "k1") is False
    assert (await records.put("key", "k1", {"kty": "RSA"}, expected_rev=0)).rev == 1


async def test_list_is_of_one_kind_in_key_order(records: Records) -> None:
    for key in ("m", "b", "z", "a"):
        await records.put("client", key, {"name": key})
    await records.put("user", "c", {"name": "not a client"})
    listed = await records.list("client")
    assert [record.key for record in listed] == ["a", "b", "m", "z"]
    assert all(record.kind == "client" and record.doc == {"name": record.key} for record in listed)
    assert [record.key for record in await records.list("user")] == ["c"]


async def test_concurrent_conditional_puts_let_exactly_one_win(records: Records) -> None:
    await records.put("code", "redeem-me", {"redeemed": False})

    async def redeem(attempt: int) -> Record | None:
        try:
            return await records.put("code", "redeem-me", {"redeemed": attempt}, expected_rev=1)
        except RecordConflict:
            return None

    outcomes = await asyncio.gather(*(redeem(attempt) for attempt in range(10)))
    winners = [outcome for outcome in outcomes if outcome is not None]
    assert len(winners) == 1 and winners[0].rev == 2
    assert await records.get("code", "redeem-me") == winners[0]


async def test_concurrent_creates_let_exactly_one_win(records: Records) -> None:
    async def create(attempt: int) -> bool:
        try:
            await records.put("jti", "once", {"by": attempt}, expected_rev=0)
        except RecordConflict:
            return False
        return True

    assert sum(await asyncio.gather(*(create(attempt) for attempt in range(10)))) == 1


sqlite_only = pytest.mark.skipif(backends.selected() != "sqlite", reason="SQLite file sharing and migration")


@sqlite_only
async def test_sqlite_stores_on_one_file_share_records(server: Server, settings: Settings) -> None:
    """Another store on the same file stands for another server process."""
    other = SqliteStore(settings.store.removeprefix("sqlite:///"))
    await other.open()
    try:
        written = await server.store.records.put("client", "shared", {"secret": "s"}, expected_rev=0)
        assert await other.records.get("client", "shared") == written
        await other.records.put("client", "shared", {"secret": "t"}, expected_rev=1)
        with pytest.raises(RecordConflict):
            await server.store.records.put("client", "shared", {"secret": "u"}, expected_rev=1)
        now = await server.store.records.get("client", "shared")
        assert now is not None and (now.doc, now.rev) == ({"secret": "t"}, 2)
    finally:
        await other.close()


@sqlite_only
async def test_sqlite_records_do_not_join_an_open_group_transaction(server: Server) -> None:
    """A put commits by itself while the writer's transaction is open, and a rollback there keeps it."""
    store = getattr(server.store, "wrapped", server.store)  # under the write observers (storage/observed.py)
    assert isinstance(store, SqliteStore)
    await store.records.put("user", "before", {})
    await store._on_writer(lambda conn: conn.execute("BEGIN"))  # open, but holding no lock yet
    try:
        await store.records.put("user", "during", {})
    finally:
        await store._on_writer(lambda conn: conn.execute("ROLLBACK"))
    assert [record.key for record in await store.records.list("user")] == ["before", "during"]


@sqlite_only
async def test_sqlite_version_1_database_gets_the_records_table(tmp_path: Path) -> None:
    path = str(tmp_path / "v1.db")
    old = SqliteStore(path)
    await old.open()
    await old.close()
    downgrade(path, "records", 1)
    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert (await upgraded.records.put("client", "c", {"v": 2})).rev == 1
        assert await upgraded.records.get("client", "c") == Record("client", "c", {"v": 2}, 1, None)
    finally:
        await upgraded.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


@sqlite_only
async def test_sqlite_stores_on_one_file_race_safely(server: Server, settings: Settings) -> None:
    """Conditional puts from several stores (connections, as processes would have) at once: one wins."""
    others = [SqliteStore(settings.store.removeprefix("sqlite:///")) for _ in range(4)]
    for other in others:
        await other.open()
    try:
        await server.store.records.put("code", "c", {"redeemed": False})

        async def redeem(store: SqliteStore, attempt: int) -> bool:
            try:
                await store.records.put("code", "c", {"redeemed": attempt}, expected_rev=1)
            except RecordConflict:
                return False
            return True

        wins = await asyncio.gather(*(redeem(store, n) for n in range(3) for store in others))
        assert sum(wins) == 1
    finally:
        for other in others:
            await other.close()


async def test_a_record_put_in_a_unit_of_work_commits_and_rolls_back_with_it(server: Server) -> None:
    store = server.store
    with pytest.raises(RuntimeError):
        async with store.unit_of_work() as uow:
            await uow.write("Patient", "gone", {"resourceType": "Patient", "id": "gone"}, None, "PUT")
            await uow.put_record("load-journal", "gone", {"resources": 1})
            raise RuntimeError("the unit fails after both writes")
    assert await store.records.get("load-journal", "gone") is None and await store.read("Patient", "gone") is None
    async with store.unit_of_work() as uow:
        await uow.write("Patient", "kept", {"resourceType": "Patient", "id": "kept"}, None, "PUT")
        await uow.put_record("load-journal", "kept", {"resources": 1})
    assert (await store.records.get("load-journal", "kept")).doc == {"resources": 1}
    async with store.unit_of_work() as uow:
        await uow.put_record("load-journal", "kept", {"resources": 2})
    again = await store.records.get("load-journal", "kept")
    assert (again.doc, again.rev, again.expires) == ({"resources": 2}, 2, None)


async def test_a_list_can_be_read_a_round_at_a_time(records: Records) -> None:
    """A background worker reads its queue ROUND jobs at a time (fhirlead.jobs), never a million at once."""
    for key in ("d", "b", "a", "c"):
        await records.put("job", key, {"pending": True})
    await records.put("job", "0-expired", {"pending": True}, expires=PAST)
    assert [record.key for record in await records.list("job", limit=2)] == ["a", "b"]
    assert [record.key for record in await records.list("job", limit=10)] == ["a", "b", "c", "d"]
    assert len(await records.list("job")) == 4
