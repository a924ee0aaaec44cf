"""SQLite index tables: the search values of every live resource, one table per value kind.

Each row carries `pk` (the resource), `sp` (the parameter: a 48-bit hash of "Type.key", so one
integer tells type and parameter apart) and the value columns of its kind (see
`fhirlead.search.entries`). `rep` is 0 for plain entries; a composite's components are stored under
the keys `<code>#<n>` with one `rep` number per repetition, so a query can require that all
components come from the same repetition.

Tables are WITHOUT ROWID with the primary key starting (pk, sp): deleting a resource's rows and
checking "does resource pk have a value like this" are prefix seeks. A second index starting with
(sp, value) finds the resources having a value. Index rows exist only for current, live versions.

`date_params` says, per date parameter, whether some resource was ever given several values of it
(several rows with rep 0: a Timing's events, a parameter over several elements) and the widest range
(hi - lo) any value had. For a parameter without several values, a resource's one row is its value, for
sorting and for a clause alike, which lets a sorted search walk only the rows that meet its date clause;
the widest range bounds where those rows can be (sqlite/search.py). Written in the same transaction as
the rows; never narrowed (what a parameter once held is assumed of it for good).
"""

from __future__ import annotations

import hashlib
import sqlite3
from functools import lru_cache

from fhirlead.search.entries import IndexEntries
from fhirlead.search.types.date import MAX_US, MIN_US

# kind -> (value columns, secondary index columns after sp, optional partial-index condition)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    "string": (("norm", "exact"), ("norm",), ""),
    "token": (("system", "code"), ("code", "system"), ""),
    "number": (("lo", "hi"), ("lo", "hi"), ""),
    "date": (("lo", "hi"), ("lo", "hi"), ""),
    "quantity": (("system", "code", "unit", "lo", "hi"), ("code", "lo"), ""),
    "reference": (("type", "id", "url", "version"), ("id", "type"), ""),
    "uri": (("uri",), ("uri",), ""),
}
EXTRA_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (sp, url) WHERE url != ''",
    "CREATE INDEX IF NOT EXISTS idx_date_hi ON idx_date (sp, hi)",
    # _lastUpdated filters and sorts, and type-wide listing, without reading the table.
    "CREATE INDEX IF NOT EXISTS resources_by_updated ON resources (type, deleted, updated_us)",
)


DATE_PARAMS = ("CREATE TABLE IF NOT EXISTS date_params (sp INTEGER PRIMARY KEY, several INTEGER NOT NULL, "
               "span INTEGER NOT NULL) WITHOUT ROWID")
FOREVER = MAX_US  # the span of a value open at either end (a Period without an end): it bounds nothing
_SPAN = f"CASE WHEN hi >= {MAX_US} OR lo <= {MIN_US} THEN {FOREVER} ELSE hi - lo END"
# an existing store's date parameters (schema version 4)
FIND_DATE_PARAMS = ("INSERT OR REPLACE INTO date_params SELECT sp, max(n) > 1, max(span) FROM "
                    f"(SELECT sp, count(*) AS n, max({_SPAN}) AS span FROM idx_date WHERE rep = 0 GROUP BY pk, sp) "
                    "GROUP BY sp")
_NOTE_DATE_PARAMS = ("INSERT INTO date_params VALUES (?, ?, ?) ON CONFLICT (sp) DO UPDATE SET "
                     "several = max(several, excluded.several), span = max(span, excluded.span) "
                     "WHERE excluded.several > several OR excluded.span > span")


def table(kind: str) -> str:
    return f"idx_{kind}"


@lru_cache(maxsize=65536)
def param_id(type_: str, key: str) -> int:
    """The stable integer naming index key `key` of resource type `type_` (48 bits of BLAKE2b)."""
    digest = hashlib.blake2b(f"{type_}.{key}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


def create_schema(conn: sqlite3.Connection) -> None:
    """DDL of the index tables (run once inside the migration transaction)."""
    for kind, (columns, indexed, where) in TABLES.items():
        name = table(kind)
        key = ", ".join(("pk", "sp", *columns, "rep"))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {name} (pk INTEGER NOT NULL, sp INTEGER NOT NULL, "
            + "".join(
                f"{column} {'REAL' if column in ('lo', 'hi') and kind != 'date' else ''} NOT NULL, "
                for column in columns
            )
            + f"rep INTEGER NOT NULL, PRIMARY KEY ({key})) WITHOUT ROWID"
        )
        conn.execute(
            f"CREATE INDEX IF NOT EXISTS {name}_by_value ON {name} (sp, {', '.join(indexed)})"
            + (f" WHERE {where}" if where else "")
        )
        # the rows of one Group member (rep < 0, see sqlite/members.py), deleted when it leaves
        conn.execute(f"CREATE INDEX IF NOT EXISTS {name}_by_member ON {name} (pk, rep) WHERE rep < 0")
    for statement in EXTRA_INDEXES:
        conn.execute(statement)
    conn.execute(DATE_PARAMS)


_DELETES = tuple(f"DELETE FROM {table(kind)} WHERE pk = ?" for kind in TABLES)
_DELETE_HEAD = tuple(f"DELETE FROM {table(kind)} WHERE pk = ? AND rep >= 0" for kind in TABLES)
_DELETE_MEMBER = tuple(f"DELETE FROM {table(kind)} WHERE pk = ? AND rep BETWEEN ? AND ? AND rep < 0" for kind in TABLES)
_INSERTS = {
    kind: f"INSERT OR IGNORE INTO {table(kind)} VALUES ({', '.join('?' * (len(columns) + 3))})"
    for kind, (columns, _, _) in TABLES.items()
}


def remove(conn: sqlite3.Connection, pk: int) -> None:
    """Delete every index row of resource `pk` (before a new version's rows, or on delete)."""
    for statement in _DELETES:
        conn.execute(statement, (pk,))


def remove_head(conn: sqlite3.Connection, pk: int) -> None:
    """Delete the index rows of Group `pk` that are not a member's."""
    for statement in _DELETE_HEAD:
        conn.execute(statement, (pk,))


def remove_member(conn: sqlite3.Connection, pk: int, low: int, high: int) -> None:
    """Delete the index rows of one Group member (rep from `low` to `high`, both negative)."""
    for statement in _DELETE_MEMBER:
        conn.execute(statement, (pk, low, high))


def rows(pk: int, type_: str, entries: IndexEntries, rep_base: int = 0) -> dict[str, list[tuple]]:
    """The rows per table for one resource: what `replace` inserts (bulk loaders reuse it). A Group
    member's rows are numbered down from its negative `rep_base` (sqlite/members.py)."""
    out: dict[str, list[tuple]] = {kind: [] for kind in TABLES}
    for kind in TABLES:
        values = entries.of_kind(kind)
        if values:
            target = out[kind]
            for entry in values:
                target.append((pk, param_id(type_, entry[0]), *entry[1:], rep_base))
    step = -1 if rep_base < 0 else 1
    for number, (key, components) in enumerate(entries.composite, start=1):
        rep = rep_base + step * number
        for position, (kind, value) in enumerate(components):
            out[kind].append((pk, param_id(type_, f"{key}#{position}"), *value, rep))
    return out


def replace(conn: sqlite3.Connection, pk: int, type_: str, entries: IndexEntries) -> None:
    """Insert the index rows of the new current version of resource `pk` (after `remove`)."""
    insert(conn, rows(pk, type_, entries))


def insert(conn: sqlite3.Connection, rows_by_kind: dict[str, list[tuple]]) -> None:
    """Insert index rows, one statement per table, and note what the date rows say of their parameters."""
    for kind, values in rows_by_kind.items():
        if values:
            conn.executemany(_INSERTS[kind], values)
    if rows_by_kind.get("date"):
        conn.executemany(_NOTE_DATE_PARAMS, _date_params(rows_by_kind["date"]))


def _date_params(date_rows: list[tuple]) -> list[tuple[int, int, int]]:
    """(sp, 1 when a resource has two rows of it, the widest hi - lo) of the rep-0 rows (pk, sp, lo, hi, rep)."""
    seen: set[tuple[int, int]] = set()
    found: dict[int, list[int]] = {}
    for pk, sp, lo, hi, rep in date_rows:
        if rep != 0:
            continue
        noted = found.get(sp)
        if noted is None:
            noted = found[sp] = [0, 0]
        noted[1] = max(noted[1], FOREVER if hi >= MAX_US or lo <= MIN_US else hi - lo)
        if (pk, sp) in seen:
            noted[0] = 1
        seen.add((pk, sp))
    return [(sp, several, span) for sp, (several, span) in found.items()]


def date_param(conn: sqlite3.Connection, sp: int) -> tuple[bool, int]:
    """(whether a resource was ever given several values of date parameter `sp`, the widest hi - lo of any
    of its values), see `date_params`; (False, 0) for a parameter nothing has a value of."""
    found = conn.execute("SELECT several, span FROM date_params WHERE sp = ?", (sp,)).fetchone()
    return (bool(found[0]), found[1]) if found else (False, 0)
