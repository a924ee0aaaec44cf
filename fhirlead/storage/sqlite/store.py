"""SqliteStore: the storage port over one SQLite file in WAL mode.

Threads, not an async driver: one writer thread owns the only writing connection (SQLite allows one
writer at a time anyway), and a small pool of reader threads each own a read-only connection, so reads
run beside a write in WAL mode. Each port call is one hop to a thread that runs all of its SQL, which
keeps the per-call overhead to a single context switch. A unit of work holds the writer for its whole
life (`BEGIN IMMEDIATE` … `COMMIT`), so its reads see its own writes and nothing else interleaves.
Records (`fhirlead.storage.records`) have a thread and connection of their own (see `records`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from fhirlead import clock, fhirjson
from fhirlead.search.entries import GroupEntries
from fhirlead.storage.port import HistoryPage, NewResource, ResourceVersion, SearchPage, VersionConflict
from fhirlead.storage.records import Record
from fhirlead.storage.sqlite import index, members, rows, schema, search
from fhirlead.storage.sqlite import records as records_sql
from fhirlead.storage.sqlite.records import SqliteRecords

if TYPE_CHECKING:
    from fhirlead.search.entries import IndexEntries
    from fhirlead.search.query import SearchQuery

T = TypeVar("T")


class SqliteStore:
    """Versioned FHIR resources in one SQLite file (`sqlite:///path/to/file.db`)."""

    def __init__(self, path: str, *, readers: int = 4, synchronous: str = "FULL") -> None:
        self.path = path
        self._readers = readers
        self._synchronous = synchronous
        self._local = threading.local()
        self._writer: ThreadPoolExecutor | None = None
        self._reader_pool: ThreadPoolExecutor | None = None
        self._write_lock = asyncio.Lock()
        self._group: asyncio.Future[None] | None = None  # units done but not yet committed (see unit_of_work)
        self._committing: set[asyncio.Task[None]] = set()
        self._connections: list[sqlite3.Connection] = []
        self._inline: sqlite3.Connection | None = None  # the event loop thread's own, for point reads
        self._writer_conn: sqlite3.Connection | None = None
        self._writer_calls: deque[Future[Any]] = deque()  # calls handed to the writer thread, oldest first
        self._inline_thread = 0
        self.records: SqliteRecords  # set by open(): its table exists only once the schema is migrated

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        self._writer = ThreadPoolExecutor(1, "fhirlead-sqlite-writer", self._open_connection, (False,))
        self._reader_pool = ThreadPoolExecutor(
            self._readers, "fhirlead-sqlite-reader", self._open_connection, (True,)
        )
        await self._on_writer(schema.migrate)
        self.records = SqliteRecords(self.path, synchronous=self._synchronous)
        self._inline = schema.connect(self.path, synchronous=self._synchronous, read_only=True)
        self._inline.execute("PRAGMA busy_timeout=0")  # never wait on the event loop: busy goes to a reader
        self._inline_thread = threading.get_ident()
        self._connections.append(self._inline)

    async def close(self) -> None:
        await asyncio.gather(*self._committing, return_exceptions=True)
        if hasattr(self, "records"):
            await self.records.close()
        for pool in (self._writer, self._reader_pool):
            if pool is not None:
                pool.shutdown(wait=True)
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._writer = self._reader_pool = self._inline = None

    def _open_connection(self, read_only: bool) -> None:
        conn = schema.connect(self.path, synchronous=self._synchronous, read_only=read_only)
        self._local.conn = conn
        if not read_only:
            self._writer_conn = conn
        self._connections.append(conn)

    async def _run(self, pool: ThreadPoolExecutor | None, work: Callable[[sqlite3.Connection], T]) -> T:
        if pool is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(pool, lambda: work(self._local.conn))

    async def _on_writer(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        # the thread runs its calls in order and holds the connection until every call handed to it is
        # done: a caller cancelled while its call runs does not free it, and a call cancelled before it
        # started (done at once) says nothing of the one running ahead of it
        future = self._writer.submit(lambda: work(self._local.conn))
        self._writer_busy()  # forget the calls already done
        self._writer_calls.append(future)
        return await asyncio.wrap_future(future)

    def _writer_busy(self) -> bool:
        """Whether the writer thread still has a call in hand or queued."""
        calls = self._writer_calls
        while calls and calls[0].done():
            calls.popleft()
        return bool(calls)

    def _in_open_transaction(self) -> sqlite3.Connection | None:
        """The writer connection, when the caller may use it right here on the event loop: its write
        transaction is open (BEGIN IMMEDIATE is done, so SQLite has nothing left to wait for: no busy
        timeout can stall the loop), the writer thread has nothing of it in hand, and this is the loop's
        thread. A small write then costs its SQLite time only, not two thread hops; as the unit holds
        the store's write lock, nothing else uses the connection meanwhile. BEGIN and COMMIT (the fsync)
        stay on the writer thread, and so does big work (see SqliteUnitOfWork._call)."""
        conn = self._writer_conn
        if conn is None or self._writer_busy() or not conn.in_transaction:
            return None
        if threading.get_ident() != self._inline_thread:
            return None
        return conn

    async def _on_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(self._reader_pool, work)

    async def _point_read(self, type_: str, work: Callable[[sqlite3.Connection], T]) -> T:
        """A read of one row by its key, on the event loop's own connection: ~10-20 µs of SQLite, where the
        hop to a reader thread and back costs more (bench/read_ratio.py). WAL readers do not wait for the
        writer; should SQLite still answer busy (WAL recovery), or the caller run on another thread, the
        read goes to a reader thread as every other read does; so does a Group, whose members may be
        100,000 rows to assemble."""
        conn = self._inline
        if conn is not None and type_ != "Group" and threading.get_ident() == self._inline_thread:
            try:
                return work(conn)
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
        return await self._on_reader(work)

    # -- reads --------------------------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> ResourceVersion | None:
        return await self._point_read(type_, lambda conn: rows.read_current(conn, type_, id_))

    async def vread(self, type_: str, id_: str, version: int) -> ResourceVersion | None:
        return await self._point_read(type_, lambda conn: rows.read_version(conn, type_, id_, version))

    async def history(
        self, type_: str | None, id_: str | None, since_us: int | None, count: int, cursor: str | None,
        exclude_types: tuple[str, ...] = (),
    ) -> HistoryPage:
        return await self._on_reader(lambda conn: _history(conn, type_, id_, since_us, count, cursor, exclude_types))

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self._on_reader(lambda conn: search.execute(conn, query))

    async def read_group_head(self, id_: str) -> ResourceVersion | None:
        """port.MemberRows, on committed data."""
        return await self._on_reader(lambda conn: rows.read_current(conn, "Group", id_, with_members=False))

    async def find_group_members(self, id_: str, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
        """port.MemberRows, on committed data."""
        return await self._on_reader(lambda conn: members.find(conn, _group_pk(conn, id_), entities))

    async def find_group_members_referring(self, id_: str, key: str, type_: str, target: str
                                           ) -> list[tuple[int, bytes]]:
        """port.MemberRows, on committed data."""
        return await self._on_reader(
            lambda conn: members.find_referring(conn, _group_pk(conn, id_), key, type_, target))

    async def all_versions(self, batch: int = 1000) -> AsyncIterator[ResourceVersion]:
        """Every version in write order, read in batches (for `fhirlead copy`)."""
        after = 0
        while True:
            found = await self._on_reader(lambda conn, after=after: _versions_after(conn, after, batch))
            if not found:
                return
            for version, _ in found:
                yield version
            after = found[-1][1]

    # -- writes -------------------------------------------------------------------------------

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[SqliteUnitOfWork]:
        """One unit of work at a time on the writer. Group commit: the first unit that writes opens a
        transaction and, when it ends, leaves it open for the units already waiting for the writer;
        each of those runs in it as a SAVEPOINT (a failure undoes only its own writes). Then one
        COMMIT — one fsync — ends them all, and no unit returns before that COMMIT. Alone, a unit
        commits at once, as before; under concurrent writes the disk flushes once per group."""
        async with self._write_lock:
            group = self._group  # an open group this unit joins, or None: it leads a new one
            work = SqliteUnitOfWork(self)
            try:
                yield work
                if work.begun:
                    await work.finish(_release_unit)
            except BaseException:
                if work.begun:
                    await work.finish(_rollback_if_open if group is None else _undo_unit)
                raise
            if work.begun and group is None:
                group = self._group = asyncio.get_running_loop().create_future()
                commit = asyncio.create_task(self._commit_group(group))
                self._committing.add(commit)
                commit.add_done_callback(self._committing.discard)
        if group is not None:
            await asyncio.shield(group)

    async def _commit_group(self, group: asyncio.Future[None]) -> None:
        """COMMIT the open transaction once the writer is free again, that is after every unit that
        was waiting for it when the group's first unit ended (the lock is first come, first served)."""
        async with self._write_lock:
            self._group = None
            try:
                await asyncio.shield(self._on_writer(lambda conn: conn.execute("COMMIT")))
            except Exception as error:
                await asyncio.shield(self._on_writer(_rollback_if_open))
                group.set_exception(error)
            else:
                group.set_result(None)
            finally:
                if not group.done():
                    group.cancel()


SMALL_MANY = 4  # create_many of at most this many resources runs on the event loop (a create and its Provenance)


class SqliteUnitOfWork:
    """Reads and writes on the writer connection inside one `BEGIN IMMEDIATE` transaction."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.begun = False

    async def _call(self, work: Callable[[sqlite3.Connection], T], small: bool = True) -> T:
        """Run `work` in the unit's transaction: on the event loop when it is `small` (a write or two,
        ~0.1-0.3 ms of SQLite) and the transaction is already open (SqliteStore._in_open_transaction),
        else on the writer thread, where SQLite's own time runs beside the event loop (a Bundle's
        inserts while the next Bundle is validated)."""

        def in_transaction(conn: sqlite3.Connection) -> T:
            if not self.begun:
                if not conn.in_transaction:
                    conn.execute("BEGIN IMMEDIATE")
                conn.execute("SAVEPOINT unit")
                self.begun = True
            return work(conn)

        conn = self._store._in_open_transaction() if small else None
        if conn is not None:
            return in_transaction(conn)
        return await self._store._on_writer(in_transaction)

    async def finish(self, end: Callable[[sqlite3.Connection], None]) -> None:
        """Release (or undo) the unit's savepoint, on the event loop when nothing of it is on the writer
        thread."""
        conn = self._store._in_open_transaction()
        if conn is not None:
            end(conn)
        else:
            await asyncio.shield(self._store._on_writer(end))

    async def read(self, type_: str, id_: str) -> ResourceVersion | None:
        return await self._call(lambda conn: rows.read_current(conn, type_, id_), small=type_ != "Group")

    async def search(self, query: SearchQuery) -> SearchPage:
        return await self._call(lambda conn: search.execute(conn, query), small=False)

    async def write(
        self,
        type_: str,
        id_: str,
        resource: dict[str, Any] | None,
        entries: IndexEntries | None,
        method: str,
        expected_version: int | None = None,
    ) -> ResourceVersion:
        return await self._call(  # a Group's members may be 100,000 rows: the writer thread's
            lambda conn: _write(conn, type_, id_, resource, entries, method, expected_version), small=type_ != "Group"
        )

    async def create_many(self, items: list[NewResource], method: str) -> list[ResourceVersion]:
        return await self._call(lambda conn: _create_many(conn, items, method), small=len(items) <= SMALL_MANY)

    async def write_version(self, version: ResourceVersion, entries: IndexEntries | None) -> None:
        await self._call(lambda conn: _write_version(conn, version, entries), small=version.type != "Group")

    async def reindex(self, type_: str, id_: str, version: int, entries: IndexEntries) -> bool:
        return await self._call(lambda conn: _reindex(conn, type_, id_, version, entries), small=False)

    async def get_record(self, kind: str, key: str) -> Record | None:
        return await self._call(lambda conn: records_sql.get(conn, kind, key, time.time()))

    async def put_record(self, kind: str, key: str, doc: dict[str, Any]) -> None:
        body = orjson.dumps(doc)
        await self._call(lambda conn: conn.execute(_PUT_RECORD, (kind, key, body)))

    # -- Group members one by one (port.MemberRows) -----------------------------------------------

    async def read_group_head(self, id_: str) -> ResourceVersion | None:
        return await self._call(lambda conn: rows.read_current(conn, "Group", id_, with_members=False))

    async def find_group_members(self, id_: str, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
        return await self._call(lambda conn: members.find(conn, _group_pk(conn, id_), entities), small=False)

    async def change_group_members(
        self, id_: str, head: dict[str, Any], head_entries: IndexEntries | None, removed: Sequence[int],
        replaced: Sequence[tuple[int, dict[str, Any], IndexEntries]],
        added: Sequence[tuple[dict[str, Any], IndexEntries]], method: str, expected_version: int,
    ) -> ResourceVersion:
        return await self._call(lambda conn: _write_members(
            conn, id_, head, head_entries, removed, replaced, added, method, expected_version), small=False)


# the `records` table (sqlite/records.py) written from the writer connection, inside the unit's transaction
_PUT_RECORD = (
    "INSERT INTO records (kind, key, rev, expires, doc) VALUES (?, ?, 1, NULL, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET rev = rev + 1, expires = NULL, doc = excluded.doc"
)


def _rollback_if_open(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _release_unit(conn: sqlite3.Connection) -> None:
    conn.execute("RELEASE unit")


def _undo_unit(conn: sqlite3.Connection) -> None:
    """Undo one unit's writes and keep the group's. If SQLite has already rolled the whole
    transaction back (some errors do), there is nothing left to undo and the group's COMMIT fails."""
    if conn.in_transaction:
        conn.execute("ROLLBACK TO unit")
        conn.execute("RELEASE unit")


def _write(
    conn: sqlite3.Connection,
    type_: str,
    id_: str,
    resource: dict[str, Any] | None,
    entries: IndexEntries | None,
    method: str,
    expected_version: int | None,
) -> ResourceVersion:
    current = conn.execute(
        "SELECT pk, version, deleted FROM resources WHERE type = ? AND id = ?", (type_, id_)
    ).fetchone()
    if expected_version is not None:
        live_version = 0 if current is None or current[2] else current[1]
        if live_version != expected_version:
            raise VersionConflict(f"{type_}/{id_}", expected_version, live_version or None)
    number = 1 if current is None else current[1] + 1
    if type_ == "Group" and resource is not None:
        return _write_group(conn, None if current is None else current[0], id_, number, resource, entries, method)
    stored, updated_us = _new_version(type_, id_, number, resource, method)
    _store(conn, None if current is None else current[0], stored, updated_us, entries)
    return stored


def _write_group(conn: sqlite3.Connection, pk: int | None, id_: str, number: int, resource: dict[str, Any],
                 entries: IndexEntries | None, method: str) -> ResourceVersion:
    """A whole Group: its head as the version's body, its members as rows (sqlite/members.py)."""
    head_resource, member_list = members.split(resource)
    head, updated_us = _new_version("Group", id_, number, head_resource, method)
    resource["meta"] = head_resource["meta"]
    split = entries if isinstance(entries, GroupEntries) else None
    pk = _store(conn, pk, head, updated_us, split.head if split is not None else entries, whole=split is None)
    bodies = members.write_all(conn, pk, number, member_list, split.members if split is not None else None, "Group")
    return dataclasses.replace(head, body=members.assemble(head.body or b"{}", bodies))


def _group_pk(conn: sqlite3.Connection, id_: str) -> int:
    found = conn.execute("SELECT pk FROM resources WHERE type = 'Group' AND id = ?", (id_,)).fetchone()
    return -1 if found is None else found[0]


def _write_members(
    conn: sqlite3.Connection, id_: str, head_resource: dict[str, Any], head_entries: IndexEntries | None,
    removed: Sequence[int], replaced: Sequence[tuple[int, dict[str, Any], IndexEntries]],
    added: Sequence[tuple[dict[str, Any], IndexEntries]], method: str, expected_version: int,
) -> ResourceVersion:
    """A new version of Group `id_` that differs from the current one by the members named (and its
    head): the other members and their index rows are not touched (port.MemberRows)."""
    current = conn.execute("SELECT pk, version, deleted FROM resources WHERE type = 'Group' AND id = ?",
                           (id_,)).fetchone()
    live_version = 0 if current is None or current[2] else current[1]
    if live_version != expected_version or current is None:
        raise VersionConflict(f"Group/{id_}", expected_version, live_version or None)
    pk, number = current[0], current[1] + 1
    head, updated_us = _new_version("Group", id_, number, head_resource, method)
    _store(conn, pk, head, updated_us, head_entries, whole=False, keep_index=head_entries is None)
    members.write_changes(conn, pk, number, removed, replaced, added, "Group")
    return head


def _new_version(
    type_: str, id_: str, version: int, resource: dict[str, Any] | None, method: str
) -> tuple[ResourceVersion, int]:
    """Version `version` of a resource written now (resource None: a delete), with meta.versionId and
    meta.lastUpdated set in `resource`; and its time in microseconds."""
    moment = clock.now()
    last_updated = clock.instant(moment)
    body = None
    if resource is not None:
        resource["meta"] = {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": last_updated}
        body = fhirjson.dumps(resource)
    return ResourceVersion(type_, id_, version, last_updated, method, body), clock.micros(moment)


def _create_many(conn: sqlite3.Connection, items: list[NewResource], method: str) -> list[ResourceVersion]:
    """Create new resources with one statement per table instead of several per resource (a Bundle's
    POSTs: ~40% less store time). Keys are the next free ones, as SQLite would choose them; ids
    that exist already (even deleted) take the one-by-one path, which reports the conflict."""
    keys = [(type_, id_) for type_, id_, _, _ in items]
    if len(set(keys)) != len(keys) or any(type_ == "Group" for type_, _ in keys) or _any_exists(conn, keys):
        return [_write(conn, type_, id_, body, entries, method, 0) for type_, id_, body, entries in items]
    pk = conn.execute("SELECT coalesce(max(pk), 0) FROM resources").fetchone()[0]
    seq = conn.execute("SELECT coalesce(max(seq), 0) FROM versions").fetchone()[0]
    created, resource_rows, version_rows = [], [], []
    index_rows: dict[str, list[tuple]] = {kind: [] for kind in index.TABLES}
    for type_, id_, resource, entries in items:
        pk, seq = pk + 1, seq + 1
        stored, updated_us = _new_version(type_, id_, 1, resource, method)
        created.append(stored)
        resource_rows.append((pk, type_, id_, 1, updated_us, 0, seq))
        version_rows.append((seq, pk, type_, 1, stored.last_updated, updated_us, method, stored.body))
        for kind, rows_of_kind in index.rows(pk, type_, entries).items():
            index_rows[kind] += rows_of_kind
    conn.executemany("INSERT INTO resources (pk, type, id, version, updated_us, deleted, seq) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", resource_rows)
    conn.executemany("INSERT INTO versions (seq, pk, type, version, last_updated, updated_us, method, body) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", version_rows)
    index.insert(conn, index_rows)
    return created


def _any_exists(conn: sqlite3.Connection, keys: list[tuple[str, str]]) -> bool:
    """Whether any (type, id) has a row, by index seeks: a row-value `IN (VALUES …)` would scan the table."""
    ids_by_type: dict[str, list[str]] = {}
    for type_, id_ in keys:
        ids_by_type.setdefault(type_, []).append(id_)
    for type_, ids in ids_by_type.items():
        for start in range(0, len(ids), 500):  # bound variables per statement, far under SQLite's limit
            chunk = ids[start:start + 500]
            sql = f"SELECT 1 FROM resources WHERE type = ? AND id IN ({', '.join('?' * len(chunk))}) LIMIT 1"
            if conn.execute(sql, [type_, *chunk]).fetchone():
                return True
    return False


def _store(
    conn: sqlite3.Connection, pk: int | None, version: ResourceVersion, updated_us: int, entries: IndexEntries | None,
    *, whole: bool = True, keep_index: bool = False,
) -> int:
    """Record `version` as its resource's current one (pk None: a new resource) with its index rows;
    its pk. For a Group's head, `whole=False` replaces only the head's index rows (not its members'),
    and `keep_index` none at all."""
    if pk is None:
        pk = conn.execute(
            "INSERT INTO resources (type, id, version, updated_us, deleted, seq) VALUES (?, ?, 0, 0, 0, 0)",
            (version.type, version.id),
        ).lastrowid
    elif version.body is None:
        index.remove(conn, pk)
        if version.type == "Group":
            members.close_all(conn, pk, version.version)
    elif not keep_index:
        (index.remove if whole else index.remove_head)(conn, pk)
    seq = conn.execute(
        "INSERT INTO versions (pk, type, version, last_updated, updated_us, method, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (pk, version.type, version.version, version.last_updated, updated_us, version.method, version.body),
    ).lastrowid
    conn.execute(
        "UPDATE resources SET version = ?, updated_us = ?, deleted = ?, seq = ? WHERE pk = ?",
        (version.version, updated_us, int(version.body is None), seq, pk),
    )
    if version.body is not None and entries is not None and not keep_index:
        index.replace(conn, pk, version.type, entries)
    return pk


def _reindex(conn: sqlite3.Connection, type_: str, id_: str, version: int, entries: IndexEntries) -> bool:
    """New index rows for the current version of `type_/id_` (UnitOfWork.reindex)."""
    current = conn.execute(
        "SELECT pk, version, deleted FROM resources WHERE type = ? AND id = ?", (type_, id_)
    ).fetchone()
    if current is None or current[2] or current[1] != version:
        return False
    pk = current[0]
    ordinals = members.current_ordinals(conn, pk) if type_ == "Group" else []
    if ordinals:  # the head's rows, then each member's under its own rep range (as written)
        if not isinstance(entries, GroupEntries) or len(entries.members) != len(ordinals):
            return False
        index.remove(conn, pk)
        index.replace(conn, pk, type_, entries.head)
        members.reindex(conn, pk, list(zip(ordinals, entries.members, strict=True)), type_)
        return True
    index.remove(conn, pk)  # any other resource, and a Group whose members are inside its head
    index.replace(conn, pk, type_, entries)
    return True


def _versions_after(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[ResourceVersion, int]]:
    """The next versions in write order after seq `after`, with their seq."""
    found = conn.execute(
        f"SELECT {rows.VERSION_COLUMNS}, v.seq "
        "FROM versions v JOIN resources r ON r.pk = v.pk WHERE v.seq > ? ORDER BY v.seq LIMIT ?",
        (after, limit),
    ).fetchall()
    return [(rows.to_version(conn, row), row[rows.WIDTH]) for row in found]


def _write_version(conn: sqlite3.Connection, version: ResourceVersion, entries: IndexEntries | None) -> None:
    """Store a version exactly as given (see UnitOfWork.write_version)."""
    current = conn.execute(
        "SELECT pk, version FROM resources WHERE type = ? AND id = ?", (version.type, version.id)
    ).fetchone()
    if current is not None and current[1] >= version.version:
        raise VersionConflict(version.reference, version.version - 1, current[1])
    updated_us = clock.micros(clock.parse_instant(version.last_updated))
    pk = None if current is None else current[0]
    if version.type == "Group" and version.body is not None:
        head_resource, member_list = members.split(fhirjson.loads(version.body))
        head = dataclasses.replace(version, body=fhirjson.dumps(head_resource))
        split = entries if isinstance(entries, GroupEntries) else None
        pk = _store(conn, pk, head, updated_us, split.head if split is not None else entries, whole=split is None)
        members.write_all(conn, pk, version.version, member_list, split.members if split is not None else None,
                          "Group")
        return
    _store(conn, pk, version, updated_us, entries)


def _history(
    conn: sqlite3.Connection,
    type_: str | None,
    id_: str | None,
    since_us: int | None,
    count: int,
    cursor: str | None,
    exclude_types: tuple[str, ...] = (),
) -> HistoryPage:
    where, params = [], []
    if exclude_types:
        where.append(f"v.type NOT IN ({', '.join('?' * len(exclude_types))})")
        params += list(exclude_types)
    if type_ is not None and id_ is not None:
        where.append("r.type = ? AND r.id = ?")
        params += [type_, id_]
    elif type_ is not None:
        where.append("v.type = ?")
        params.append(type_)
    if since_us is not None:
        where.append("v.updated_us >= ?")
        params.append(since_us)
    if cursor is not None:
        where.append("v.seq < ?")
        params.append(int(cursor))
    sql = (
        f"SELECT {rows.VERSION_COLUMNS}, v.seq "
        "FROM versions v JOIN resources r ON r.pk = v.pk"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY v.seq DESC LIMIT ?"
    )
    found = conn.execute(sql, [*params, count + 1]).fetchall()
    page = found[:count]
    next_cursor = str(page[-1][rows.WIDTH]) if page and len(found) > count else None
    return HistoryPage([rows.to_version(conn, row) for row in page], next_cursor)
