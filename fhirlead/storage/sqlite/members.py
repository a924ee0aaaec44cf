"""Group members on SQLite (the layout is in `fhirlead/storage/group_members.py`): the `group_members`
table, one row per member and version range, and the members' index rows. A Group stored before the
table existed has its members inside its head and no rows: it reads as it was, and its next whole write
splits it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from fhirlead import fhirjson
from fhirlead.search.entries import IndexEntries
from fhirlead.storage.group_members import INSERT_BATCH, REP_SPAN, assemble, entity_of, plan_whole, rep_range, split
from fhirlead.storage.sqlite import index

__all__ = ["REP_SPAN", "TABLE", "assemble", "close", "close_all", "current_ordinals", "find", "members_at",
           "reindex", "split", "write_all", "write_changes"]

TABLE = """
CREATE TABLE IF NOT EXISTS group_members (
    pk INTEGER NOT NULL,
    ordinal INTEGER NOT NULL,
    since INTEGER NOT NULL,
    until INTEGER,
    entity TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (pk, ordinal, since)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS group_members_current ON group_members (pk, entity) WHERE until IS NULL
"""


def members_at(conn: sqlite3.Connection, pk: int, version: int, current: bool) -> list[bytes]:
    """The member JSON of version `version` of Group `pk`, in order (`current`: it is the latest)."""
    if current:
        sql = "SELECT body FROM group_members WHERE pk = ? AND until IS NULL ORDER BY ordinal"
        return [row[0] for row in conn.execute(sql, (pk,))]
    sql = ("SELECT body FROM group_members WHERE pk = ? AND since <= ? AND (until IS NULL OR until > ?) "
           "ORDER BY ordinal")
    return [row[0] for row in conn.execute(sql, (pk, version, version))]


def find(conn: sqlite3.Connection, pk: int, entities: Sequence[str] | None) -> list[tuple[int, bytes]]:
    """The current members (ordinal, JSON) whose entity reference is one of `entities` (None: all)."""
    if entities is None:
        sql = "SELECT ordinal, body FROM group_members WHERE pk = ? AND until IS NULL ORDER BY ordinal"
        return conn.execute(sql, (pk,)).fetchall()
    marks = ", ".join("?" * len(entities))
    # Without statistics SQLite prefers the primary key (pk=?: all 100,000 rows of the list) to the partial
    # index on entity; name the index, and sort the few rows found here.
    sql = (f"SELECT ordinal, body FROM group_members INDEXED BY group_members_current "
           f"WHERE pk = ? AND until IS NULL AND entity IN ({marks})")
    return sorted(conn.execute(sql, (pk, *entities)).fetchall())


def find_referring(conn: sqlite3.Connection, pk: int, key: str, type_: str, target: str) -> list[tuple[int, bytes]]:
    """The current members whose reference index rows `key` point to `type_`/`target`."""
    sql = ("SELECT m.ordinal, m.body FROM idx_reference r JOIN group_members m "
           f"ON m.pk = r.pk AND m.ordinal = (-r.rep) / {REP_SPAN} AND m.until IS NULL "
           "WHERE r.sp = ? AND r.id = ? AND r.type = ? AND r.pk = ? AND r.rep < 0")
    return sorted(set(conn.execute(sql, (index.param_id("Group", key), target, type_, pk)).fetchall()))


def write_all(conn: sqlite3.Connection, pk: int, version: int, members: list[dict[str, Any]],
              entries: list[IndexEntries] | None, type_: str) -> list[bytes]:
    """Make `members` the current members as of `version`; their JSON, in order. Rows of members that
    stay (same JSON, same relative order) are kept; the rest are closed and new rows written."""
    bodies = [fhirjson.dumps(member) for member in members]
    old = conn.execute("SELECT ordinal, body FROM group_members WHERE pk = ? AND until IS NULL ORDER BY ordinal",
                       (pk,)).fetchall()
    closed, new = plan_whole(old, bodies)
    close(conn, pk, version, closed)
    added = [(ordinal, members[n], bodies[n], entries[n] if entries is not None else None) for ordinal, n in new]
    insert(conn, pk, version, added, type_)
    return bodies


def write_changes(conn: sqlite3.Connection, pk: int, version: int, removed: Sequence[int],
                  replaced: Sequence[tuple[int, dict[str, Any], IndexEntries]],
                  added: Sequence[tuple[dict[str, Any], IndexEntries]], type_: str) -> None:
    """As of `version`: close the members `removed` (ordinals), give `replaced` ones new content in
    their place, append `added`."""
    close(conn, pk, version, [*removed, *(ordinal for ordinal, _, _ in replaced)])
    top = conn.execute("SELECT max(ordinal) FROM group_members WHERE pk = ?", (pk,)).fetchone()[0] or 0
    insert(conn, pk, version, [
        *((ordinal, member, fhirjson.dumps(member), entries) for ordinal, member, entries in replaced),
        *((top + n, member, fhirjson.dumps(member), entries) for n, (member, entries) in enumerate(added, start=1)),
    ], type_)


def close(conn: sqlite3.Connection, pk: int, version: int, ordinals: Sequence[int]) -> None:
    """End the current rows `ordinals` at `version` and delete their index rows."""
    for ordinal in ordinals:
        conn.execute("UPDATE group_members SET until = ? WHERE pk = ? AND ordinal = ? AND until IS NULL",
                     (version, pk, ordinal))
        index.remove_member(conn, pk, *rep_range(ordinal))


def close_all(conn: sqlite3.Connection, pk: int, version: int) -> None:
    """A deleted Group: no current members, no member index rows (the caller removes all index rows)."""
    conn.execute("UPDATE group_members SET until = ? WHERE pk = ? AND until IS NULL", (version, pk))


def current_ordinals(conn: sqlite3.Connection, pk: int) -> list[int]:
    """The ordinals of Group `pk`'s current member rows, in member order."""
    sql = "SELECT ordinal FROM group_members WHERE pk = ? AND until IS NULL ORDER BY ordinal"
    return [row[0] for row in conn.execute(sql, (pk,))]


def reindex(conn: sqlite3.Connection, pk: int, entries: Sequence[tuple[int, IndexEntries]], type_: str) -> None:
    """Insert the index rows of current members (ordinal, entries) whose old rows are gone, INSERT_BATCH
    members at a time."""
    for start in range(0, len(entries), INSERT_BATCH):
        rows: dict[str, list[tuple]] = {kind: [] for kind in index.TABLES}
        for ordinal, member_entries in entries[start:start + INSERT_BATCH]:
            for kind, found in index.rows(pk, type_, member_entries, rep_base=-ordinal * REP_SPAN).items():
                rows[kind] += found
        index.insert(conn, rows)


def insert(conn: sqlite3.Connection, pk: int, version: int,
           added: Sequence[tuple[int, dict[str, Any], bytes, IndexEntries | None]], type_: str) -> None:
    """Rows and index rows of `added`, INSERT_BATCH members at a time (a 100,000-member list never has
    all its rows built at once)."""
    for start in range(0, len(added), INSERT_BATCH):
        batch = added[start:start + INSERT_BATCH]
        conn.executemany("INSERT INTO group_members (pk, ordinal, since, until, entity, body) "
                         "VALUES (?, ?, ?, NULL, ?, ?)",
                         [(pk, ordinal, version, entity_of(member), body) for ordinal, member, body, _ in batch])
        rows: dict[str, list[tuple]] = {kind: [] for kind in index.TABLES}
        for ordinal, _, _, entries in batch:
            if entries is not None:
                for kind, found in index.rows(pk, type_, entries, rep_base=-ordinal * REP_SPAN).items():
                    rows[kind] += found
        index.insert(conn, rows)
