"""MongoRecords: the `records` collection (`fhirlead.storage.records`), one document per record.

`_id` is `kind` + U+001F + `key`, so the primary key itself makes a record unique and every put is a
single-document write conditional on what it expects (`rev`, liveness): atomic on the server, across
processes, with no transaction. Records are written outside the units of work on purpose: a record
does not wait for (nor roll back with) a unit's resources.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from fhirlead.storage.records import Record, RecordConflict

ATTEMPTS = 5  # rounds of a put that keeps losing to writers removing or re-creating the record


class MongoRecords:
    """Records in one collection (`schema.RECORDS`) of the store's database."""

    def __init__(self, collection: Any) -> None:
        self._c = collection

    async def get(self, kind: str, key: str) -> Record | None:
        return live_record(await self._c.find_one({"_id": record_id(kind, key)}))

    async def put(
        self,
        kind: str,
        key: str,
        doc: dict[str, Any],
        *,
        expires: float | None = None,
        expected_rev: int | None = None,
    ) -> Record:
        fields = {"kind": kind, "key": key, "doc": doc, "expires": expires}
        if expected_rev is None:
            rev = await self._put_any(record_id(kind, key), fields)
        elif expected_rev == 0:
            rev = await self._create(record_id(kind, key), fields)
        else:
            rev = expected_rev + 1
            result = await self._c.update_one(
                _live({"_id": record_id(kind, key), "rev": expected_rev}, time.time()),
                {"$set": {**fields, "rev": rev}},
            )
            if result.matched_count == 0:
                raise RecordConflict(kind, key)
        return Record(kind, key, doc, rev, expires)

    async def _put_any(self, id_: str, fields: dict[str, Any]) -> int:
        """Upsert with `$inc`: the server numbers the revision. Two upserts of a new `_id` at once can
        fail with a duplicate key (older servers do not retry it themselves); the retry updates."""
        for _ in range(ATTEMPTS):
            try:
                found = await self._c.find_one_and_update(
                    {"_id": id_}, {"$set": fields, "$inc": {"rev": 1}},
                    upsert=True, return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                continue
            return int(found["rev"])
        raise RecordConflict(fields["kind"], fields["key"])

    async def _create(self, id_: str, fields: dict[str, Any]) -> int:
        """Insert; if the `_id` is taken by an expired record, replace that one provided it is still the
        revision we read (revisions go on counting, so a stale writer cannot mistake it for the old one)."""
        for _ in range(ATTEMPTS):
            try:
                await self._c.insert_one({"_id": id_, **fields, "rev": 1})
                return 1
            except DuplicateKeyError:
                pass
            found = await self._c.find_one({"_id": id_}, {"rev": 1, "expires": 1})
            if found is None:
                continue  # removed since the insert failed: insert again
            if _is_live(found, time.time()):
                break
            rev = int(found["rev"]) + 1
            result = await self._c.replace_one({"_id": id_, "rev": found["rev"]}, {**fields, "rev": rev})
            if result.matched_count == 1:
                return rev
        raise RecordConflict(fields["kind"], fields["key"])

    async def delete(self, kind: str, key: str) -> bool:
        result = await self._c.delete_one(_live({"_id": record_id(kind, key)}, time.time()))
        return result.deleted_count == 1

    async def purge_expired(self) -> int:
        result = await self._c.delete_many({"expires": {"$lte": time.time()}})
        return int(result.deleted_count)

    async def list(self, kind: str, limit: int | None = None) -> list[Record]:
        cursor = self._c.find(_live({"kind": kind}, time.time())).sort([("key", 1)])
        if limit is not None:
            cursor = cursor.limit(limit)
        return [_record(found) for found in await cursor.to_list(None)]


def record_id(kind: str, key: str) -> str:
    return f"{kind}\x1f{key}"


def _live(filter_: dict[str, Any], now: float) -> dict[str, Any]:
    """`filter_` narrowed to records not expired at `now`. Spelled `$and` of `$or` with `$eq`: nx-27017
    (a test backend) updates some other document for a top-level `$or` beside `_id`, and ignores a bare
    `None` inside `$or`; MongoDB reads both spellings alike."""
    return {"$and": [filter_, {"$or": [{"expires": {"$eq": None}}, {"expires": {"$gt": now}}]}]}


def _is_live(found: dict[str, Any], now: float) -> bool:
    return found.get("expires") is None or found["expires"] > now


def _record(found: dict[str, Any]) -> Record:
    return Record(found["kind"], found["key"], found["doc"], int(found["rev"]), found.get("expires"))


def live_record(found: dict[str, Any] | None) -> Record | None:
    """A found record document as a Record, or None when absent or expired."""
    return _record(found) if found is not None and _is_live(found, time.time()) else None
