"""SearchParameters written to the store are in force without a restart
(https://hl7.org/fhir/R4/searchparameter.html).

`LiveSearch` holds one server's view of the store's SearchParameters in force (every status but
`retired`; `fhirlead.search.admission` decides what may be stored). `fhirlead.validation.live`'s
`LiveDefinitions` feeds it, with its one poll loop: the store's SearchParameters at start-up, this
process's writes as they commit, other processes' writes at the next poll (DESIGN §6). When what it
holds changes, it builds a new `SearchRegistry` (R4 + profiles/ + the store's, `SearchRegistry.layered`)
and `Extractor` and swaps both onto the server in one step, between two awaits: a request that has
already taken `server.search` or `server.extractor` finishes with the objects it took (each is
immutable once built, apart from the extractor's per-type plan cache), and every later one sees the new
pair. Derived values cached from the registry (`server.memo`: the CapabilityStatement, the OpenAPI
document) are dropped with the swap. Nothing else keeps the server's registry or extractor: the audit
trail extracts through `ServerExtractor`, the measure repository reads `server.search` at each search.

Existing resources get index entries for a new or changed parameter from a durable job
(`fhirlead.search.reindex`); `reindexing` says, per resource type, which parameters' jobs are still
pending, so a search on them carries a warning (`still_indexing`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from fhirlead import fhirjson
from fhirlead.errors import Issue
from fhirlead.search import derived
from fhirlead.search.admission import concrete_bases, in_force, index_signature
from fhirlead.search.extract import Extractor
from fhirlead.search.registry import SearchRegistry
from fhirlead.search.reindex import JOBS as REINDEX_JOBS
from fhirlead.storage.port import Store
from fhirlead.validation.live import changed_since

log = logging.getLogger(__name__)

KIND = "SearchParameter"
MEMO_KEYS = frozenset({"capabilities", "openapi"})  # server.memo entries derived from the registry
POLL_SECONDS = 5.0  # how often a process without a server (the audit writer) looks again


def build(stored: Iterable[dict[str, Any]]) -> tuple[SearchRegistry, Extractor]:
    """The registry and extractor with `stored` SearchParameters (in force, in order) over the server's."""
    usable = []
    for resource in stored:
        if resource.get("url") in derived.DERIVED:  # refused at write; never let one in from elsewhere
            log.warning("stored SearchParameter %s ignored: a derived parameter's url", resource.get("url"))
            continue
        usable.append(resource)
    registry = SearchRegistry.layered(usable)
    return registry, Extractor(registry)


class LiveSearch:
    """The store's SearchParameters in force on one server (module doc)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self._held: dict[str, dict[str, Any]] = {}  # SearchParameter id -> the resource, while in force
        self._changed = False
        self.reindexing: dict[str, frozenset[str]] = {}  # resource type -> codes its pending job is for

    def held(self) -> list[tuple[str, dict[str, Any]]]:
        """(id, resource) of the store's SearchParameters in force, by id."""
        return sorted(self._held.items())

    def hold(self, id_: str, resource: dict[str, Any] | None) -> None:
        """The newest version of SearchParameter `id_` (None: deleted); takes effect at `apply()`."""
        previous = self._held.pop(id_, None)
        if resource is not None and in_force(resource):
            resource = self._held[id_] = fhirjson.loads(fhirjson.dumps(resource))  # its own copy, kept for long
            if previous is None or index_signature(previous) != index_signature(resource):
                self._note_reindexing(resource)
        if self._held.get(id_) != previous:
            self._changed = True

    def apply(self) -> None:
        """Swap the server's registry and extractor when what is held changed since the last call."""
        if not self._changed:
            return
        self._changed = False
        stored = [resource for _, resource in self.held()]
        registry, extractor = build(stored)
        server = self.server
        server.search, server.extractor = registry, extractor  # one step: no request sees a mixed pair
        for key in [key for key in server.memo if isinstance(key, tuple) and key and key[0] in MEMO_KEYS]:
            del server.memo[key]
        log.info("search parameters in force: the server's and %d from the store", len(stored))

    def _note_reindexing(self, resource: dict[str, Any]) -> None:
        """A new or changed parameter: its types are being re-indexed (until the next look at the jobs)."""
        registry = self.server.search
        code = resource.get("code")
        bases = resource.get("base") or ()
        if not isinstance(code, str):
            return
        for type_ in concrete_bases(tuple(bases), registry):
            self.reindexing[type_] = self.reindexing.get(type_, frozenset()) | {code}

    async def refresh_jobs(self, store: Store) -> None:
        """What the store's pending re-indexing jobs are for (each poll)."""
        jobs = await store.records.list(REINDEX_JOBS.kind, limit=10_000)
        self.reindexing = {job.key: frozenset(job.doc.get("params") or ()) for job in jobs if job.doc.get("pending")}

    def finished(self, type_: str) -> None:
        self.reindexing.pop(type_, None)


def still_indexing(server: Any, types: tuple[str, ...], used: list[tuple[str, str]]) -> list[Issue]:
    """Warnings for a search that uses a parameter whose re-indexing job is still pending on one of
    `types`: resources written before the parameter was defined or changed may be missing."""
    live = getattr(server, "live", None)
    search: LiveSearch | None = getattr(live, "search", None)
    if search is None or not search.reindexing:
        return []
    codes = set()
    for name, raw in used:
        if name == "_sort":
            codes |= {key.strip().lstrip("-") for key in raw.split(",")}
        elif not name.startswith("_"):
            codes.add(name.partition(":")[0].partition(".")[0])
    issues = []
    for type_ in types:
        pending = sorted(search.reindexing.get(type_, frozenset()) & codes)
        if pending:
            issues.append(Issue(
                "incomplete", f"{type_} resources are still being re-indexed for the search parameter(s) "
                f"{', '.join(pending)}: those written before it was defined or changed may be missing from the "
                "results until it finishes", "warning", tuple(pending)))
    return issues


class ServerExtractor:
    """The server's extractor as it is at each call (`server.extractor` is swapped when SearchParameters
    change): for what lives as long as the server, such as the audit trail."""

    def __init__(self, server: Any) -> None:
        self._server = server

    def extract(self, resource: dict[str, Any]) -> Any:
        return self._server.extractor.extract(resource)


class StoreSearchParameters:
    """The store's SearchParameters for code that runs without a server (`fhirlead copy`, the audit
    writer process): read in full once, then what changed since, at most every POLL_SECONDS."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._held: dict[str, tuple[int, dict[str, Any] | None]] = {}
        self._since_us: int | None = None
        self._checked = 0.0
        self.extractor: Extractor | None = None

    async def current(self, *, force: bool = False) -> Extractor:
        """The extractor for the store's SearchParameters (looked at again when POLL_SECONDS passed)."""
        if self.extractor is not None and not force and time.monotonic() - self._checked < POLL_SECONDS:
            return self.extractor
        self._checked = time.monotonic()
        changed = self.extractor is None
        newest, self._since_us = await changed_since(self.store, (KIND,), self._since_us)
        for (_, id_), version in newest.items():
            held = self._held.get(id_)
            if held is None or held[0] < version.version:
                self._held[id_] = (version.version, fhirjson.loads(version.body) if version.body else None)
                changed = True
        if changed or self.extractor is None:
            stored = [resource for _, (_, resource) in sorted(self._held.items())
                      if resource is not None and in_force(resource)]
            self.extractor = build(stored)[1]
        return self.extractor
