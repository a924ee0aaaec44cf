"""SQLite group commit: concurrent units of work share one COMMIT, yet each unit still returns only
once its writes are durable, and a failing unit takes only its own writes with it."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
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


async def test_small_writes_in_an_open_group_run_on_the_event_loop_and_still_undo_alone(store: SqliteStore) -> None:
    """Once a group's transaction is open, units write on the event loop (no thread hop); a unit that
    fails there is undone alone, exactly as on the writer thread."""
    hops = 0
    submit = store._writer.submit  # type: ignore[union-attr]

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal hops
        hops += 1
        return submit(*args, **kwargs)

    store._writer.submit = counted  # type: ignore[union-attr,method-assign]
    try:
        await test_a_failing_unit_in_a_group_undoes_only_its_own_writes(store)
    finally:
        store._writer.submit = submit  # type: ignore[union-attr,method-assign]
    assert hops < 8 * 3  # far fewer than one per write, release and commit


async def test_a_unit_cancelled_while_the_writer_thread_works_for_it_leaves_nothing(store: SqliteStore) -> None:
    """Big work (a 20,000-member Group) goes to the writer thread; a unit cancelled meanwhile must not
    touch the connection from the event loop until the thread is done with it (SQLite would make the
    loop wait for the thread's statement), its writes are undone, and the next unit writes as usual."""
    members = [{"entity": {"reference": f"Patient/m{number}"}} for number in range(20_000)]
    group = {"resourceType": "Group", "id": "big", "type": "person", "actual": True, "member": members}
    group_entries = EXTRACTOR.extract(group)
    started = asyncio.Event()

    async def cancelled_unit() -> None:
        async with store.unit_of_work() as uow:
            first = patient("before-group")
            await uow.write("Patient", "before-group", first, EXTRACTOR.extract(first), "PUT")
            started.set()
            await uow.write("Group", "big", group, group_entries, "PUT")

    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    task = asyncio.create_task(cancelled_unit())
    await started.wait()
    await asyncio.sleep(0.02)  # the Group's rows are being written on the writer thread
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store.unit_of_work() as uow:
        after = patient("after")
        await uow.write("Patient", "after", after, EXTRACTOR.extract(after), "PUT")
    ticking.cancel()
    assert max(gaps) < 0.25, f"the event loop stood still for {max(gaps):.2f} s"
    assert not store._writer_conn.in_transaction  # type: ignore[union-attr]  # nothing left open or locked
    with sqlite3.connect(store.path, timeout=0) as other:
        assert {row[0] for row in other.execute("SELECT id FROM resources")} == {"after"}
        assert other.execute("SELECT count(*) FROM group_members").fetchone() == (0,)
        assert other.execute("SELECT count(*) FROM idx_reference WHERE rep < 0").fetchone() == (0,)
    assert await store.read("Group", "big") is None


async def test_a_call_cancelled_before_it_started_does_not_free_the_writer_connection(store: SqliteStore) -> None:
    """The writer thread holds its connection until every call handed to it is done: a later call
    cancelled while still queued (done at once) must not let the event loop use the connection under a
    call the thread is running."""
    async with store.unit_of_work() as uow:
        first = patient("first")
        await uow.write("Patient", "first", first, EXTRACTOR.extract(first), "PUT")  # the transaction is open
        release = threading.Event()
        running = asyncio.create_task(store._on_writer(lambda conn: release.wait(10)))
        await asyncio.sleep(0.05)
        queued = asyncio.create_task(store._on_writer(lambda conn: None))
        await asyncio.sleep(0)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert store._in_open_transaction() is None  # the thread still runs the first call
        release.set()
        await running
        assert store._in_open_transaction() is not None
