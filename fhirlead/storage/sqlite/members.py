"""Group members kept one row per member and version range, so a Group of 100,000 members (an ATR
attribution list) changes by one member without storing or indexing the other 99,999 again.

A Group version's row in `versions` holds its body without `member` (the head). `group_members` holds
each member's JSON with the versions it belongs to: from `since` up to (not including) `until`, NULL
while it is current. Version v of the Group is its head plus the members whose range holds v, in
`ordinal` order; reads assemble the body (`assemble`), so every read path answers the same bytes as for
any other resource. A member's index rows carry `rep` -(ordinal * REP_SPAN) and below (composites), so
one member's rows are deleted through the partial index on (pk, rep) where rep < 0; the head's rows are
the ordinary ones (rep >= 0).

Writing a whole Group (PUT, a transaction, `fhirlead load`) keeps the rows of members that are still
there, in the same order, and closes or adds the others (`write_all`); the member operations change
single members (`write_changes`). A Group stored before this table existed has its members inside its
head and no rows: it reads as it was, and its next whole write splits it.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

from fhirlead import fhirjson
from fhirlead.search.entries import IndexEntries
from fhirlead.storage.sqlite import index

REP_SPAN = 64  # index rows of member n: rep -(n * 64) for plain values, -(n * 64 + k + 1) for composite k

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


def split(group: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Group without `member`, and its members."""
    members = group.get("member")
    head = {key: value for key, value in group.items() if key != "member"}
    return head, members if isinstance(members, list) else []


def assemble(head: bytes, members: Sequence[bytes]) -> bytes:
    """The Group's JSON: its head with `member` appended (none: the head as it is)."""
    if not members:
        return head
    return b"".join((head[:-1], b',"member":[', b",".join(members), b"]}"))


def entity_of(member: Any) -> str:
    reference = member.get("entity") if isinstance(member, dict) else None
    text = reference.get("reference") if isinstance(reference, dict) else None
    return text if isinstance(text, str) else ""


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


def write_all(conn: sqlite3.Connection, pk: int, version: int, members: list[dict[str, Any]],
              entries: list[IndexEntries] | None, type_: str) -> list[bytes]:
    """Make `members` the current members as of `version`; their JSON, in order. Rows of members that
    stay (same JSON, same relative order) are kept; the rest are closed and new rows written."""
    bodies = [fhirjson.dumps(member) for member in members]
    old = conn.execute("SELECT ordinal, body FROM group_members WHERE pk = ? AND until IS NULL ORDER BY ordinal",
                       (pk,)).fetchall()
    waiting: dict[bytes, deque[int]] = defaultdict(deque)
    for position, (_, body) in enumerate(old):
        waiting[body].append(position)
    kept: list[int | None] = []
    last = -1
    for body in bodies:
        queue = waiting.get(body)
        while queue and queue[0] <= last:
            queue.popleft()
        if queue:
            last = queue.popleft()
            kept.append(last)
        else:
            kept.append(None)
    # New members go after the last row kept; a kept row that would follow a new one is rewritten too.
    first_new = next((n for n, position in enumerate(kept) if position is None), len(kept))
    kept = kept[:first_new] + [None] * (len(kept) - first_new)
    staying = {position for position in kept if position is not None}
    close(conn, pk, version, [old[position][0] for position in range(len(old)) if position not in staying])
    next_ordinal = (old[max(staying)][0] + 1) if staying else 1
    added = []
    for number, position in enumerate(kept):
        if position is None:
            added.append((next_ordinal, members[number], bodies[number],
                          entries[number] if entries is not None else None))
            next_ordinal += 1
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
        index.remove_member(conn, pk, -ordinal * REP_SPAN - (REP_SPAN - 1), -ordinal * REP_SPAN)


def close_all(conn: sqlite3.Connection, pk: int, version: int) -> None:
    """A deleted Group: no current members, no member index rows (the caller removes all index rows)."""
    conn.execute("UPDATE group_members SET until = ? WHERE pk = ? AND until IS NULL", (version, pk))


def insert(conn: sqlite3.Connection, pk: int, version: int,
           added: Sequence[tuple[int, dict[str, Any], bytes, IndexEntries | None]], type_: str) -> None:
    if not added:
        return
    conn.executemany("INSERT INTO group_members (pk, ordinal, since, until, entity, body) VALUES (?, ?, ?, NULL, ?, ?)",
                     [(pk, ordinal, version, entity_of(member), body) for ordinal, member, body, _ in added])
    rows: dict[str, list[tuple]] = {kind: [] for kind in index.TABLES}
    for ordinal, _, _, entries in added:
        if entries is not None:
            for kind, found in index.rows(pk, type_, entries, rep_base=-ordinal * REP_SPAN).items():
                rows[kind] += found
    index.insert(conn, rows)
