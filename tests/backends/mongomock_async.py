"""mongomock behind the async PyMongo surface MongoStore uses: a test stand-in, never product code.

mongomock answers queries in-process with MongoDB's semantics (the ones MongoStore relies on: flat
documents, `$in`/`$or`/`$nor`/`$regex`/ranges, scalar sorts, unique compound indexes). It has no
sessions, so this adapter adds them: a session's transaction records an undo action for every write
made through it, and an abort replays them backwards. MongoStore runs one unit of work at a time per
store, so an undo log restores exactly the state before the transaction. What the stand-in cannot
show: isolation from concurrent readers (they see uncommitted writes here) and MongoDB's own
behaviour on array fields (sort, unique indexes) — MongoStore stores no array fields it queries.

`standalone=True` answers like a standalone mongod: `hello` reports no replica set, and a command
inside a transaction fails with MongoDB's IllegalOperation error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import mongomock
from pymongo.errors import OperationFailure


class MockSession:
    def __init__(self, client: MockClient) -> None:
        self._client = client
        self._undo: list[Callable[[], None]] | None = None

    @property
    def in_transaction(self) -> bool:
        return self._undo is not None

    async def start_transaction(self) -> None:
        self._undo = []

    def check(self) -> None:
        if self._undo is not None and self._client.standalone:
            raise OperationFailure(
                "Transaction numbers are only allowed on a replica set member or mongos", code=20
            )

    def record(self, undo: Callable[[], None]) -> None:
        if self._undo is not None:
            self._undo.append(undo)

    async def commit_transaction(self) -> None:
        self.check()
        self._undo = None

    async def abort_transaction(self) -> None:
        undo, self._undo = self._undo or [], None
        for action in reversed(undo):
            action()

    async def end_session(self) -> None:
        if self._undo is not None:
            await self.abort_transaction()


class MockCursor:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def sort(self, keys: list[tuple[str, int]]) -> MockCursor:
        self._cursor = self._cursor.sort(keys)
        return self

    def limit(self, count: int) -> MockCursor:
        self._cursor = self._cursor.limit(count)
        return self

    def batch_size(self, size: int) -> MockCursor:
        return self

    async def to_list(self, length: int | None = None) -> list[dict[str, Any]]:
        found = list(self._cursor)
        return found if length is None else found[:length]

    def __aiter__(self) -> MockCursor:
        return self

    async def __anext__(self) -> dict[str, Any]:
        try:
            return next(self._cursor)
        except StopIteration:
            raise StopAsyncIteration from None


class MockCollection:
    def __init__(self, collection: mongomock.Collection) -> None:
        self._c = collection

    @staticmethod
    def _check(session: MockSession | None) -> None:
        if session is not None:
            session.check()

    def find(self, filter_: dict[str, Any] | None = None, projection: Any = None, *, session: Any = None) -> MockCursor:
        self._check(session)
        return MockCursor(self._c.find(filter_ or {}, projection))

    async def find_one(self, filter_: dict[str, Any], projection: Any = None, *, session: Any = None) -> Any:
        self._check(session)
        return self._c.find_one(filter_, projection)

    async def aggregate(self, pipeline: list[dict[str, Any]], *, session: Any = None, **options: Any) -> MockCursor:
        self._check(session)
        return MockCursor(iter(run_pipeline(self._c, pipeline)))

    async def count_documents(self, filter_: dict[str, Any], *, session: Any = None) -> int:
        self._check(session)
        return self._c.count_documents(filter_)

    async def create_index(self, keys: Any, **options: Any) -> str:
        options.pop("partialFilterExpression", None)  # mongomock indexes everything: same answers
        return self._c.create_index(keys, **options)

    async def insert_one(self, doc: dict[str, Any], *, session: MockSession | None = None) -> Any:
        self._check(session)
        result = self._c.insert_one(doc)
        if session is not None:
            session.record(lambda: self._c.delete_one({"_id": result.inserted_id}))
        return result

    async def insert_many(self, docs: list[dict[str, Any]], *, session: MockSession | None = None) -> Any:
        self._check(session)
        result = self._c.insert_many(docs)
        if session is not None:
            ids = list(result.inserted_ids)
            session.record(lambda: self._c.delete_many({"_id": {"$in": ids}}))
        return result

    async def update_one(
        self, filter_: dict[str, Any], update: dict[str, Any], *, upsert: bool = False, session: Any = None
    ) -> Any:
        self._check(session)
        before = self._c.find_one(filter_)
        result = self._c.update_one(filter_, update, upsert=upsert)
        if session is not None and before is not None:
            session.record(lambda: self._c.replace_one({"_id": before["_id"]}, before))
        elif session is not None and result.upserted_id is not None:
            session.record(lambda: self._c.delete_one({"_id": result.upserted_id}))
        return result

    async def update_many(self, filter_: dict[str, Any], update: dict[str, Any], *, session: Any = None) -> Any:
        self._check(session)
        before = list(self._c.find(filter_)) if session is not None else []
        result = self._c.update_many(filter_, update)
        for doc in before:
            session.record(lambda doc=doc: self._c.replace_one({"_id": doc["_id"]}, doc))
        return result

    async def replace_one(self, filter_: dict[str, Any], doc: dict[str, Any], *, session: Any = None) -> Any:
        if session is not None:
            raise NotImplementedError("MongoStore replaces only records, outside transactions")
        return self._c.replace_one(filter_, doc)

    async def delete_one(self, filter_: dict[str, Any], *, session: Any = None) -> Any:
        if session is not None:
            raise NotImplementedError("MongoStore deletes one document only for records, outside transactions")
        return self._c.delete_one(filter_)

    async def delete_many(self, filter_: dict[str, Any], *, session: MockSession | None = None) -> Any:
        self._check(session)
        removed = list(self._c.find(filter_)) if session is not None else []
        result = self._c.delete_many(filter_)
        if removed:
            session.record(lambda: self._c.insert_many(copy.deepcopy(removed)))  # type: ignore[union-attr]
        return result

    async def find_one_and_update(
        self, filter_: dict[str, Any], update: dict[str, Any], *, upsert: bool = False, return_document: bool = False,
        session: Any = None,
    ) -> Any:
        if session is not None:
            raise NotImplementedError("MongoStore increments counters outside transactions")
        return self._c.find_one_and_update(filter_, update, upsert=upsert, return_document=return_document)


def run_pipeline(collection: mongomock.Collection, pipeline: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """mongomock's aggregation, with the same answers but without its two full scans: a leading `$match`
    runs as a find (mongomock would copy the whole collection first), and a `$lookup` on a scalar field
    as one `$in` find (mongomock scans the foreign collection once per document)."""
    stages = list(pipeline)
    first = stages.pop(0)["$match"] if stages and set(stages[0]) == {"$match"} else {}
    docs = list(collection.find(first))
    for stage in stages:
        lookup = stage.get("$lookup")
        if lookup is not None and set(lookup) == {"from", "localField", "foreignField", "as"}:
            joined = _lookup(collection.database, docs, lookup)
            if joined is not None:
                docs = joined
                continue
        docs = list(mongomock.aggregate.process_pipeline(docs, collection.database, [stage], None))
    return docs


def _lookup(database: mongomock.Database, docs: list[dict[str, Any]], options: dict[str, str]
            ) -> list[dict[str, Any]] | None:
    """`$lookup` (localField/foreignField) when every local value is a top-level int or string; else None."""
    local, foreign = options["localField"], options["foreignField"]
    values = [doc.get(local) for doc in docs]
    if "." in local or "." in foreign or not all(isinstance(v, int | str) for v in values):
        return None
    by_value: dict[Any, list[dict[str, Any]]] = {}
    for found in database[options["from"]].find({foreign: {"$in": list(dict.fromkeys(values))}}):
        by_value.setdefault(found[foreign], []).append(found)
    return [{**doc, options["as"]: copy.deepcopy(by_value.get(value, []))} for doc, value in zip(docs, values,
                                                                                                   strict=True)]


class MockDatabase:
    def __init__(self, client: MockClient, database: mongomock.Database) -> None:
        self._client = client
        self._db = database
        self.name = database.name

    def __getitem__(self, name: str) -> MockCollection:
        return MockCollection(self._db[name])

    async def command(self, name: str) -> dict[str, Any]:
        if name != "hello":
            raise NotImplementedError(name)
        hello: dict[str, Any] = {"ok": 1.0, "isWritablePrimary": True}
        if not self._client.standalone:
            hello["setName"] = "mongomock"
        return hello


class MockClient:
    """An `AsyncMongoClient`-shaped client over one mongomock server (`sync`, shared if handed in)."""

    def __init__(self, sync: mongomock.MongoClient | None = None, *, standalone: bool = False) -> None:
        self.sync = sync if sync is not None else mongomock.MongoClient()
        self.standalone = standalone
        self.admin = MockDatabase(self, self.sync["admin"])

    def __getitem__(self, name: str) -> MockDatabase:
        return MockDatabase(self, self.sync[name])

    def get_default_database(self, default: str) -> MockDatabase:
        return self[default]

    def start_session(self) -> MockSession:
        return MockSession(self)

    async def close(self) -> None:
        self.sync.close()

    def clone(self) -> MockClient:
        """An independent client holding a copy of every database (a fresh store per test, cheaply)."""
        server = mongomock.store.ServerStore()
        for db_name, database in self.sync._store._databases.items():
            for name, collection in database._collections.items():
                target = server[db_name][name]
                target._documents = copy.deepcopy(collection._documents)
                target.indexes = copy.deepcopy(collection.indexes)
                target._is_force_created = collection._is_force_created
        return MockClient(mongomock.MongoClient(_store=server), standalone=self.standalone)
