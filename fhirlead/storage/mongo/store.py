"""MongoStore: the storage port on MongoDB through PyMongo's async API (`AsyncMongoClient`).

Writes happen only inside a unit of work, which is one client session with one multi-document
transaction: all of its writes commit together or none do. MongoDB runs transactions only on a
replica set or a sharded cluster, so a unit of work on a standalone server is refused with a clear
StoreError before anything is written. Units of work of one process run one at a time (as on SQLite),
which gives the same version numbering and If-Match outcomes under parallel requests; writers in other
processes are still safe: every update is conditional on the version it read, and a lost race is a
VersionConflict.

The global write sequence (`seq`: history order, and each resource's creation-order `pk`) comes from a
counter incremented outside the transaction, so concurrent transactions do not all conflict on one
counter document; a rolled-back unit of work leaves an unused number, which orders nothing wrongly.

Transient failures never reach a client as an internal error: a commit whose outcome is unknown
(`UnknownTransactionCommitResult`) is retried, as the driver recommends; a transaction MongoDB aborted
(`TransientTransactionError`, e.g. a write conflict with another process) cannot be re-run from here,
since its body is the caller's code, so it ends in StoreBusy (503 with Retry-After) with nothing
written; a lost race on creating the same resource (a duplicate key) in StoreBusy as a 409. The HTTP
layer runs a RESTful write that ended so (nothing written) again, twice at most (`fhirlead.api.dispatch`),
as the driver's `with_transaction` would re-run a transaction's body.

Records (`fhirlead.storage.records`) are single-document conditional writes outside any session (see
`records`), so they need no transactions and work on a standalone server too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from fhirlead import clock, fhirjson
from fhirlead.search.entries import GroupEntries
from fhirlead.storage.group_members import assemble, split
from fhirlead.storage.mongo import documents, members, schema
from fhirlead.storage.mongo.access import Access
from fhirlead.storage.mongo.records import MongoRecords, live_record, record_id
from fhirlead.storage.mongo.search import Searcher
from fhirlead.storage.port import (
    HistoryPage,
    NewResource,
    ResourceVersion,
    SearchPage,
    StoreBusy,
    StoreError,
    VersionConflict,
)
from fhirlead.storage.records import Record

if TYPE_CHECKING:
    from fhirlead.search.entries import IndexEntries
    from fhirlead.search.query import SearchQuery

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "fhirlead"
REPLICA_SET_REQUIRED = (
    "MongoDB store: transactions need a replica set or a sharded cluster, and this server is a "
    "standalone mongod. Start mongod with --replSet rs0, run rs.initiate() once, and add "
    "?replicaSet=rs0 to the store URL (docker/compose.yml does this). Nothing was written."
)


class MongoStore:
    """Versioned FHIR resources in one MongoDB database (`mongodb://host/dbname`, default `fhirlead`).

    `client` lets tests hand in a client-like object (a stand-in); `transactions` overrides the
    topology check for MongoDB-compatible servers that run transactions without reporting a replica
    set (None = decide from the server's `hello`).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        database: str | None = None,
        transactions: bool | None = None,
    ) -> None:
        if url is None and client is None:
            raise ValueError("MongoStore needs a URL or a client")
        self.url = url
        self._client = client
        self._owns_client = client is None
        self._database_name = database
        self._transactions = transactions
        self._db: Any = None
        self._write_lock = asyncio.Lock()
        self.records: MongoRecords  # set by open(), on the store's database

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._client is None:
            from pymongo import AsyncMongoClient

            self._client = AsyncMongoClient(self.url)
        if self._database_name is None:
            self._database_name = _database_from(self._client)
        self._db = self._client[self._database_name]
        await schema.create_indexes(self._db)
        self.records = MongoRecords(self._db[schema.RECORDS])
        if self._transactions is None:
            self._transactions = await _supports_transactions(self._client)
            if not self._transactions:
                log.warning(REPLICA_SET_REQUIRED.replace(" Nothing was written.", ""))

    async def close(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.close()
            self._client = None
        self._db = None

    def _access(self, session: Any = None) -> Access:
        if self._db is None:
            raise RuntimeError("store is not open")
        return Access(self._db, session)

    # -- reads --------------------------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> ResourceVersion | None:
        return await _read(self._access(), type_, id_)

    async def read_group_head(self, id_: str) -> ResourceVersion | None:
        """port.MemberRows, on committed data."""
        return await _read(self._access(), "Group", id_, with_members=False)

    async def find_group_members(self, id_: str, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
        """port.MemberRows, on committed data."""
        return await members.find(self._access(), documents.resource_key("Group", id_), entities)

    async def find_group_members_referring(self, id_: str, key: str, type_: str, target: str
                                           ) -> list[tuple[int, bytes]]:
        """port.MemberRows, on committed data."""
        access = self._access()
        group = documents.resource_key("Group", id_)
        state = await access.resources.find_one({"_id": group}, {"pk": 1})
        return [] if state is None else await members.find_referring(access, state["pk"], key, group, type_, target)

    async def vread(self, type_: str, id_: str, version: int) -> ResourceVersion | None:
        access = self._access()
        doc = await access.history.find_one({"type": type_, "id": id_, "version": version})
        return None if doc is None else (await access.versions([doc]))[0]

    async def history(
        self, type_: str | None, id_: str | None, since_us: int | None, count: int, cursor: str | None,
        exclude_types: tuple[str, ...] = (),
    ) -> HistoryPage:
        access = self._access()
        filter_: dict[str, Any] = {"type": {"$nin": list(exclude_types)}} if exclude_types else {}
        if type_ is not None:
            filter_["type"] = type_
            if id_ is not None:
                filter_["id"] = id_
        if since_us is not None:
            filter_["updated_us"] = {"$gte": since_us}
        if cursor is not None:
            filter_["seq"] = {"$lt": int(cursor)}
        found = await access.find(access.history, filter_, None, [("seq", -1)], count + 1)
        page = found[:count]
        next_cursor = str(page[-1]["seq"]) if page and len(found) > count else None
        return HistoryPage(await access.versions(page), next_cursor)

    async def search(self, query: SearchQuery) -> SearchPage:
        return await Searcher(self._access(), query.base_url).execute(query)

    async def all_versions(self, batch: int = 1000) -> AsyncIterator[ResourceVersion]:
        """Every version of every resource in write order (for `fhirlead copy`)."""
        access = self._access()
        async for doc in access.iterate(access.history, {}, [("seq", 1)], batch):
            yield (await access.versions([doc]))[0]

    # -- writes -------------------------------------------------------------------------------

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[MongoUnitOfWork]:
        if not self._transactions:
            raise StoreError(REPLICA_SET_REQUIRED)
        async with self._write_lock:
            session = self._client.start_session()
            try:
                await session.start_transaction()
                work = MongoUnitOfWork(self, self._access(session))
                try:
                    yield work
                except BaseException as error:
                    await asyncio.shield(_abort(session))
                    busy = _busy(error)
                    if busy is not None:
                        raise busy from error
                    raise
                await asyncio.shield(_commit(session))
            finally:
                await session.end_session()

    async def _next_seq(self) -> int:
        """The next number of the global write sequence (outside any transaction; see module doc)."""
        doc = await self._access().counters.find_one_and_update(
            {"_id": "seq"}, {"$inc": {"value": 1}}, upsert=True, return_document=True
        )
        return int(doc["value"])


class MongoUnitOfWork:
    """Reads and writes through one session, inside its transaction."""

    def __init__(self, store: MongoStore, access: Access) -> None:
        self._store = store
        self._access = access

    async def read(self, type_: str, id_: str) -> ResourceVersion | None:
        return await _read(self._access, type_, id_)

    async def search(self, query: SearchQuery) -> SearchPage:
        return await Searcher(self._access, query.base_url).execute(query)

    async def write(
        self,
        type_: str,
        id_: str,
        resource: dict[str, Any] | None,
        entries: IndexEntries | None,
        method: str,
        expected_version: int | None = None,
    ) -> ResourceVersion:
        current = await self._current(type_, id_)
        if expected_version is not None:
            live_version = 0 if current is None or current["deleted"] else current["version"]
            if live_version != expected_version:
                raise VersionConflict(f"{type_}/{id_}", expected_version, live_version or None)
        version = 1 if current is None else current["version"] + 1
        moment = clock.now()
        last_updated = clock.instant(moment)
        if resource is not None:
            resource["meta"] = {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": last_updated}
        if type_ == "Group" and resource is not None:
            return await self._write_group(
                ResourceVersion(type_, id_, version, last_updated, method, None), resource, clock.micros(moment),
                entries, current)
        stored = ResourceVersion(type_, id_, version, last_updated, method, documents.body_of(resource))
        await self._store_version(stored, resource, clock.micros(moment), entries, current)
        return stored

    async def _write_group(self, stored: ResourceVersion, group: dict[str, Any], updated_us: int,
                           entries: IndexEntries | None, current: dict[str, Any] | None) -> ResourceVersion:
        """A whole Group: its head as the version's resource, its members one by one (mongo/members.py)."""
        head, member_list = split(group)
        stored = replace(stored, body=documents.body_of(head))
        split_entries = entries if isinstance(entries, GroupEntries) else None
        pk = await self._store_version(stored, head, updated_us,
                                       split_entries.head if split_entries is not None else entries, current,
                                       whole=split_entries is None)
        bodies = await members.write_all(self._access, pk, documents.resource_key("Group", stored.id), stored.version,
                                         member_list, split_entries.members if split_entries is not None else None)
        return replace(stored, body=assemble(stored.body or b"{}", bodies))

    async def create_many(self, items: list[NewResource], method: str) -> list[ResourceVersion]:
        """One write after another: inside a session there is no round trip to save by batching."""
        return [await self.write(type_, id_, resource, entries, method, 0) for type_, id_, resource, entries in items]

    async def write_version(self, version: ResourceVersion, entries: IndexEntries | None) -> None:
        """Store `version` exactly as given (number, time, body): how `fhirlead copy` moves history."""
        current = await self._current(version.type, version.id)
        if current is not None and current["version"] >= version.version:
            raise VersionConflict(version.reference, version.version - 1, current["version"])
        resource = None if version.body is None else fhirjson.loads(version.body)
        updated_us = clock.micros(clock.parse_instant(version.last_updated))
        if version.type == "Group" and resource is not None:
            await self._write_group(version, resource, updated_us, entries, current)
            return
        await self._store_version(version, resource, updated_us, entries, current)

    # -- Group members one by one (port.MemberRows) -----------------------------------------------

    async def read_group_head(self, id_: str) -> ResourceVersion | None:
        return await _read(self._access, "Group", id_, with_members=False)

    async def find_group_members(self, id_: str, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
        return await members.find(self._access, documents.resource_key("Group", id_), entities)

    async def change_group_members(
        self, id_: str, head: dict[str, Any], head_entries: IndexEntries | None, removed: Sequence[int],
        replaced: Sequence[tuple[int, dict[str, Any], IndexEntries]],
        added: Sequence[tuple[dict[str, Any], IndexEntries]], method: str, expected_version: int,
    ) -> ResourceVersion:
        current = await self._current("Group", id_)
        live_version = 0 if current is None or current["deleted"] else current["version"]
        if current is None or live_version != expected_version:
            raise VersionConflict(f"Group/{id_}", expected_version, live_version or None)
        version = current["version"] + 1
        moment = clock.now()
        last_updated = clock.instant(moment)
        head["meta"] = {**head.get("meta", {}), "versionId": str(version), "lastUpdated": last_updated}
        stored = ResourceVersion("Group", id_, version, last_updated, method, documents.body_of(head))
        pk = await self._store_version(stored, head, clock.micros(moment), head_entries, current,
                                       whole=False, keep_index=head_entries is None)
        await members.write_changes(self._access, pk, documents.resource_key("Group", id_), version, removed,
                                    replaced, added)
        return stored

    async def reindex(self, type_: str, id_: str, version: int, entries: IndexEntries) -> bool:
        """New index documents (and sort values) for the current version of `type_/id_` (port)."""
        access, session = self._access, self._access.session
        current = await self._current(type_, id_)
        if current is None or current["deleted"] or current["version"] != version:
            return False
        key = documents.resource_key(type_, id_)
        ordinals = await members.current_ordinals(access, key) if type_ == "Group" else []
        per_member: list[tuple[int, IndexEntries]] = []
        head = entries
        if ordinals:  # members one by one: the head's documents, then each member's (as written)
            if not isinstance(entries, GroupEntries) or len(entries.members) != len(ordinals):
                return False
            head, per_member = entries.head, list(zip(ordinals, entries.members, strict=True))
        # conditional on the version, like every write: a writer in another process conflicts with it
        result = await access.resources.update_one(
            {"_id": key, "version": version}, {"$set": {"sort": documents.sort_values(head)}}, session=session)
        if result.matched_count != 1:
            return False
        pk = current["pk"]
        await access.search_index.delete_many({"pk": pk}, session=session)
        docs = documents.index_documents(pk, type_, head)
        if docs:
            await access.search_index.insert_many(docs, session=session)
        await members.reindex(access, pk, per_member)
        return True

    async def get_record(self, kind: str, key: str) -> Record | None:
        found = await self._access.records.find_one({"_id": record_id(kind, key)}, session=self._access.session)
        return live_record(found)

    async def put_record(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        fields = {"kind": kind, "key": key, "doc": doc, "expires": None}
        await self._access.records.update_one(
            {"_id": record_id(kind, key)}, {"$set": fields, "$inc": {"rev": 1}}, upsert=True,
            session=self._access.session,
        )

    async def _current(self, type_: str, id_: str) -> dict[str, Any] | None:
        return await self._access.resources.find_one(
            {"_id": documents.resource_key(type_, id_)},
            {"version": 1, "deleted": 1, "pk": 1},
            session=self._access.session,
        )

    async def _store_version(
        self,
        stored: ResourceVersion,
        resource: dict[str, Any] | None,
        updated_us: int,
        entries: IndexEntries | None,
        current: dict[str, Any] | None,
        *,
        whole: bool = True,
        keep_index: bool = False,
    ) -> int:
        """Record `stored` as the resource's current version with its index documents; its pk. For a
        Group's head, `whole=False` replaces only the head's index documents (not its members'), and
        `keep_index` none at all."""
        access, session = self._access, self._access.session
        seq = await self._store._next_seq()
        key = documents.resource_key(stored.type, stored.id)
        live = resource is not None
        body_seq = None
        if resource is not None and stored.body is not None:
            resource = documents.native(resource) if len(stored.body) <= documents.INLINE_LIMIT else None
            if resource is None:
                body_seq = seq
                await access.bodies.insert_many(documents.body_chunks(seq, stored.body), session=session)
        version = {  # what the current-state document and the history document both record
            "type": stored.type,
            "id": stored.id,
            "version": stored.version,
            "lastUpdated": stored.last_updated,
            "updated_us": updated_us,
            "method": stored.method,
            "resource": resource,
            "body_seq": body_seq,
        }
        state = {
            **version,
            "deleted": not live,
            "seq": seq,
            "sort": documents.sort_values(entries) if live and entries is not None else {},
        }
        if current is None:
            pk = seq
            await access.resources.insert_one({"_id": key, "pk": pk, **state}, session=session)
        else:
            pk = current["pk"]
            result = await access.resources.update_one(
                {"_id": key, "version": current["version"]}, {"$set": state}, session=session
            )
            if result.matched_count != 1:  # another process wrote it since we read it
                raise VersionConflict(key, current["version"], None)
            if not live or whole:
                await access.search_index.delete_many({"pk": pk}, session=session)
            elif not keep_index:
                await access.search_index.delete_many({"pk": pk, "rep": {"$gte": 0}}, session=session)
            if not live and stored.type == "Group":
                await members.close_all(access, key, stored.version)
        await access.history.insert_one({"seq": seq, **version}, session=session)
        if live and entries is not None and not keep_index:
            docs = documents.index_documents(pk, stored.type, entries)
            if docs:
                await access.search_index.insert_many(docs, session=session)
        return pk


async def _read(access: Access, type_: str, id_: str, with_members: bool = True) -> ResourceVersion | None:
    doc = await access.resources.find_one(
        {"_id": documents.resource_key(type_, id_)}, {"sort": 0}, session=access.session
    )
    return None if doc is None else (await access.versions([doc], with_members))[0]


TRANSIENT = "TransientTransactionError"
UNKNOWN_COMMIT = "UnknownTransactionCommitResult"
COMMIT_RETRY_DELAYS = (0.05, 0.2, 0.5)  # seconds before each repeated commit
ABORTED = "The write conflicted with a concurrent one and was rolled back; nothing was written. Repeat the request."
UNKNOWN = ("The database did not confirm the write; it may or may not have been stored. Read the resource "
           "before repeating the request.")
DUPLICATE = "The resource was created concurrently by another request; nothing was written. Repeat the request."


def _busy(error: BaseException) -> StoreBusy | None:
    """The StoreBusy a driver error inside a transaction stands for (None: any other failure)."""
    if isinstance(error, DuplicateKeyError):
        return StoreBusy(DUPLICATE, status=409)
    if isinstance(error, PyMongoError) and error.has_error_label(TRANSIENT):
        return StoreBusy(ABORTED)
    return None


async def _commit(session: Any) -> None:
    """Commit, repeating the commit while its outcome is unknown (the driver's recommendation)."""
    for delay in (*COMMIT_RETRY_DELAYS, None):
        try:
            await session.commit_transaction()
            return
        except PyMongoError as error:
            if error.has_error_label(UNKNOWN_COMMIT):
                if delay is not None:
                    log.warning("commit outcome unknown (%s); committing again", type(error).__name__)
                    await asyncio.sleep(delay)
                    continue
                raise StoreBusy(UNKNOWN, written_nothing=False) from error
            if error.has_error_label(TRANSIENT):
                raise StoreBusy(ABORTED) from error
            raise


async def _abort(session: Any) -> None:
    if session.in_transaction:
        await session.abort_transaction()


def _database_from(client: Any) -> str:
    """The database named in the URL's path, or `fhirlead`."""
    try:
        return client.get_default_database(DEFAULT_DATABASE).name
    except Exception:  # a client without a default-database notion (test stand-ins)
        return DEFAULT_DATABASE


async def _supports_transactions(client: Any) -> bool:
    """Replica-set members and mongos routers run transactions; a standalone mongod does not."""
    hello = await client.admin.command("hello")
    return bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
