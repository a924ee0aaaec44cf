"""Durable background jobs (DESIGN §7): recorded in the store in the same commit as what caused them,
run by a worker inside every `fhirlead serve`, resumable after a restart, shared by several processes.

A job is a record of its kind keyed by what it is about (a patient id, ...), `pending` while there is
work. `Jobs.enqueue` writes it inside a unit of work (typically from a write observer,
`fhirlead.storage.observed`), so it commits with its cause or not at all. `JobWorker` takes pending jobs
under a lease (a record of kind `<kind>-lease` that expires after LEASE_SECONDS, so a job whose holder
died is taken over by another process), runs the handler, then marks the job done with compare-and-set
on the revision it read: a job enqueued again meanwhile stays pending and runs again. A done job
expires at once, so the list holds pending jobs only. A stop at any point leaves the job pending;
handlers must therefore be idempotent. Long work is done in slices: a handler that returns a number of
seconds leaves its job pending (and gives up its lease) to be run again after that long (0: at once),
keeping its own progress where the next run, in any process, finds it (`fhirlead.search.reindex`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fhirlead.storage.observed import Written
from fhirlead.storage.port import UnitOfWork
from fhirlead.storage.records import RecordConflict

log = logging.getLogger(__name__)

LEASE_SECONDS = 120.0
ROUND = 100  # jobs read per round: a load of a million Patients queues a million jobs
POLL_SECONDS = 5.0
STOP_SECONDS = 10.0


async def finish(task: asyncio.Task[None] | None, seconds: float = STOP_SECONDS) -> None:
    """Let a worker's loop end its round (`seconds` at most, then cancel it)."""
    if task is None:
        return
    try:
        async with asyncio.timeout(seconds):
            await asyncio.shield(task)
    except TimeoutError:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Jobs:
    """The durable jobs of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.lease_kind = f"{kind}-lease"

    async def enqueue(self, uow: UnitOfWork, key: str, **details: Any) -> None:
        """A pending job for `key`, committed with `uow` (`details`: what its handler reads back)."""
        await uow.put_record(self.kind, key, {**details, "pending": True})


class JobWorker:
    """Runs one kind's pending jobs, one at a time; one loop per server process.

    `handle(server, key)` does a job's work (None: done; seconds: not yet, run it again that much later);
    `wakes(written)` says whether a commit may have enqueued a job (then the loop runs at once instead of
    at its next poll)."""

    def __init__(self, server: Any, jobs: Jobs, handle: Callable[[Any, str], Awaitable[float | None]],
                 wakes: Callable[[Sequence[Written]], bool], lease_seconds: float = LEASE_SECONDS) -> None:
        self.server, self.jobs, self.handle, self.wakes = server, jobs, handle, wakes
        self.lease_seconds = lease_seconds  # how long a dead holder keeps a job from the others
        self.owner = f"{os.getpid()}-{id(self)}"
        self.wake = asyncio.Event()
        self.stopping = False
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        store = self.server.store
        if hasattr(store, "committed"):
            store.committed.append(lambda written: self.wake.set() if self.wakes(written) else None)
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Let the current round finish (STOP_SECONDS at most, then cancel it: its job stays pending)."""
        self.stopping = True
        self.wake.set()
        await finish(self.task)

    async def run(self) -> None:
        while not self.stopping:
            try:
                await self.run_once()
            except Exception as error:  # a store hiccup must not end the loop; the job stays pending
                log.warning("%s job failed (%s); it will be retried", self.jobs.kind, type(error).__name__)
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self.wake.wait()
            self.wake.clear()

    async def run_once(self) -> int:
        """The next ROUND pending jobs this process can lease; how many were done. A full round wakes the
        loop again at once."""
        records = self.server.store.records
        done = 0
        jobs = await records.list(self.jobs.kind, limit=ROUND)
        if len(jobs) == ROUND:
            self.wake.set()
        for job in jobs:
            if not job.doc.get("pending") or self.stopping:
                continue
            try:
                await records.put(self.jobs.lease_kind, job.key, {"owner": self.owner},
                                  expires=time.time() + self.lease_seconds, expected_rev=0)
            except RecordConflict:
                continue  # another process holds it
            try:
                again = await self.handle(self.server, job.key)
                if again is not None:  # a slice of it: still pending, run again later
                    if again <= 0:
                        self.wake.set()
                    else:
                        asyncio.get_running_loop().call_later(again, self.wake.set)
                    continue
                with contextlib.suppress(RecordConflict):  # enqueued again meanwhile: it runs again
                    await records.put(self.jobs.kind, job.key, {"pending": False}, expected_rev=job.rev,
                                      expires=time.time())
                done += 1
            finally:
                await records.delete(self.jobs.lease_kind, job.key)
        return done
