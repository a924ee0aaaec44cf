"""Validation ahead of the writes, in a worker process, for `fhirlead load`.

A load holds one core (the GIL), and validation is ~45% of it (bench/README.md, "Speed, fifth pass"). A
worker forked from the loader once its server has started (so with the same validator, definitions from
the store included) takes the units the loader will write next and, for each, does what the transaction
will do before it validates: chooses the ids of the new resources, rewrites the placeholders, sets each
resource's id and meta.source (`TransactionWriter.plan`, `resolve_references`, `create_all`,
`update.prepared`); then validates every resource and sends back the ids and a digest of each valid
resource as it was validated. The loader writes the unit with those ids, and its validator
(`VouchingValidator`) skips a resource whose digest the worker sent. Anything else — a unit the worker
has not reached, a resource whose form depends on the store (conditional references, `ifNoneExist`,
PATCH) — the loader validates itself: the worker can save work, never change an outcome.

The worker's validator is the loader's at the fork; a unit that writes a StructureDefinition, ValueSet,
CodeSystem or SearchParameter may change the loader's (fhirlead/validation/live.py), so from that unit
on the loader stops the worker and validates everything itself (`AheadValidation.stop`).
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import multiprocessing
import os
import queue
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fhirlead import fhirjson, sources
from fhirlead.bundles.entries import Entry
from fhirlead.bundles.transaction import TransactionWriter
from fhirlead.errors import FhirError
from fhirlead.interaction.create import new_id
from fhirlead.validation.validator import Validator

WAIT_SECONDS = 1.0  # between looks at whether the worker is still there, while waiting for a verdict
COLLECT_EVERY = 100  # units between the worker's garbage collections (the loader: one per commit)
LARGEST = 16 << 20  # bytes: a larger unit is validated by the loader (not copied to the worker)


def digest(type_: str | None, resource: dict[str, Any]) -> bytes:
    """What the worker vouches for: the resource type it was checked as and its JSON text, hashed."""
    hashed = hashlib.blake2b(f"{type_}\n".encode(), digest_size=16)
    hashed.update(fhirjson.dumps(resource))
    return hashed.digest()


class VouchingValidator(Validator):
    """The loader's validator during a load: skips a resource the worker found valid in the same form."""

    def __init__(self, inner: Validator) -> None:
        self.schema, self.invariants, self.profiles = inner.schema, inner.invariants, inner.profiles
        self.vouched: set[bytes] = set()  # digests for the unit being written
        self.skipped = 0  # resources not validated here, because the worker had

    def check(self, resource: dict[str, Any], expected_type: str | None = None) -> None:
        if self.vouched and digest(expected_type, resource) in self.vouched:
            self.skipped += 1
            return
        super().check(resource, expected_type)


@dataclass
class Verdict:
    """The worker's result for one unit: the ids it chose (in the order the transaction takes them) and
    the digests of the resources it found valid."""

    seq: int
    ids: list[str]
    vouched: set[bytes]


def available() -> bool:
    """Whether a worker can help: another core to run on, and `fork` (Linux) to start it with the
    loader's validator as it is."""
    return (os.cpu_count() or 1) > 1 and sys.platform == "linux"


class AheadValidation:
    """The loader's side: offers units to the worker and takes its verdicts back.

    Units are numbered in the loader's order (`offer(seq, …)` with seq increasing). The loader waits for
    the verdict on a unit it offered (the worker is ahead unless validation is most of a load's work);
    the worker skips a unit the loader has passed without asking (one it found loaded already).
    """

    def __init__(self, validator: Validator, source: sources.Source | None) -> None:
        context = multiprocessing.get_context("fork")
        self._units: Any = context.Queue()
        self._verdicts: Any = context.Queue()
        self._reached = context.Value("q", -1, lock=False)  # the last seq the loader asked about
        self.process = context.Process(target=_work, name="fhirlead-load-validator", daemon=True,
                                       args=(validator, source, self._units, self._verdicts, self._reached,
                                             os.getpid()))
        self.process.start()
        self._offered: set[int] = set()  # offered, not yet asked about
        self._received: dict[int, Verdict] = {}
        self.running = True

    def offer(self, seq: int, build: Callable[[], list[Entry]], size: int) -> None:
        """Send a unit to the worker (its `build` is pickled: a file's bytes, or an NDJSON chunk's lines)."""
        if self.running and size <= LARGEST:
            self._units.put((seq, build))
            self._offered.add(seq)

    async def verdict(self, seq: int) -> Verdict | None:
        """The worker's verdict on unit `seq`, once it has one; None for a unit not offered or asked
        about before, and when the worker has stopped."""
        if not self.running or seq not in self._offered:
            return None
        self._reached.value = seq
        self._offered = {key for key in self._offered if key > seq}
        self._drain(block=False)
        if seq not in self._received:
            await asyncio.to_thread(self._wait_for, seq)
        found = self._received.pop(seq, None)
        for older in [key for key in self._received if key < seq]:
            del self._received[older]
        return found

    def _wait_for(self, seq: int) -> None:
        while seq not in self._received and self.process.is_alive():
            self._drain(block=True)

    def _drain(self, block: bool) -> None:
        try:
            while True:
                item = self._verdicts.get(timeout=WAIT_SECONDS) if block else self._verdicts.get_nowait()
                block = False
                self._received[item.seq] = item
        except queue.Empty:
            return

    def stop(self) -> None:
        """Stop the worker; the loader validates everything from now on."""
        if not self.running:
            return
        self.running = False
        self._units.put(None)
        self.process.join(WAIT_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        for channel in (self._units, self._verdicts):
            channel.cancel_join_thread()
            channel.close()
        self._received.clear()


def _work(validator: Validator, source: sources.Source | None, units: Any, verdicts: Any, reached: Any,
          loader: int) -> None:
    """The worker process: a verdict for each unit offered, in order, until None (or until the loader's
    process is gone: killed, it sends nothing more)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the loader's to handle: it stops the worker
    gc.freeze()  # what the fork brought: never to be collected here
    done = 0
    while (item := _next(units, loader)) is not None:
        seq, build = item
        if seq < reached.value:  # the loader has passed it without asking
            continue
        try:
            verdicts.put(asyncio.run(_validate(validator, source, seq, build())))
        except Exception:  # a unit that cannot be read or planned here: the loader says why
            verdicts.put(Verdict(seq, [], set()))
        done += 1
        if done % COLLECT_EVERY == 0:
            gc.collect()


def _next(units: Any, loader: int) -> Any:
    """The next unit offered; None once the loader says so or has gone."""
    while True:
        try:
            return units.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != loader:
                return None


class _NeedsStore(Exception):
    """The unit's form depends on what the store holds: left to the loader."""


class _Planner(TransactionWriter):
    """`TransactionWriter`'s planning without a store: a conditional reference cannot be resolved here."""

    async def resolve_conditional(self, reference: str) -> str:
        raise _NeedsStore()


async def _validate(validator: Validator, source: sources.Source | None, seq: int, entries: list[Entry]) -> Verdict:
    ids: list[str] = []
    if any(entry.conditional or entry.if_none_exist or entry.method == "PATCH" for entry in entries):
        return Verdict(seq, ids, set())
    changes = [entry for entry in entries if entry.method in ("POST", "PUT")]
    planner = _Planner(None, None, "", None, _recording(ids))  # type: ignore[arg-type]
    try:
        await planner.plan(changes)
        await planner.resolve_references(changes)
    except (_NeedsStore, FhirError):
        return Verdict(seq, [], set())
    vouched: set[bytes] = set()
    for entry in changes:
        resource = entry.resource
        target = planner.targets[entry.index].id_
        if resource is None:
            continue
        if entry.method == "POST":  # as TransactionWriter.create_all makes it
            resource["id"] = target
        elif resource.get("id") != target:  # update.prepared refuses it: the loader says why
            continue
        sources.stamp_source(source, resource)
        try:
            validator.check(resource, entry.type_)
        except FhirError:
            continue
        vouched.add(digest(entry.type_, resource))
    return Verdict(seq, ids, vouched)


def _recording(ids: list[str]) -> Iterator[str]:
    """New ids, each noted in `ids` as it is handed out."""
    while True:
        ids.append(new_id())
        yield ids[-1]
