"""Durable timers: "evaluate rule R on resource X at time T", kept in the store (DESIGN §6, §7).

A timer is a record of kind TIMERS whose key starts with T (microseconds since the epoch, zero-padded
to 20 digits), then the rule and the resource: `00000001780000000000|referral-follow-through|
ServiceRequest/1`. Records list in key order, so the earliest timer is always first, whether ten or a
million wait behind it. A write observer records timers in the same commit as the write that caused
them (`fhirlead.jobs.Jobs.enqueue`); a rule that fires at once uses T = 0, so writing the same resource
again before its timer ran lands on the same record instead of adding another.

`TimerWorker` is `fhirlead.jobs.JobWorker` (one loop per server process, woken by commits, leases so
that several processes share the work and a dead holder's timer is taken over, compare-and-set on the
revision when done) with another round: it reads the earliest ROUND timers, runs those that are due, and
stops at the first that is not, waking itself when that one is due instead of re-reading work that
waits for weeks. A timer whose handler fails is moved later (RETRY_SECONDS, doubling) rather than
blocking the ones behind it, and given up after MAX_ATTEMPTS with an error in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fhirlead.jobs import LEASE_SECONDS, POLL_SECONDS, ROUND, Jobs, JobWorker
from fhirlead.storage.observed import Written
from fhirlead.storage.port import UnitOfWork
from fhirlead.storage.records import Record, RecordConflict

log = logging.getLogger(__name__)

TIMERS = Jobs("care-rule-timer")
RETRY_SECONDS = 60.0
MAX_ATTEMPTS = 8
_DIGITS = 20


def timer_key(due_micros: int, rule: str, reference: str) -> str:
    return f"{due_micros:0{_DIGITS}d}|{rule}|{reference}"


def due_of(key: str) -> float:
    """The epoch seconds a timer's key says it is due at."""
    try:
        return int(key.partition("|")[0]) / 1_000_000
    except ValueError:
        return 0.0


async def arm(uow: UnitOfWork, due_micros: int, rule: str, reference: str, **details: Any) -> None:
    """A timer committed with `uow` (`details` are kept for the handler)."""
    await TIMERS.enqueue(uow, timer_key(due_micros, rule, reference), rule=rule, reference=reference, **details)


async def arm_now(records: Any, due_micros: int, rule: str, reference: str, **details: Any) -> None:
    """A timer written on its own (by the worker, which holds no unit of work)."""
    await records.put(TIMERS.kind, timer_key(due_micros, rule, reference),
                      {**details, "rule": rule, "reference": reference, "pending": True})


Fire = Callable[[Any, Record], Awaitable[None]]


class TimerWorker(JobWorker):
    """Runs the due timers (see the module doc); `fire(server, record)` does one timer's work."""

    def __init__(self, server: Any, fire: Fire, wakes: Callable[[Sequence[Written]], bool]) -> None:
        super().__init__(server, TIMERS, self._fire_key, wakes)
        self.fire = fire
        self._alarm: asyncio.TimerHandle | None = None

    async def _fire_key(self, server: Any, key: str) -> None:
        """JobWorker's handler: one timer by its key (this worker's `run_once` walks them in due order)."""
        record = await server.store.records.get(TIMERS.kind, key)
        if record is not None:
            await self.fire(server, record)

    def _wake_in(self, seconds: float) -> None:
        """Wake the loop when the next timer is due (the loop polls anyway every POLL_SECONDS)."""
        if seconds >= POLL_SECONDS:
            return
        if self._alarm is not None:
            self._alarm.cancel()
        self._alarm = asyncio.get_running_loop().call_later(max(seconds, 0.0), self.wake.set)

    async def run_once(self) -> int:
        records = self.server.store.records
        timers = await records.list(TIMERS.kind, limit=ROUND)
        done = 0
        for timer in timers:
            wait = due_of(timer.key) - time.time()
            if wait > 0:
                self._wake_in(wait)
                return done
            if self.stopping:
                return done
            if not timer.doc.get("pending"):
                continue
            try:
                await records.put(TIMERS.lease_kind, timer.key, {"owner": self.owner},
                                  expires=time.time() + LEASE_SECONDS, expected_rev=0)
            except RecordConflict:
                continue  # another process holds it
            try:
                try:
                    await self.fire(self.server, timer)
                except Exception as error:
                    await self._later(records, timer, error)
                with contextlib.suppress(RecordConflict):  # recorded again meanwhile: it runs again
                    await records.put(TIMERS.kind, timer.key, {"pending": False}, expected_rev=timer.rev,
                                      expires=time.time())
                done += 1
            finally:
                await records.delete(TIMERS.lease_kind, timer.key)
        if len(timers) == ROUND:
            self.wake.set()
        return done

    async def _later(self, records: Any, timer: Record, error: Exception) -> None:
        attempts = int(timer.doc.get("attempts") or 0) + 1
        rule, reference = timer.doc.get("rule", "?"), timer.doc.get("reference", "?")
        if attempts >= MAX_ATTEMPTS:
            log.error("care rule %s on %s failed %d times (%s); given up", rule, reference, attempts,
                      type(error).__name__)
            return
        log.warning("care rule %s on %s failed (%s); retried later", rule, reference, type(error).__name__)
        due = int((time.time() + RETRY_SECONDS * 2 ** (attempts - 1)) * 1_000_000)
        kept = {k: v for k, v in timer.doc.items() if k not in ("rule", "reference", "pending", "attempts")}
        await arm_now(records, due, str(rule), str(reference), attempts=attempts, **kept)
