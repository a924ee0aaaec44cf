"""Conformance resources written to the store take effect without a restart.

StructureDefinitions, ValueSets and CodeSystems written through the API (or `fhirlead load`) are laid
over the server's definitions (`Conformance` and `Terminology` overlays of the process-wide ones from
profiles/ and the R4 core): at start-up every one the store holds, then each write as it commits in
this process, and, for the other processes on the same MongoDB (DESIGN §6: caches per process,
invalidated by the version of what they were built from), every POLL_SECONDS what the store's history
shows changed since. A deleted one is forgotten (what profiles/ defines under the same URL shows
again). A profile compiled from a definition that changed is compiled again on its next use.

SearchParameters are followed by the same loop and handed to `fhirlead.search.live.LiveSearch`, which
swaps the server's search registry and extractor when they change (and, each poll, looks at which
re-indexing jobs are pending).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from fhirlead import fhirjson
from fhirlead.clock import micros, parse_instant
from fhirlead.storage.observed import Written
from fhirlead.storage.port import ResourceVersion, Store
from fhirlead.terminology import default_terminology

if TYPE_CHECKING:
    from fhirlead.search.live import LiveSearch
    from fhirlead.validation.validator import Validator

log = logging.getLogger(__name__)

KINDS = ("StructureDefinition", "ValueSet", "CodeSystem", "SearchParameter")
POLL_SECONDS = 5.0
SKEW_US = 60_000_000  # re-read this far back: another process's write may commit after a later one's time
PAGE = 500


async def changed_since(store: Store, kinds: Sequence[str], since_us: int | None
                        ) -> tuple[dict[tuple[str, str], ResourceVersion], int | None]:
    """The newest version (deletes included) of each resource of `kinds` written since `since_us` (all,
    when None; re-read SKEW_US further back), and the latest moment seen: what to pass next time."""
    since = since_us - SKEW_US if since_us is not None else None
    newest: dict[tuple[str, str], ResourceVersion] = {}
    for kind in kinds:
        cursor: str | None = None
        while True:
            page = await store.history(kind, None, since, PAGE, cursor)
            for version in page.versions:  # newest first
                newest.setdefault((version.type, version.id), version)
                moment = micros(parse_instant(version.last_updated))
                since_us = max(since_us or moment, moment)
            cursor = page.next_cursor
            if cursor is None:
                break
    return newest, since_us


class LiveDefinitions:
    """Keeps one server's validator in step with the conformance resources of its store."""

    def __init__(self, store: Store, validator: Validator, search: LiveSearch | None = None) -> None:
        self.store = store
        self.search = search  # the store's SearchParameters (None: not followed)
        self.conformance = validator.profiles.conformance
        self.terminology = validator.profiles.terminology
        self._held: dict[tuple[str, str], tuple[int, str | None, str | None]] = {}  # (type, id) -> version, url, ver
        self.changes = 0  # definitions applied since start-up: a validator or extractor built at another count differs
        self.listeners: list[Callable[[str, str, int, dict[str, Any] | None], None]] = []  # told each change
        self._since_us: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Everything the store holds now (or changed since the last call)."""
        newest, self._since_us = await changed_since(self.store, KINDS, self._since_us)
        for (kind, id_), version in newest.items():
            held = self._held.get((kind, id_))
            if held is None or held[0] < version.version:
                self.apply(kind, id_, version.version, fhirjson.loads(version.body) if version.body else None)
        if self.search is not None:
            self.search.apply()
            await self.search.refresh_jobs(self.store)

    def written(self, writes: Sequence[Written]) -> None:
        """A unit of work of this process committed: what it wrote of the conformance kinds applies now."""
        for write in writes:
            if write.type_ in KINDS:
                resource = write.resource
                version = _version_of(resource)
                self.apply(write.type_, write.id_, version, resource)
        if self.search is not None:
            self.search.apply()

    def apply(self, kind: str, id_: str, version: int, resource: dict[str, Any] | None) -> None:
        """Put in force a version of a conformance resource (None: it was deleted); a SearchParameter at
        the search's next `apply`."""
        self.changes += 1
        for listener in self.listeners:  # a validation worker applies the same (fhirlead/validation/ahead.py)
            listener(kind, id_, version, resource)
        if kind == "SearchParameter":
            self._held[(kind, id_)] = (version, None, None)
            if self.search is not None:
                self.search.hold(id_, resource)
            return
        previous = self._held.pop((kind, id_), None)
        if previous is not None and previous[1]:
            self._forget(kind, previous[1], previous[2])
        if resource is None:
            return
        url = resource.get("url")
        self._held[(kind, id_)] = (version, url if isinstance(url, str) else None, resource.get("version"))
        if not isinstance(url, str):
            return
        if kind == "StructureDefinition":
            self.conformance.add(resource)
        else:
            self.terminology.add(resource)

    def _forget(self, kind: str, url: str, version: str | None) -> None:
        if kind == "StructureDefinition":
            self.conformance.remove(url, str(version or ""))
            return
        self.terminology.remove(kind, url)
        underneath = default_terminology().held(kind, url)  # what profiles/ or the core defines shows again
        if underneath is not None:
            self.terminology.add(underneath)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.load()
            except Exception as error:  # a store hiccup: try again at the next poll
                log.warning("conformance resources not refreshed: %s", type(error).__name__)


def _version_of(resource: dict[str, Any] | None) -> int:
    meta = resource.get("meta") if resource else None
    try:
        return int(meta["versionId"]) if isinstance(meta, dict) else 0
    except (KeyError, TypeError, ValueError):
        return 0
