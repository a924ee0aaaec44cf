"""SqliteRecords: the `records` table (`fhirlead.storage.records`) on a thread and connection of its own.

Not on the store's writer thread: group commit may leave a transaction open there for units of work
still queued, and a record written into it would wait for (and could be undone with) their COMMIT.
Here each put is its own `BEGIN IMMEDIATE` … `COMMIT`, which takes SQLite's write lock before reading
the revision, so the check and the write are atomic across every process on the file. A put waits
(busy timeout) while a unit of work holds that lock: do not put records from inside a unit of work (a
record that must commit with its resources goes through `UnitOfWork.put_record`, on the writer).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from fhirlead.storage.records import Record, RecordConflict
from fhirlead.storage.sqlite import schema

T = TypeVar("T")

_LIVE = "(expires IS NULL OR expires > ?)"
_COLUMNS = "kind, key, doc, rev, expires"


class SqliteRecords:
    """Records in the store's SQLite file; one thread runs all of their SQL, in call order."""

    def __init__(self, path: str, *, synchronous: str) -> None:
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(
            1, "fhirlead-sqlite-records", self._connect, (path, synchronous)
        )

    def _connect(self, path: str, synchronous: str) -> None:
        self._local.conn = schema.connect(path, synchronous=synchronous, read_only=False)
        self._connections.append(self._local.conn)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for conn in self._connections:
            conn.close()
        self._connections.clear()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: work(self._local.conn))

    async def get(self, kind: str, key: str) -> Record | None:
        return await self._run(lambda conn: get(conn, kind, key, time.time()))

    async def put(
        self,
        kind: str,
        key: str,
        doc: dict[str, Any],
        *,
        expires: float | None = None,
        expected_rev: int | None = None,
    ) -> Record:
        body = orjson.dumps(doc)  # on the caller's thread: an unserialisable doc fails before any lock
        rev = await self._run(lambda conn: _put(conn, kind, key, body, expires, expected_rev, time.time()))
        return Record(kind, key, doc, rev, expires)

    async def delete(self, kind: str, key: str) -> bool:
        sql = f"DELETE FROM records WHERE kind = ? AND key = ? AND {_LIVE}"
        return await self._run(lambda conn: conn.execute(sql, (kind, key, time.time())).rowcount > 0)

    async def list(self, kind: str, limit: int | None = None) -> list[Record]:
        sql = f"SELECT {_COLUMNS} FROM records WHERE kind = ? AND {_LIVE} ORDER BY key LIMIT ?"
        bound = -1 if limit is None else limit  # SQLite: a negative LIMIT is none
        return await self._run(lambda conn: [_record(row) for row in conn.execute(sql, (kind, time.time(), bound))])

    async def purge_expired(self) -> int:
        sql = "DELETE FROM records WHERE expires <= ?"
        return await self._run(lambda conn: conn.execute(sql, (time.time(),)).rowcount)


def _record(row: tuple[Any, ...]) -> Record:
    kind, key, doc, rev, expires = row
    return Record(kind, key, orjson.loads(doc), rev, expires)


def get(conn: sqlite3.Connection, kind: str, key: str, now: float) -> Record | None:
    """The live record (kind, key) on `conn` (the records connection, or the writer's inside a unit)."""
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM records WHERE kind = ? AND key = ? AND {_LIVE}", (kind, key, now)
    ).fetchone()
    return None if row is None else _record(row)


def _put(
    conn: sqlite3.Connection,
    kind: str,
    key: str,
    body: bytes,
    expires: float | None,
    expected_rev: int | None,
    now: float,
) -> int:
    """Check the live revision and write the next one in one write transaction; the new revision.

    Revisions go on counting over an expired row that is written again (only a purge resets them), so a
    writer still holding the expired record's revision cannot mistake the new record for it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT rev, expires FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        stored = 0 if row is None else row[0]
        live = 0 if row is None or (row[1] is not None and row[1] <= now) else stored
        if expected_rev is not None and expected_rev != live:
            raise RecordConflict(kind, key)
        conn.execute(
            "INSERT OR REPLACE INTO records (kind, key, rev, expires, doc) VALUES (?, ?, ?, ?, ?)",
            (kind, key, stored + 1, expires, body),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return stored + 1
