"""The storage port: what every backend (embedded SQLite, MongoDB) provides, and nothing more.

Everything above this port is backend-agnostic. A backend stores versioned resources with their full
history (deletes are versions too), keeps the search index entries of the current version beside each
resource, answers search queries given as the IR of `fhirlead.search`, and runs a unit of work
atomically (all of its writes land, or none do). Beside the resources it keeps `records`: small keyed
documents outside the FHIR API (`fhirlead.storage.records`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from fhirlead.errors import FhirError, Issue

if TYPE_CHECKING:
    from fhirlead.search.entries import IndexEntries
    from fhirlead.search.query import SearchQuery
    from fhirlead.storage.records import Record, Records  # which imports StoreError from here


@dataclass(frozen=True, slots=True)
class ResourceVersion:
    """One stored version of a resource.

    `body` is the JSON exactly as served (meta.versionId and meta.lastUpdated filled in), so reads
    can send it without parsing; it is None for a version that records a delete.
    """

    type: str
    id: str
    version: int
    last_updated: str
    method: str  # the interaction that produced it: POST, PUT, PATCH or DELETE
    body: bytes | None

    @property
    def deleted(self) -> bool:
        return self.body is None

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    @property
    def reference(self) -> str:
        return f"{self.type}/{self.id}"


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of versions, newest first, and the cursor of the page after it (None on the last)."""

    versions: list[ResourceVersion]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class SearchPage:
    """One page of a search: the matches, what `_include`/`_revinclude` added, and paging cursors."""

    matches: list[ResourceVersion]
    includes: list[ResourceVersion]
    total: int | None
    next_cursor: str | None
    previous_cursor: str | None


class StoreError(Exception):
    """A storage failure the caller can explain to a client."""


class VersionConflict(StoreError):
    """The resource's current version is not the one the writer expected (→ 409/412)."""

    def __init__(self, reference: str, expected: int, current: int | None) -> None:
        super().__init__(reference, expected, current)
        self.reference, self.expected, self.current = reference, expected, current


class StoreBusy(StoreError, FhirError):
    """A write lost a race with a concurrent transaction, or its commit's outcome stayed unknown: the
    request may succeed when repeated. Also a FhirError, so the HTTP layer answers it as it is (503
    with Retry-After, or 409) and never as an internal error. `written_nothing`: the unit of work was
    rolled back, so the server may run the interaction again itself (`fhirlead.api.dispatch`); False
    when the commit's outcome is unknown."""

    def __init__(self, diagnostics: str, status: int = 503, retry_after: int = 1,
                 written_nothing: bool = True) -> None:
        self.written_nothing = written_nothing
        transient = status == 503
        FhirError.__init__(self, status, [Issue("transient" if transient else "conflict", diagnostics)],
                           {"Retry-After": str(retry_after)} if transient else {})


NewResource = tuple[str, str, dict[str, Any], "IndexEntries"]  # type, id, resource, index entries


class UnitOfWork(Protocol):
    """Reads and writes that commit together. Reads see the unit's own earlier writes."""

    async def read(self, type_: str, id_: str) -> ResourceVersion | None: ...

    async def search(self, query: SearchQuery) -> SearchPage: ...

    async def write(
        self,
        type_: str,
        id_: str,
        resource: dict[str, Any] | None,
        entries: IndexEntries | None,
        method: str,
        expected_version: int | None = None,
    ) -> ResourceVersion:
        """Store a new current version (resource None = delete) and return it.

        The backend assigns meta.versionId (current + 1) and meta.lastUpdated into `resource`, stores
        it with its index entries and records the version in history. `expected_version` guards the
        write: the current version must equal it (0 = the resource must not exist or be deleted), or
        VersionConflict is raised.
        """
        ...

    async def create_many(self, items: list[NewResource], method: str) -> list[ResourceVersion]:
        """`write(type, id, resource, entries, method, expected_version=0)` for each item, in order, in
        one call: bulk ingest saves a round trip to the store per resource."""
        ...

    async def write_version(self, version: ResourceVersion, entries: IndexEntries | None) -> None:
        """Store `version` verbatim (its number, lastUpdated, method and body) as the resource's new
        current version, with `entries` as its index: how `fhirlead copy` moves whole histories between
        stores. VersionConflict when the resource already has this version or a newer one."""
        ...

    async def reindex(self, type_: str, id_: str, version: int, entries: IndexEntries) -> bool:
        """Replace the index entries of `type_/id_`'s current version with `entries`, without a new
        version (no history, no meta change): how a SearchParameter defined later reaches the resources
        written before it (`fhirlead.search.reindex`). Only while `version` is the current version and
        not a delete; False otherwise (nothing changed: a newer version was indexed when written).

        A Group's members are indexed one by one (`port.MemberRows`): `entries` is then the
        `GroupEntries` of the whole Group as `read` returns it, its `members` in that order, and each
        current member's entries are replaced with its own (False if their number differs)."""
        ...

    async def get_record(self, kind: str, key: str) -> Record | None:
        """A record as this unit sees it (its own `put_record`s included), read inside its transaction:
        what a write observer consults without waiting on another connection."""
        ...

    async def put_record(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        """Write a record (`store.records`; no expiry, its revision counted on) that commits, or is
        rolled back, with this unit's resources: a fact about them that must never outlive or predate
        them (`fhirlead load`'s journal of committed files)."""
        ...


class MemberRows(Protocol):
    """Group members one by one (storage/group_members.py): what every unit of work offers beside the
    above, and every store its reads (read_group_head, find_group_members, find_group_members_referring):
    a 100,000-member list changes by one member in constant time."""

    async def read_group_head(self, id_: str) -> ResourceVersion | None:
        """Group `id_`'s current version without `member` (as cheap as any read, whatever its size)."""
        ...

    async def find_group_members(self, id_: str, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
        """Its current members (a stable number, the member's JSON) whose `entity.reference` is one of
        `entities` (None: all), in order."""
        ...

    async def find_group_members_referring(self, id_: str, key: str, type_: str, target: str
                                           ) -> list[tuple[int, bytes]]:
        """Its current members whose index entries have reference parameter `key` pointing to
        `type_`/`target` (e.g. the members attributed to a provider), found through the index: as cheap
        at 100,000 members as at 100. Offered by the store (committed data), not by units of work."""
        ...

    async def change_group_members(
        self,
        id_: str,
        head: dict[str, Any],
        head_entries: IndexEntries | None,
        removed: Sequence[int],
        replaced: Sequence[tuple[int, dict[str, Any], IndexEntries]],
        added: Sequence[tuple[dict[str, Any], IndexEntries]],
        method: str,
        expected_version: int,
    ) -> ResourceVersion:
        """A new version of Group `id_`: `head` (meta set here, as `write` does) with the current members
        less `removed`, with `replaced` ones changed in place and `added` appended; `head_entries` None
        keeps the head's index as it is. VersionConflict unless `expected_version` is current. The
        version returned carries the head only as its body."""
        ...


class Store(Protocol):
    """A FHIR resource store. Reads outside a unit of work see committed data only."""

    records: Records  # available once open(); its writes are their own, never part of a unit of work

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, type_: str, id_: str) -> ResourceVersion | None:
        """The current version (possibly a delete), or None if the resource never existed."""
        ...

    async def vread(self, type_: str, id_: str, version: int) -> ResourceVersion | None: ...

    async def history(
        self,
        type_: str | None,
        id_: str | None,
        since_us: int | None,
        count: int,
        cursor: str | None,
        exclude_types: tuple[str, ...] = (),
    ) -> HistoryPage:
        """Versions newest first: of one resource, one type, or the whole system (type_ None), leaving
        out the versions of `exclude_types`."""
        ...

    async def search(self, query: SearchQuery) -> SearchPage: ...

    def all_versions(self) -> AsyncIterator[ResourceVersion]:
        """Every version of every resource (deletes too), in the order they were written."""
        ...

    def unit_of_work(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A unit of work: committed when the block exits normally, rolled back on any exception."""
        ...
