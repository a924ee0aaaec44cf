"""The SQLite tables that hold resources and their history, and the connection settings.

- `resources`: one row per resource (type, id): its current version. `pk` is the stable key that
  search index rows point at; `updated_us` serves `_lastUpdated`.
- `versions`: every version ever written, deletes included (body NULL). `seq` is a global, increasing
  write order: system and type history read it backwards.
- `records`: small keyed documents beside the resources (`fhirlead.storage.records`), added in version 2.
- `group_members`: a Group's members, one row per member and version range (`sqlite/members.py`), version 3.
The search index tables belong to `fhirlead.storage.sqlite.index`.
"""

from __future__ import annotations

import sqlite3

from fhirlead.storage.sqlite import index, members

SCHEMA_VERSION = 4  # 2: the records table; 3: group_members; 4: date_params (sqlite/index.py)

TABLES = """
CREATE TABLE IF NOT EXISTS resources (
    pk INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    UNIQUE (type, id)
);
CREATE INDEX IF NOT EXISTS resources_by_type ON resources (type, deleted);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY,
    pk INTEGER NOT NULL,
    type TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    updated_us INTEGER NOT NULL,
    method TEXT NOT NULL,
    body BLOB,
    UNIQUE (pk, version)
);
CREATE INDEX IF NOT EXISTS versions_by_type ON versions (type, seq);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT,
    key TEXT,
    rev INTEGER NOT NULL,
    expires REAL,
    doc BLOB NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"""


def connect(path: str, *, synchronous: str, read_only: bool) -> sqlite3.Connection:
    """Open a connection with the settings every connection of the store shares."""
    # check_same_thread=False only so the store can close connections at shutdown; each connection
    # is otherwise used by the one thread that opened it.
    conn = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=1073741824")
    # Checkpoint the WAL every ~40 MB instead of SQLite's ~4 MB: a Bundle of 50 resources dirties a few
    # hundred index pages, and copying them into the database (and fsyncing it) ten times less often
    # halved commit time in bench/ingest.py. The WAL file stays at most about that size.
    conn.execute("PRAGMA wal_autocheckpoint=10000")
    if read_only:
        conn.execute("PRAGMA query_only=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables of an empty database, add those an older version lacks (every statement is
    IF NOT EXISTS), and refuse a database written by a newer fhirlead."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found > SCHEMA_VERSION:
        raise RuntimeError(f"database schema version {found} is newer than this fhirlead ({SCHEMA_VERSION})")
    if found == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in TABLES.split(";"):  # executescript() would COMMIT first
            if statement.strip():
                conn.execute(statement)
        for statement in members.TABLE.split(";"):
            conn.execute(statement)
        index.create_schema(conn)
        if found < 4:
            conn.execute(index.FIND_DATE_PARAMS)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
