"""Reading versions out of the SQLite tables: the few queries every read path shares. A Group's body is
assembled here from its head and its member rows (sqlite/members.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from fhirlead.storage.port import ResourceVersion
from fhirlead.storage.sqlite import members

# what to_version reads; queries may add columns after these
VERSION_COLUMNS = "r.type, r.id, v.version, v.last_updated, v.method, v.body, v.pk, r.version"
WIDTH = 8


def to_version(conn: sqlite3.Connection, row: tuple, with_members: bool = True) -> ResourceVersion:
    body = row[5]
    if row[0] == "Group" and body is not None and with_members:
        body = members.assemble(body, members.members_at(conn, row[6], row[2], current=row[2] == row[7]))
    return ResourceVersion(row[0], row[1], row[2], row[3], row[4], body)


def read_current(conn: sqlite3.Connection, type_: str, id_: str, with_members: bool = True) -> ResourceVersion | None:
    """The current version (`with_members` False: a Group without its members, as cheap as any read)."""
    row = conn.execute(
        f"SELECT {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.seq = r.seq "
        "WHERE r.type = ? AND r.id = ?",
        (type_, id_),
    ).fetchone()
    return None if row is None else to_version(conn, row, with_members)


def read_version(conn: sqlite3.Connection, type_: str, id_: str, version: int) -> ResourceVersion | None:
    row = conn.execute(
        f"SELECT {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.pk = r.pk "
        "WHERE r.type = ? AND r.id = ? AND v.version = ?",
        (type_, id_, version),
    ).fetchone()
    return None if row is None else to_version(conn, row)


def load_current(conn: sqlite3.Connection, pks: Iterable[int], with_members: bool = True) -> list[ResourceVersion]:
    """The current versions of the resources with these pks, in the order given (missing pks skipped)."""
    ordered = list(pks)
    if not ordered:
        return []
    found: dict[int, ResourceVersion] = {}
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT r.pk, {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.seq = r.seq "
            f"WHERE r.pk IN ({marks})",
            chunk,
        ):
            found[row[0]] = to_version(conn, row[1:], with_members)
    return [found[pk] for pk in ordered if pk in found]
