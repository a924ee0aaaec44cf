"""Validation ahead of the writes, in a worker process (`fhirlead load`, and transactions in `fhirlead serve`).

A process holds one core (the GIL), and validation is ~45% of a Bundle's work (bench/README.md, "Speed,
fifth pass"). A worker forked once the server has started (so with the same validator and search
parameters, the store's included) takes Bundles and NDJSON chunks ("units") before they are written and,
for each, does what the transaction will do before it validates: chooses the ids of the new resources,
rewrites the placeholders, sets each resource's id and meta.source (`TransactionWriter.plan`,
`resolve_references`, `create_all`, `update.prepared`); then validates every resource (and, if asked,
extracts its index entries) and sends back the ids and a digest of each valid resource as it was
validated. The transaction is written with those ids, and `interaction.incoming.prepare` neither validates
nor indexes again a resource whose digest the worker sent (`AheadValidation.prepared`). Anything else — a
unit the worker has not reached, a resource whose form depends on the store (conditional references,
`ifNoneExist`, PATCH) — is prepared as before: the worker can save work, never change an outcome.

Definitions that come into force later (StructureDefinitions, ValueSets, CodeSystems, SearchParameters:
fhirlead/validation/live.py) are sent to the worker in order with the units, and each verdict carries the
count of changes it was made under; it is used only while the server's count is the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import multiprocessing
import os
import queue
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhirlead import fhirjson, sources
from fhirlead.bundles.entries import ORDER, Entry
from fhirlead.bundles.transaction import TransactionWriter
from fhirlead.errors import FhirError
from fhirlead.interaction.create import new_id
from fhirlead.search.entries import IndexEntries

if TYPE_CHECKING:
    from fhirlead.server import Server

WAIT_SECONDS = 1.0  # between looks at whether the worker is still there
COLLECT_EVERY = 100  # units between the worker's garbage collections
LARGEST = 16 << 20  # bytes: a larger unit is validated where it is written (not copied to the worker)


def digest(type_: str | None, resource: dict[str, Any]) -> bytes:
    """What the worker vouches for: the resource type it was checked as and its JSON text, hashed."""
    hashed = hashlib.blake2b(f"{type_}\n".encode(), digest_size=16)
    hashed.update(fhirjson.dumps(resource))
    return hashed.digest()


@dataclass
class Verdict:
    """The worker's result for one unit: the ids it chose (in the order the transaction takes them), the
    digests of the resources it found valid (with their index entries, when asked to extract them), and
    the count of definition changes it had applied."""

    seq: int
    ids: list[str]
    vouched: dict[bytes, IndexEntries | None]
    changes: int = 0


@asynccontextmanager
async def vouched(ahead: AheadValidation | None, seq: int | None) -> AsyncIterator[Iterator[str] | None]:
    """Wait for the worker's verdict on unit `seq`; inside the block, `prepared` finds what the worker
    vouched for. Gives the ids the worker chose, for the transaction to take (None: no verdict)."""
    verdict = await ahead.verdict(seq) if ahead else None
    if verdict is None or ahead is None:
        yield None
        return
    with ahead.vouching(verdict):
        yield iter(verdict.ids)


def available() -> bool:
    """Whether a worker can help: another core to run on, and `fork` (Linux) to start it with the
    server's validator as it is."""
    return (os.cpu_count() or 1) > 1 and sys.platform == "linux"


class AheadValidation:
    """The server's side: offers units to the worker and takes its verdicts back (`verdict`).

    `ordered` (`fhirlead load`): units are asked about in the order offered, and the worker skips a unit
    older than the last one asked about (one the loader found loaded already and did not ask about).
    """

    def __init__(self, server: Server, ordered: bool = False) -> None:
        context = multiprocessing.get_context("fork")
        self._units: Any = context.Queue()
        self._verdicts: Any = context.Queue()
        self._reached = context.Value("q", -1, lock=False)  # the last seq asked about (ordered)
        self._ordered = ordered
        self.process = context.Process(target=_work, name="fhirlead-validator", daemon=True,
                                       args=(server, self._units, self._verdicts, self._reached if ordered else None,
                                             os.getpid()))
        self.process.start()
        self._loop = asyncio.get_running_loop()
        self._futures: dict[int, asyncio.Future[Verdict | None]] = {}
        self._next_seq = 0
        self.running = True
        self._live = server.live
        self._vouched: dict[tuple[bytes, int], list[Any]] = {}  # (digest, changes) -> [units, entries or None]
        self.skipped = 0  # resources validated by the worker, not by the server
        if server.live is not None:
            server.live.listeners.append(self._forward)
        self._reader = threading.Thread(target=self._read, name="fhirlead-validator-verdicts", daemon=True)
        self._reader.start()

    def offer(self, build: Callable[[], list[Entry]], size: int, source: sources.Source | None = None,
              extract: bool = False) -> int | None:
        """Send a unit to the worker (its `build` is pickled: a Bundle's bytes, or an NDJSON chunk's lines);
        the number to ask its verdict by, or None when it is not sent. `extract`: the worker extracts
        the index entries too (where the server's own core is the limit, not the worker's)."""
        if not self.running or size > LARGEST:
            return None
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        self._futures[seq] = self._loop.create_future()
        self._units.put(("unit", seq, build, source, extract))
        return seq

    @contextmanager
    def vouching(self, verdict: Verdict) -> Iterator[None]:
        """While the unit the verdict is about is written. Digests are content: concurrent transactions
        may share them."""
        keys = [((key, verdict.changes), entries) for key, entries in verdict.vouched.items()]
        for key, entries in keys:
            self._vouched.setdefault(key, [0, entries])[0] += 1
        try:
            yield
        finally:
            for key, _ in keys:
                held = self._vouched[key]
                held[0] -= 1
                if held[0] <= 0:
                    del self._vouched[key]

    def prepared(self, resource: dict[str, Any], type_: str) -> tuple[bool, IndexEntries | None]:
        """Whether the worker found `resource`, as it is now and under the definitions in force now,
        valid as a `type_`; and its index entries if the worker extracted them."""
        if not self._vouched:
            return False, None
        held = self._vouched.get((digest(type_, resource), self._live.changes if self._live else 0))
        if held is None:
            return False, None
        self.skipped += 1
        return True, held[1]

    async def verdict(self, seq: int | None) -> Verdict | None:
        """The worker's verdict on unit `seq` once it has one; None for a unit not offered or asked about
        before, and when the worker has stopped."""
        future = self._futures.get(seq) if seq is not None else None
        if future is None:
            return None
        if self._ordered:
            self._reached.value = seq
            for older in [key for key in self._futures if key < seq]:
                del self._futures[older]
        try:
            return await future
        finally:
            self._futures.pop(seq, None)  # type: ignore[arg-type]

    def discard(self, seq: int | None) -> None:
        """A unit offered whose verdict will not be asked for (its request failed first)."""
        future = self._futures.pop(seq, None) if seq is not None else None
        if future is not None:
            future.cancel()

    def _forward(self, kind: str, id_: str, version: int, resource: dict[str, Any] | None) -> None:
        if self.running:
            self._units.put(("apply", kind, id_, version, resource))

    def _read(self) -> None:
        """The verdicts, as they come, to the futures waiting for them (on the event loop)."""
        while True:
            try:
                item = self._verdicts.get(timeout=WAIT_SECONDS)
            except queue.Empty:
                if self.process.is_alive():
                    continue
                item = None
            except (OSError, EOFError, ValueError):  # closed by stop
                item = None
            if item is None:
                self._call(self._end)
                return
            self._call(self._resolve, item)

    def _call(self, function: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nothing waits any more
            self._loop.call_soon_threadsafe(function, *args)

    def _resolve(self, verdict: Verdict) -> None:
        future = self._futures.get(verdict.seq)
        if future is not None and not future.done():
            future.set_result(verdict)

    def _end(self) -> None:
        self.running = False
        for future in self._futures.values():
            if not future.done():
                future.set_result(None)

    def stop(self) -> None:
        """Stop the worker; everything is validated where it is written from now on."""
        if not self.process.is_alive() and not self.running:
            return
        self.running = False
        self._units.put(None)
        self.process.join(WAIT_SECONDS)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self._reader.join(2 * WAIT_SECONDS)
        self._end()
        self._vouched.clear()
        for channel in (self._units, self._verdicts):
            channel.cancel_join_thread()
            channel.close()


def _work(server: Server, units: Any, verdicts: Any, reached: Any, parent: int) -> None:
    """The worker process (`server`: its copy of the server's objects): a verdict for each unit offered,
    in order, until None (or until the server's process is gone: killed, it sends nothing more)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle: it stops the worker
    gc.freeze()  # what the fork brought: never to be collected here
    live = server.live
    if live is not None:
        live.listeners = []  # the server's forwarding, copied by the fork: not for this process
    done = 0
    while (item := _next(units, parent)) is not None:
        if item[0] == "apply":
            if live is not None:
                live.apply(*item[1:])
                if live.search is not None:
                    live.search.apply()
            continue
        _, seq, build, source, extract = item
        if reached is not None and seq < reached.value:  # the loader has passed it without asking
            continue
        changes = live.changes if live is not None else 0
        try:
            verdicts.put(asyncio.run(_validate(server, source, seq, build(), changes, extract)))
        except Exception:  # a unit that cannot be read or planned here: its writer says why
            verdicts.put(Verdict(seq, [], {}, changes))
        done += 1
        if done % COLLECT_EVERY == 0:
            gc.collect()
    verdicts.put(None)


def _next(units: Any, parent: int) -> Any:
    """The next message; None once the server says so or has gone."""
    while True:
        try:
            return units.get(timeout=WAIT_SECONDS)
        except queue.Empty:
            if os.getppid() != parent:
                return None


def plannable(entries: list[Entry]) -> bool:
    """Whether the worker can make the entries' resources as the transaction will, as far as the entries
    themselves say (a conditional reference inside a resource is found while planning)."""
    return not any(entry.conditional or entry.if_none_exist or entry.method == "PATCH" for entry in entries)


class _NeedsStore(Exception):
    """The unit's form depends on what the store holds: left to its writer."""


class _Planner(TransactionWriter):
    """`TransactionWriter`'s planning without a store: a conditional reference cannot be resolved here."""

    async def resolve_conditional(self, reference: str) -> str:
        raise _NeedsStore()


async def _validate(server: Server, source: sources.Source | None, seq: int, entries: list[Entry],
                    changes: int, extract: bool) -> Verdict:
    ids: list[str] = []
    if not plannable(entries):
        return Verdict(seq, [], {}, changes)
    writes = [entry for entry in sorted(entries, key=lambda entry: ORDER[entry.method])  # as transaction.write
              if entry.method in ("POST", "PUT")]
    planner = _Planner(None, None, "", None, _recording(ids))  # type: ignore[arg-type]
    try:
        await planner.plan(writes)
        await planner.resolve_references(writes)
    except (_NeedsStore, FhirError):
        return Verdict(seq, [], {}, changes)
    vouched: dict[bytes, IndexEntries | None] = {}
    for entry in writes:
        resource = entry.resource
        target = planner.targets[entry.index].id_
        if resource is None:
            continue
        if entry.method == "POST":  # as TransactionWriter.create_all makes it
            resource["id"] = target
        elif resource.get("id") != target:  # update.prepared refuses it: the writer says why
            continue
        sources.stamp_source(source, resource)
        try:
            server.validator.check(resource, entry.type_)
        except FhirError:
            continue
        vouched[digest(entry.type_, resource)] = server.extractor.extract(resource) if extract else None
    return Verdict(seq, ids, vouched, changes)


def _recording(ids: list[str]) -> Iterator[str]:
    """New ids, each noted in `ids` as it is handed out."""
    while True:
        ids.append(new_id())
        yield ids[-1]
