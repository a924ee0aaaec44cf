"""The few collection calls the MongoDB backend makes, bound to one database and (optionally) one
client session, so reads inside a unit of work see its own writes and nothing else changes shape.

Only this module and `store` touch the driver's API: the calls used are `find` (with sort, limit and
projection), `aggregate` (searches: see `pipeline`), `find_one`, `count_documents`, `insert_one`,
`insert_many`, `update_one` (upserting only records), `delete_many` and `find_one_and_update` — a
surface a test stand-in can provide exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fhirlead.storage.group_members import assemble
from fhirlead.storage.mongo import documents
from fhirlead.storage.mongo.schema import BODIES, COUNTERS, GROUP_MEMBERS, HISTORY, RECORDS, RESOURCES, SEARCH_INDEX
from fhirlead.storage.port import ResourceVersion

IN_CHUNK = 5000  # values per `$in` list: keeps every query document far below 16 MB


@dataclass
class Access:
    db: Any
    session: Any = None

    @property
    def resources(self) -> Any:
        return self.db[RESOURCES]

    @property
    def history(self) -> Any:
        return self.db[HISTORY]

    @property
    def search_index(self) -> Any:
        return self.db[SEARCH_INDEX]

    @property
    def counters(self) -> Any:
        return self.db[COUNTERS]

    @property
    def bodies(self) -> Any:
        return self.db[BODIES]

    @property
    def records(self) -> Any:
        return self.db[RECORDS]

    @property
    def group_members(self) -> Any:
        return self.db[GROUP_MEMBERS]

    async def versions(self, docs: list[dict[str, Any]], with_members: bool = True) -> list[ResourceVersion]:
        """`resources`/`history` documents as versions, fetching the bodies stored out of line, and a
        Group's members (`with_members` False: a Group without them)."""
        from fhirlead.storage.mongo import members  # members imports this module

        outside = [doc["body_seq"] for doc in docs if doc.get("body_seq") is not None]
        bodies: dict[int, list[bytes]] = {}
        if outside:
            for chunk in await self.find(self.bodies, {"seq": {"$in": outside}}, None, [("seq", 1), ("n", 1)]):
                bodies.setdefault(chunk["seq"], []).append(bytes(chunk["data"]))
        found = []
        for doc in docs:
            version = documents.to_version(
                doc, b"".join(bodies[doc["body_seq"]]) if doc.get("body_seq") is not None else None)
            if version.type == "Group" and version.body is not None and with_members:
                key = documents.resource_key(version.type, version.id)
                version = replace(version, body=assemble(version.body, await members.members_at(self, key,
                                                                                               version.version)))
            found.append(version)
        return found

    async def find(
        self,
        collection: Any,
        filter_: dict[str, Any],
        projection: dict[str, Any] | None = None,
        sort: list[tuple[str, int]] | None = None,
        limit: int = 0,
    ) -> list[dict[str, Any]]:
        cursor = collection.find(filter_, projection, session=self.session)
        if sort:
            cursor = cursor.sort(sort)
        if limit:
            cursor = cursor.limit(limit)
        return await cursor.to_list(None)

    async def iterate(
        self, collection: Any, filter_: dict[str, Any], sort: list[tuple[str, int]], batch: int
    ) -> AsyncIterator[dict[str, Any]]:
        cursor = collection.find(filter_, session=self.session).sort(sort).batch_size(batch)
        async for doc in cursor:
            yield doc

    async def find_in(
        self,
        collection: Any,
        field: str,
        values: Sequence[Any],
        filter_: dict[str, Any] | None = None,
        projection: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents whose `field` is one of `values` (and matching `filter_`), queried in chunks."""
        found: list[dict[str, Any]] = []
        unique = list(dict.fromkeys(values))
        for start in range(0, len(unique), IN_CHUNK):
            chunk = {field: {"$in": unique[start : start + IN_CHUNK]}}
            query = {"$and": [filter_, chunk]} if filter_ and field in filter_ else {**(filter_ or {}), **chunk}
            found += await self.find(collection, query, projection)
        return found

    async def aggregate(self, collection: Any, stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The documents an aggregation pipeline yields (sorts may spill to disk on a real server)."""
        cursor = await collection.aggregate(stages, session=self.session, allowDiskUse=True)
        return await cursor.to_list(None)

    async def count(self, collection: Any, filter_: dict[str, Any]) -> int:
        return await collection.count_documents(filter_, session=self.session)
