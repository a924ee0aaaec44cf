"""Reading versions out of the SQLite tables: the few queries every read path shares."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from fhirlead.storage.port import ResourceVersion

VERSION_COLUMNS = "r.type, r.id, v.version, v.last_updated, v.method, v.body"


def to_version(row: tuple) -> ResourceVersion:
    return ResourceVersion(row[0], row[1], row[2], row[3], row[4], row[5])


def read_current(conn: sqlite3.Connection, type_: str, id_: str) -> ResourceVersion | None:
    row = conn.execute(
        f"SELECT {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.seq = r.seq "
        "WHERE r.type = ? AND r.id = ?",
        (type_, id_),
    ).fetchone()
    return None if row is None else to_version(row)


def read_version(conn: sqlite3.Connection, type_: str, id_: str, version: int) -> ResourceVersion | None:
    row = conn.execute(
        f"SELECT {VERSION_COLUMNS} FROM resources r JOIN versions v ON v.pk = r.pk "
        "WHERE r.type = ? AND r.id = ? AND v.version = ?",
        (type_, id_, version),
    ).fetchone()
    return None if row is None else to_version(row)


def load_current(conn: sqlite3.Connection, pks: Iterable[int]) -> list[ResourceVersion]:
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
            found[row[0]] = to_version(row[1:])
    return [found[pk] for pk in ordered if pk in found]
