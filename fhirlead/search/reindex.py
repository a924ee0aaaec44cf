"""Re-indexing: resources written before a SearchParameter was defined or changed get its index entries
(https://hl7.org/fhir/R4/searchparameter.html; DESIGN §7: a durable job, recorded in the same commit as
its cause, run by a worker in every `fhirlead serve`, resumable).

**The write observer** (registered through the plugin registry by `Server.start`) looks at every unit
of work that wrote SearchParameters: it holds each to `fhirlead.search.admission` (a refusal rolls the
unit back with a 400), then compares what decides its index entries (code, type, base, expression,
components, in force or not) with what the store last re-indexed for it (a record of kind MARKS, key the
SearchParameter's id). When that changed it enqueues, in the same unit of work, one job per resource type
of its bases (kind `search-reindex`, key the type, with the codes it is for and a fresh `token`), and
updates the mark. A retired or deleted one whose url is one of the server's own (R4, profiles/) brings that
one back: its types are re-indexed too. At start-up (`catch_up`) SearchParameters in force that have no
current mark (stored before this existed, or copied in) are enqueued the same way.

**The job** (`handle`, run by a `JobWorker`) first waits until every server has had time to take the
SearchParameter into force (SETTLE_SECONDS on a shared store, two polls of `fhirlead.validation.live`;
LOCAL_SETTLE_SECONDS on SQLite, for writes in flight in this process), so no resource can be written
afterwards with entries from the old definitions. It then pages through the type's current resources
in storage order (PAGE at a time, GROUP_PAGE Groups), extracts each one's entries with the server's
extractor and replaces them without a new version (`UnitOfWork.reindex`; a resource changed meanwhile
is read again). After each page it records its progress (kind PROGRESS, key the type: the token, the
paging cursor, the last id done, how many of how many): a run does SLICE_SECONDS of work and gives its
lease back, and the next run, in this process or another, after a restart too, continues from there.
A job enqueued again meanwhile (another SearchParameter on the type) has a new token: it starts over.

**While it runs** a search on one of its parameters may leave out older resources: the searchset then
carries a warning OperationOutcome (`fhirlead.search.live.still_indexing`), and the log says when each
type starts and finishes and how many resources it re-indexed.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fhirlead import fhirjson
from fhirlead.errors import FhirError
from fhirlead.jobs import Jobs, JobWorker
from fhirlead.search import admission
from fhirlead.search.query import SearchQuery
from fhirlead.search.registry import base_registry
from fhirlead.storage.observed import WriteObserver, Written
from fhirlead.storage.port import ResourceVersion, UnitOfWork

if TYPE_CHECKING:
    from fhirlead.plugins import OperationRegistry

log = logging.getLogger(__name__)

JOBS = Jobs("search-reindex")  # key: resource type; doc: pending, token, params (codes), since (epoch s)
PROGRESS = "search-reindex-progress"  # key: resource type; doc: token, cursor, last, done, total
MARKS = "search-parameter-indexed"  # key: SearchParameter id; doc: signature (None: not in force), url
PAGE = 100
GROUP_PAGE = 5  # a Group may have 100,000 members: a page of them is read and indexed whole
SLICE_SECONDS = 30.0  # work per run, well within the lease (fhirlead.jobs.LEASE_SECONDS)
SETTLE_SECONDS = 11.0  # a shared store: two polls (fhirlead.validation.live.POLL_SECONDS) and a second
LOCAL_SETTLE_SECONDS = 1.0  # SQLite (one process): writes that took the old extractor have committed
RETRIES = 3


def register(registry: OperationRegistry) -> None:
    """The observer and the worker, through the plugin registry (the core's own, not an entry point)."""
    registry.add_write_observer(observer)
    registry.add_worker(worker)


# -- the write observer ------------------------------------------------------------------------------

def observer(server: Any) -> WriteObserver:
    async def admit_and_enqueue(uow: UnitOfWork, written: Sequence[Written]) -> None:
        changed = [write for write in written if write.type_ == "SearchParameter"]
        for write in changed:
            if write.resource is not None:
                await admission.check(uow, write.id_, write.resource)
        for write in changed:
            await enqueue_for(uow, write.id_, write.resource)

    return admit_and_enqueue


def signature(resource: dict[str, Any] | None) -> list[Any] | None:
    """What decides a SearchParameter's index entries, as the mark stores it (None: not in force)."""
    if resource is None or not admission.in_force(resource):
        return None
    return admission.index_signature(resource)


async def enqueue_for(uow: UnitOfWork, id_: str, resource: dict[str, Any] | None) -> None:
    """Jobs for the types SearchParameter `id_` (as written, None: deleted) needs re-indexed, if any."""
    mark = await uow.get_record(MARKS, id_)
    before = mark.doc.get("signature") if mark is not None else None
    now = signature(resource)
    if now == before and mark is not None:
        return
    registry = base_registry()
    targets: dict[str, set[str]] = {}
    url = resource.get("url") if resource is not None else (mark.doc.get("url") if mark is not None else None)
    if resource is not None and now is not None:
        for type_ in admission.concrete_bases(tuple(resource.get("base") or ()), registry):
            targets.setdefault(type_, set()).add(str(resource.get("code")))
    elif before is not None and isinstance(url, str):  # the server's own one under this url is back
        own = registry.by_url(url)
        if own is not None and own.indexed:
            for type_ in admission.concrete_bases(own.base, registry):
                targets.setdefault(type_, set()).add(own.code)
    since = time.time()
    for type_, codes in sorted(targets.items()):
        job = await uow.get_record(JOBS.kind, type_)
        if job is not None and job.doc.get("pending"):
            codes = codes | set(job.doc.get("params") or ())
        await JOBS.enqueue(uow, type_, token=uuid.uuid4().hex, params=sorted(codes), since=since)
    await uow.put_record(MARKS, id_, {"signature": now, "url": url})


async def catch_up(server: Any) -> int:
    """Enqueue the re-indexing of SearchParameters in force without a current mark (start-up); how many."""
    live = getattr(server, "live", None)
    search = getattr(live, "search", None)
    if search is None:
        return 0
    stale = []
    for id_, resource in search.held():
        mark = await server.store.records.get(MARKS, id_)
        if mark is None or mark.doc.get("signature") != signature(resource):
            stale.append((id_, resource))
    if stale:
        async with server.store.unit_of_work() as uow:
            for id_, resource in stale:
                await enqueue_for(uow, id_, resource)
        log.info("re-indexing enqueued for %d stored SearchParameters not indexed yet", len(stale))
    return len(stale)


# -- the worker ------------------------------------------------------------------------------------

def worker(server: Any) -> JobWorker:
    """Runs the re-indexing jobs: woken by commits that wrote SearchParameters."""
    return JobWorker(server, JOBS, handle, lambda written: any(w.type_ == "SearchParameter" for w in written))


def settle_seconds(server: Any) -> float:
    return LOCAL_SETTLE_SECONDS if str(server.settings.store).startswith("sqlite:") else SETTLE_SECONDS


async def handle(server: Any, type_: str) -> float | None:
    """One run of the job of `type_` (module doc): None when it is done, else when to run it again."""
    records = server.store.records
    job = await records.get(JOBS.kind, type_)
    if job is None or not job.doc.get("pending"):
        return None
    wait = float(job.doc.get("since") or 0) + settle_seconds(server) - time.time()
    if wait > 0:
        return wait
    token = str(job.doc.get("token") or "")
    params = ", ".join(job.doc.get("params") or ()) or "?"
    found = await records.get(PROGRESS, type_)
    state: dict[str, Any]
    if found is not None and found.doc.get("token") == token:
        state = dict(found.doc)
        log.info("re-indexing %s for %s: resumed after %s, %d of %s done", type_, params, state.get("last"),
                 state.get("done", 0), state.get("total"))
    else:
        total = (await server.store.search(SearchQuery((type_,), count=0, total="accurate"))).total
        state = {"token": token, "cursor": None, "last": None, "done": 0, "total": total}
        log.info("re-indexing %s for %s: started, %s resources", type_, params, total)
    deadline = time.monotonic() + SLICE_SECONDS
    while True:
        query = SearchQuery((type_,), count=GROUP_PAGE if type_ == "Group" else PAGE, cursor=state["cursor"],
                            total="none")
        try:
            page = await server.store.search(query)
        except FhirError:  # a cursor this version of the server cannot read: start over
            if state["cursor"] is None:
                raise
            state.update(cursor=None, last=None, done=0)
            continue
        await reindex_versions(server, page.matches)
        state["done"] += len(page.matches)
        if page.matches:
            state["last"] = page.matches[-1].id
        state["cursor"] = page.next_cursor
        if page.next_cursor is None:
            await records.delete(PROGRESS, type_)
            log.info("re-indexing %s for %s: finished, %d resources", type_, params, state["done"])
            current = await records.get(JOBS.kind, type_)
            search = getattr(getattr(server, "live", None), "search", None)
            if search is not None and (current is None or current.doc.get("token") == token):
                search.finished(type_)  # searches stop warning (other servers: at their next poll)
            return None
        await records.put(PROGRESS, type_, state)
        if time.monotonic() > deadline:
            return 0.0
        await asyncio.sleep(0)  # requests go first


async def reindex_versions(server: Any, versions: Sequence[ResourceVersion]) -> None:
    """Replace the index entries of `versions` (current ones) with those of the server's extractor; one
    changed meanwhile is read again (a Group whose members changed one by one must be done again)."""
    extractor = server.extractor
    pending = [(v, extractor.extract(fhirjson.loads(v.body))) for v in versions if v.body is not None]
    for _ in range(RETRIES):
        if not pending:
            return
        changed: list[ResourceVersion] = []
        async with server.store.unit_of_work() as uow:
            for version, entries in pending:
                if not await uow.reindex(version.type, version.id, version.version, entries):
                    changed.append(version)
        pending = []
        for version in changed:
            current = await server.store.read(version.type, version.id)
            if current is not None and current.body is not None:
                pending.append((current, extractor.extract(fhirjson.loads(current.body))))
    if pending:
        log.warning("re-indexing: %d %s resources changed on every try and were left as written", len(pending),
                    pending[0][0].type)
