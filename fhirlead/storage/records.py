"""Records: small keyed documents the server keeps beside the resources (the storage port's second half).

Authorization state lives here (clients, users, signing keys, authorization codes, refresh-token
families, `jti` replay records, sign-in throttles, launch contexts): it must be shared by every server
process on one store (DESIGN.md §6), must never be reachable through the FHIR API, and must change
atomically (a code is redeemed once, a `jti` is seen once). Each record has a revision number for
compare-and-set and an optional expiry after which it reads as absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from fhirlead.storage.port import StoreError


@dataclass(frozen=True, slots=True)
class Record:
    """One record: `rev` counts its writes (1 for a new record); `expires` is epoch seconds or None."""

    kind: str
    key: str
    doc: dict[str, Any]
    rev: int
    expires: float | None


class RecordConflict(StoreError):
    """A conditional `put` found another revision than the one it expected (someone else won the race)."""

    def __init__(self, kind: str, key: str) -> None:
        super().__init__(f"record {kind}/{key} changed concurrently")
        self.kind, self.key = kind, key


class Records(Protocol):
    """Keyed documents per `kind`. Expired records behave exactly like absent ones."""

    async def get(self, kind: str, key: str) -> Record | None: ...

    async def put(
        self,
        kind: str,
        key: str,
        doc: dict[str, Any],
        *,
        expires: float | None = None,
        expected_rev: int | None = None,
    ) -> Record:
        """Write `doc` as the record's new revision and return it.

        `expected_rev` None writes unconditionally; 0 requires that no live record exists (an expired
        one counts as absent); n requires the live record's revision to be n. Otherwise RecordConflict
        is raised and nothing is written. The check and the write are one atomic step, also across
        processes sharing the store.
        """
        ...

    async def delete(self, kind: str, key: str) -> bool:
        """Remove the record; True if a live one was there."""
        ...

    async def list(self, kind: str, limit: int | None = None) -> list[Record]:
        """Every live record of `kind` (the first `limit` of them), ordered by key."""
        ...

    async def purge_expired(self) -> int:
        """Remove expired records (housekeeping); how many were removed."""
        ...
