"""Where the audit trail's batches are written: in this process, or in a writer process of its own.

Building, indexing and storing one AuditEvent costs ~150 µs of CPU (bench/README.md), as much as the
read it records. In the server's own process that work shares the event loop and the GIL with the
requests; a writer process (`ProcessWriter`, the default of `fhirlead serve`) does it on another core,
opening the same store by its URL, so the request side only hands over the facts of each event.
`InlineWriter` keeps everything in process (tests, stores a child cannot open by URL).

Both write a batch as one unit of work (`UnitOfWork.create_many`, server-assigned ids) and raise if
it failed, so the trail can retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

from fhirlead import heap
from fhirlead.audit.event import AUDIT_EVENT

log = logging.getLogger(__name__)
START_TIMEOUT = 60.0


def _new_id() -> str:
    from fhirlead.interaction.create import new_id  # ids exactly as a create assigns them

    return new_id()


async def store_events(store: Any, extractor: Any, events: list[Any]) -> None:
    """Build (a pending event is a callable), index and store `events` in one unit of work."""
    items = []
    for number, pending in enumerate(events):
        event = pending() if callable(pending) else pending
        event.setdefault("id", _new_id())
        items.append((AUDIT_EVENT, event["id"], event, extractor.extract(event)))
        if number % 50 == 49:
            await asyncio.sleep(0)  # a big batch must not hold the event loop: requests go first
    async with store.unit_of_work() as uow:
        await uow.create_many(items, "POST")


class InlineWriter:
    def __init__(self, store: Any, extractor: Any) -> None:
        self._store, self._extractor = store, extractor

    async def start(self) -> None:
        pass

    async def write(self, events: list[Any]) -> None:
        await store_events(self._store, self._extractor, events)

    async def stop(self) -> None:
        pass


class WriterFailed(Exception):
    """The writer process could not store a batch (its error's class name is the message)."""


class ProcessWriter:
    """A child process that stores batches sent over a pipe and answers each with "ok" or the error's
    class name. One batch at a time: the trail's queue holds the rest meanwhile."""

    def __init__(self, store_url: str) -> None:
        self._store_url = store_url
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork: the parent runs threads (SQLite, asyncio)
        parent, child = context.Pipe()
        self._process = context.Process(target=_child_main, args=(self._store_url, child), daemon=True,
                                        name="fhirlead-audit-writer")
        self._process.start()
        child.close()
        self._pipe = parent
        ready = await asyncio.to_thread(_receive, parent, START_TIMEOUT)
        if ready != "ready":
            await self.stop()
            raise WriterFailed(f"the audit writer process did not start ({ready})")

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def write(self, events: list[Any]) -> None:
        async with self._lock:
            if self._pipe is None or self._process is None or not self._process.is_alive():
                raise WriterFailed("the audit writer process is not running")
            pipe = self._pipe
            await asyncio.to_thread(pipe.send, events)
            answer = await asyncio.to_thread(_receive, pipe, START_TIMEOUT)
        if answer != "ok":
            raise WriterFailed(str(answer))

    async def stop(self) -> None:
        if self._pipe is not None:
            with contextlib.suppress(OSError, ValueError):
                self._pipe.send(None)
            self._pipe.close()
            self._pipe = None
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 10)
            if self._process.is_alive():
                self._process.kill()
            self._process = None


def _receive(pipe: Connection, timeout: float) -> Any:
    if not pipe.poll(timeout):
        return "timeout"
    try:
        return pipe.recv()
    except EOFError:
        return "the writer process ended"


def _child_main(store_url: str, pipe: Connection) -> None:
    asyncio.run(_child(store_url, pipe))


async def _child(store_url: str, pipe: Connection) -> None:
    from fhirlead.search.live import StoreSearchParameters
    from fhirlead.storage.factory import open_store

    store = open_store(store_url)
    await store.open()
    # the store's SearchParameters too (those on AuditEvent index the events), looked at again every few
    # seconds as the servers do
    parameters = StoreSearchParameters(store)
    await parameters.current()
    heap.settle_server()
    pipe.send("ready")
    try:
        while True:
            events = await asyncio.to_thread(pipe.recv)
            if events is None:
                return
            try:
                await store_events(store, await parameters.current(), events)
            except Exception as error:  # reported to the parent, which retries and logs
                pipe.send(type(error).__name__)
            else:
                pipe.send("ok")
    except EOFError:
        return  # the parent went away
    finally:
        await store.close()
