"""Executing a SearchQuery on SQLite: filter, order, keyset paging, totals and includes.

Paging is by keyset, not offset: a cursor carries the sort-key values and pk of the row a page ended
on (or began on, for `previous`), and the next page is "rows after that one in this order". Pages stay
correct while resources are created or deleted between requests: nothing is skipped or repeated
except rows whose own sort values changed. The default order is pk (creation order), unique already;
every explicit `_sort` gets pk as the final tie-break so the order is total and stable.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from fhirlead.search import cursor as cursors
from fhirlead.search.query import Clause, Include, RangeMatch, SearchQuery, SortKey
from fhirlead.search.types.quantity import CANONICAL
from fhirlead.storage.port import SearchPage
from fhirlead.storage.sqlite import rows
from fhirlead.storage.sqlite.index import FOREVER, date_param, param_id, table
from fhirlead.storage.sqlite.search_sql import Compiler, Sql

CHUNK = 500
WALK_SLACK = 16  # rows read beyond a page by the sorted walk, for resources listed twice
WALK_BUDGET = 5_000  # index rows the sorted walk reads before the driver race decides (see _walk_sorted)
WALK_CHUNK = 250  # index rows per step of that walk
# sort kinds the walk serves: one column per direction with an index starting (sp, column) (index.py),
# and token, whose index runs (sp, code, system, pk): see _token_rows
WALKED_KINDS = ("date", "string", "uri", "token")
TOKEN_WALK_LIMIT = 50_000  # index rows a token walk reads for a broad search before the general query
TOKEN_SYSTEMS = 32  # systems of one code a token walk merges; more: the general query
TOKEN_SCAN = 20_000  # index rows one step of a token walk reads (rejected ones too) before it gives up
# a date clause read on the walked rows, when the widest value leaves no bound on where its rows are
# (an open Period), must match at least this many resources: under it, sorting its matches costs less than
# the walk's reading past the rows it leaves out (one per resource, ~60 ns each: 10,000 of 600,000
# Observations were walked in 36 ms, sorted in 27)
ROW_CLAUSE_PROBE = 16_000
_TEXT_HIGH = "\U0010ffff\U0010ffff"
_INT_HIGH, _INT_LOW = 2**63 - 1, -(2**63)

# kind -> (ascending column, descending column, missing-value sentinels (ascending, descending))
_SORT_COLUMNS: dict[str, tuple[str, str, tuple[Any, Any]]] = {
    "string": ("norm", "norm", (_TEXT_HIGH, "")),
    "token": ("code", "code", (_TEXT_HIGH, "")),
    "uri": ("uri", "uri", (_TEXT_HIGH, "")),
    "reference": ("type || '/' || id || url", "type || '/' || id || url", (_TEXT_HIGH, "")),
    "date": ("lo", "hi", (_INT_HIGH, _INT_LOW)),
    "number": ("lo", "hi", (float("inf"), float("-inf"))),
    "quantity": ("lo", "hi", (float("inf"), float("-inf"))),
}


def sort_expression(key: SortKey, types: Sequence[str], r: str) -> Sql:
    """A per-resource sort value: the lowest value ascending, the highest descending; missing last."""
    if key.key == "_id":
        return Sql(f"{r}.id")
    if key.key == "_lastUpdated":
        return Sql(f"{r}.updated_us")
    ascending, descending, (high, low) = _SORT_COLUMNS[key.kind]
    column = descending if key.descending else ascending
    aggregate = "max" if key.descending else "min"
    ids = sorted({param_id(type_, key.key) for type_ in types})
    extra, params = "", list(ids)
    if key.kind == "quantity":
        extra, params = " AND s.system != ?", [*ids, CANONICAL]
    sql = (
        f"coalesce((SELECT {aggregate}(s.{column}) FROM {table(key.kind)} s WHERE s.pk = {r}.pk "
        f"AND s.sp IN ({','.join('?' * len(ids))}) AND s.rep = 0{extra}), ?)"
    )
    return Sql(sql, [*params, low if key.descending else high])


def _keyset(columns: list[str], descending: list[bool], values: Sequence[Any], forward: bool) -> Sql:
    """Rows strictly after (forward) or before the row with `values`, in the order of `columns`."""
    ors, params = [], []
    for index, column in enumerate(columns):
        equal = [f"{columns[i]} = ?" for i in range(index)]
        greater = descending[index] != forward  # ascending+forward -> ">", descending+forward -> "<"
        compare = f"{column} {'>' if greater else '<'} ?"
        ors.append("(" + " AND ".join([*equal, compare]) + ")")
        params += [*values[:index], values[index]]
    return Sql("(" + " OR ".join(ors) + ")", params)


def page_sql(query: SearchQuery, found: Sql, position: cursors.Cursor | None) -> Sql:
    """The SQL of one page: rows (pk, sort values...) in page order, one more than the page size."""
    forward = position is None or position.forward
    if not query.sort:
        text, params = f"SELECT r.pk {found.text}", list(found.params)
        if position is not None:
            text += f" AND r.pk {'>' if forward else '<'} ?"
            params.append(position.keys[0])
        text += f" ORDER BY r.pk {'ASC' if forward else 'DESC'} LIMIT ?"
        return Sql(text, [*params, query.count + 1])
    expressions = [sort_expression(key, query.types, "r") for key in query.sort]
    select = ", ".join(f"{e.text} AS k{i}" for i, e in enumerate(expressions))
    columns = [f"k{i}" for i in range(len(expressions))] + ["pk"]
    descending = [key.descending for key in query.sort] + [False]
    params = [p for e in expressions for p in e.params] + list(found.params)
    text = (
        f"WITH m AS MATERIALIZED (SELECT r.pk AS pk, {select} {found.text}) "
        f"SELECT pk, {', '.join(columns[:-1])} FROM m"
    )
    if position is not None:
        keyset = _keyset(columns, descending, position.keys, forward)
        text += f" WHERE {keyset.text}"
        params += keyset.params
    order = [f"{c} {'DESC' if d == forward else 'ASC'}" for c, d in zip(columns, descending, strict=True)]
    text += f" ORDER BY {', '.join(order)} LIMIT ?"
    return Sql(text, [*params, query.count + 1])


def _walk_sorted(conn: sqlite3.Connection, compiler: Compiler, query: SearchQuery,
                 position: cursors.Cursor | None) -> tuple[list[tuple], bool] | None:
    """A broad search of one type sorted by one date, string, uri or token parameter or `_lastUpdated`,
    paged forward: walk the sort index in order, check each resource against every clause, and stop once
    the page is full.

    The general page query computes every match's sort value and sorts them all: at 1,000,000 resources
    `Observation?date=ge2020&_sort=-date` took 0.45 s, this walk under 1 ms. The same rows in the same
    order (a resource's value: its lowest value ascending, highest descending; pk breaks ties), so
    cursors of either kind continue on the other. None when this does not apply: a selective clause
    drives the general query better, and a page the walk cannot fill reaches the resources without a
    value, which sort last and are the general query's.

    Which clauses are broad enough: one probe of the best-ranked clause (up to 2,000 rows) settles the
    selective case (the general query); otherwise a walk of at most WALK_BUDGET index rows is tried before
    the driver race, whose probes count up to 20,000 rows per clause (`Observation?code=<50,000 matches>&_sort=-date`:
    18-48 ms of probes where the walk fills the page in a few hundred rows). Only a page that walk cannot
    fill runs the race."""
    if len(query.sort) != 1 or len(query.types) != 1 or (position is not None and not position.forward):
        return None
    key = query.sort[0]
    if key.kind not in WALKED_KINDS and key.key != "_lastUpdated":
        return None
    # a date parameter with one value per resource: its row is the resource's sort value, and meets a
    # clause on the parameter or not by itself, so such clauses are read on the walked rows (from the
    # index alone) instead of per resource, from where such rows can start (`date=lt2022&_sort=-date` at
    # 1,000,000 resources: 526 ms -> ~1 ms)
    on_rows = None
    if key.kind == "date":
        several, span = date_param(conn, param_id(query.types[0], key.key))
        if not several:
            clauses = _row_clauses(query.where, key)
            on_rows = _OnRows(clauses, _bound(clauses, span, key.descending))
    if query.where:
        if compiler.first_is_selective(query.types, query.where):
            return None
        unbounded = on_rows.clauses if on_rows and on_rows.bound is None else []
        for clause in unbounded:  # a narrow one: sorting its matches beats walking past all it leaves out
            if compiler.probe(_drive(compiler, clause, query.types), ROW_CLAUSE_PROBE) < ROW_CLAUSE_PROBE:
                return None
        walked = _walk(conn, compiler, query, position, WALK_BUDGET, on_rows)
        if walked is not None:
            return walked
        driver, broad = compiler.choose_driver(query.types, query.where)
        if driver is not None and not broad:
            return None
    return _walk(conn, compiler, query, position, None, on_rows)


@dataclass(frozen=True, slots=True)
class _OnRows:
    """The sorted date parameter never had several values for one resource: `clauses` are read on the
    walked rows, which start at `bound` (see `_bound`; None: at the first row)."""

    clauses: list[Clause]
    bound: int | None


def _walk(conn: sqlite3.Connection, compiler: Compiler, query: SearchQuery, position: cursors.Cursor | None,
          budget: int | None, on_rows: _OnRows | None) -> tuple[list[tuple], bool] | None:
    """The walk of `_walk_sorted` (`budget`: over at most that many index rows), or None when it did not
    fill the page."""
    key, type_ = query.sort[0], query.types[0]
    if key.key == "_lastUpdated":
        value, source, missing = "r.updated_us", "resources r", None
        conditions, params = ["r.type = ?", "r.deleted = 0"], [type_]
    else:
        ascending, descending, sentinels = _SORT_COLUMNS[key.kind]
        column, aggregate = (descending, "max") if key.descending else (ascending, "min")
        values = table(key.kind)
        value, source = f"s.{column}", f"{values} s JOIN resources r ON r.pk = s.pk"
        missing = sentinels[1 if key.descending else 0]
        sp = param_id(type_, key.key)
        conditions, params = ["s.sp = ?", "s.rep = 0", "r.deleted = 0", "r.type = ?"], [sp, type_]
        if on_rows is not None:  # the row is the resource's value: the index in sort order, the clauses on it
            source = f"{values} s INDEXED BY {'idx_date_hi' if key.descending else 'idx_date_by_value'} " \
                     "JOIN resources r ON r.pk = s.pk"
            for clause in on_rows.clauses:
                row = _row_condition(compiler, clause, query.types)
                conditions.append(row.text)
                params += row.params
            if on_rows.bound is not None:  # where the walk starts: past the rows no clause lets through
                conditions.append(f"s.{column} {'<' if key.descending else '>'} ?")
                params.append(on_rows.bound)
        else:
            conditions.append(f"s.{column} = (SELECT {aggregate}(v.{column}) FROM {values} v "
                              "WHERE v.pk = s.pk AND v.sp = ? AND v.rep = 0)")
            params.append(sp)
    after = position.keys if position is not None else None
    if after is not None and after[0] == missing:
        return None
    read_on_rows = on_rows.clauses if on_rows else []
    checks = [compiler.clause_check(clause, query.types, "r") for clause in query.where if clause not in read_on_rows]
    if key.kind == "token":
        def fetch(after: tuple | None, limit: int) -> list[tuple]:
            return _token_rows(conn, param_id(type_, key.key), key.descending, after, limit)

        try:
            if budget:
                return _walk_in_chunks(conn, fetch, checks, after, query.count, budget)
            return _walk_in_chunks(conn, fetch, checks, after, query.count, TOKEN_WALK_LIMIT, give_up=False)
        except _Unwalkable:
            return None
    walk = Sql(f"SELECT r.pk, {value} FROM {source} WHERE {' AND '.join(conditions)}", params)
    if budget:
        def fetch(after: tuple | None, limit: int) -> list[tuple]:
            return _walk_rows(conn, walk, value, key.descending, [], after, limit)

        return _walk_in_chunks(conn, fetch, checks, after, query.count, budget)
    found = _walk_rows(conn, walk, value, key.descending, checks, after, query.count + 1 + WALK_SLACK)
    seen: set[int] = set()
    rows_ = []
    for row in found:
        if row[0] not in seen:  # two values equal to the resource's own lowest/highest: one row
            seen.add(row[0])
            rows_.append(row)
    if len(rows_) < query.count + 1:
        return None
    return rows_[: query.count], True


def _drive(compiler: Compiler, clause: Clause, types: Sequence[str]) -> Sql:
    driver = compiler.clause_drive(clause, types)
    assert driver is not None  # a date comparison drives from its index table
    return driver


# date prefixes that leave out the first rows of a walk (descending: the latest dates; ascending: the
# earliest): a clause of only these, on the sorted parameter, is read on the walked rows. The others
# match the first rows and cost nothing checked per resource.
_LEAVES_OUT_FIRST = {True: ("lt", "le", "eb", "eq", "ap"), False: ("gt", "ge", "sa", "eq", "ap")}


def _row_clauses(where: Sequence[Clause], key: SortKey) -> list[Clause]:
    """The clauses that compare the sorted date parameter's dates alone and leave out the first rows of
    the walk (`date=lt2022` sorted by -date, `date=ge2020,eq2010` by date)."""
    prefixes = _LEAVES_OUT_FIRST[key.descending]
    return [clause for clause in where if not clause.negate and all(
        isinstance(p, RangeMatch) and p.kind == "date" and p.key == key.key and p.prefix in prefixes
        for p in clause.any_of)]


def _bound(clauses: list[Clause], span: int, descending: bool) -> int | None:
    """A bound on the walked column that every row meeting all of `clauses` is within: descending, such a
    row has hi < bound; ascending, lo > bound. A value's hi - lo is at most `span` (the parameter's widest),
    so `lo < l` (lt) puts hi under l + span. None: no bound (no clause, or only spans as wide as FOREVER)."""
    bounds = []
    for clause in clauses:  # date comparisons only (`_row_clauses`)
        found = [_predicate_bound(p, span, descending) for p in clause.any_of]  # type: ignore[arg-type]
        if None not in found:
            bounds.append(max(found) if descending else min(found))  # OR: the loosest
    if not bounds:
        return None
    return min(bounds) if descending else max(bounds)  # AND: the tightest


def _predicate_bound(p: RangeMatch, span: int, descending: bool) -> int | None:
    """`_bound` for one comparison (search.md: the target range [lo, hi) against [low, high))."""
    low, high = int(p.low), int(p.high)
    wide = span >= FOREVER
    if descending:  # every match has hi < the bound
        return {"lt": None if wide else low + span, "le": None if wide else max(low + span, high + 1),
                "eb": low + 1, "eq": high + 1, "ap": None if wide else high + span}.get(p.prefix)
    return {"gt": None if wide else high - span, "ge": None if wide else min(high - span, low - 1),
            "sa": high - 1, "eq": low - 1, "ap": None if wide else low - span}.get(p.prefix)


def _row_condition(compiler: Compiler, clause: Clause, types: Sequence[str]) -> Sql:
    """A date clause as a condition on the walked index row `s`."""
    parts = []
    for p in clause.any_of:
        found = compiler.value_condition(p, types, "s")
        assert found is not None  # a date comparison is answered by its index table
        parts.append(found[1])
    return Sql("(" + " OR ".join(f"({part.text})" for part in parts) + ")", [x for part in parts for x in part.params])


def _walk_rows(conn: sqlite3.Connection, walk: Sql, value: str, descending: bool, checks: list[Sql],
               after: tuple | None, limit: int) -> list[tuple]:
    """Rows (pk, value) of `walk` after the keyset `after`, in walk order, meeting `checks`; at most
    `limit`."""
    text, params = walk.text, list(walk.params)
    if after is not None:
        text += f" AND ({value} {'<' if descending else '>'} ? OR ({value} = ? AND r.pk > ?))"
        params += [after[0], after[0], after[1]]
    for check in checks:
        text += f" AND {check.text}"
        params += check.params
    # ties by the index row's own pk: a value index's entries end with it (WITHOUT ROWID), so an ascending
    # walk needs no sort of a large tie (a common family name)
    tie = "s.pk" if value.startswith("s.") else "r.pk"
    text += f" ORDER BY {value} {'DESC' if descending else 'ASC'}, {tie} ASC LIMIT ?"
    return conn.execute(text, [*params, limit]).fetchall()


def _walk_in_chunks(conn: sqlite3.Connection, fetch: Callable[[tuple | None, int], list[tuple]],
                    checks: list[Sql], after: tuple | None, count: int, budget: int,
                    give_up: bool = True) -> tuple[list[tuple], bool] | None:
    """The walk over at most `budget` index rows, WALK_CHUNK at a time (`fetch(after, limit)`: rows
    (pk, value) after the keyset, in walk order): each chunk read in order without the clauses, then its
    pks checked against them in one query (one statement can not stop after a number of rows read:
    SQLite would materialize the whole budget). It gives up as soon as the rate of matches so far says
    the page would not fill within the budget (none in the first chunk, or too few), so a clause too
    selective to walk for costs one chunk; `give_up=False` reads on to the budget (a search already
    known to be broad)."""
    rows_: list[tuple] = []
    seen: set[int] = set()
    read = 0
    while read < budget:
        chunk = fetch(after, WALK_CHUNK)
        if not chunk:
            return None
        read += len(chunk)
        after = (chunk[-1][1], chunk[-1][0])
        if checks:
            marks = ",".join("?" * len(chunk))
            text = f"SELECT r.pk FROM resources r WHERE r.pk IN ({marks})" + "".join(
                f" AND {check.text}" for check in checks)
            kept = {row[0] for row in conn.execute(text, [*(row[0] for row in chunk),
                                                          *(p for check in checks for p in check.params)])}
        else:
            kept = {row[0] for row in chunk}
        for row in chunk:
            if row[0] in kept and row[0] not in seen:
                seen.add(row[0])
                rows_.append(row)
        if len(rows_) > count:
            return rows_[:count], True
        if give_up and (not rows_ or read * (count + 1) > budget * len(rows_)):
            return None  # at this rate the page would not fill within the budget: not worth reading on
    return None


class _Unwalkable(Exception):
    """The token walk met a code tied across more than TOKEN_SYSTEMS systems, or read TOKEN_SCAN rows
    of resources sorted under another code: it leaves the page to the general query."""


def _token_rows(conn: sqlite3.Connection, sp: int, descending: bool, after: tuple | None,
                limit: int) -> list[tuple]:
    """Rows (pk, code) of resources in token sort order after the keyset `after` (code, pk): by their
    lowest code ascending (highest descending), then pk, at most `limit`.

    The token index runs (sp, code, system, pk): within one code it is ordered by pk per system only.
    So a code is read system by system (each system found by an index seek, each read in pk order),
    and those runs are merged: a code shared by 500,000 resources costs one page's rows, not a sort of
    the whole tie (which is what the general query's ORDER BY, and SQLite's own plan, do)."""
    found: list[tuple] = []
    scanned = [0]
    code, last = after if after is not None else (_next_code(conn, sp, descending, None), None)
    while code is not None and len(found) < limit:
        need = limit - len(found)
        tie = _tie(conn, sp, descending, code, last, need, scanned)
        found += [(pk, code) for pk in tie]
        if len(tie) == need:
            break
        code, last = _next_code(conn, sp, descending, code), None
    return found


def _next_code(conn: sqlite3.Connection, sp: int, descending: bool, code: str | None) -> str | None:
    """The code after `code` in walk order (the first one for None), by one index seek."""
    aggregate, compare = ("max", "<") if descending else ("min", ">")
    bound = "" if code is None else f" AND code {compare} ?"
    row = conn.execute(f"SELECT {aggregate}(code) FROM idx_token WHERE sp = ? AND rep = 0{bound}",
                       [sp] if code is None else [sp, code]).fetchone()
    return row[0]


def _tie(conn: sqlite3.Connection, sp: int, descending: bool, code: str, last: int | None, need: int,
         scanned: list[int]) -> list[int]:
    """The first `need` pks after `last` of the live resources whose sort value is `code`, ascending
    (`scanned`: index rows read so far by this walk, a one-item counter)."""
    systems: list[str] = []
    while True:
        bound = "" if not systems else " AND system > ?"
        row = conn.execute(f"SELECT min(system) FROM idx_token WHERE sp = ? AND code = ?{bound}",
                           [sp, code, *systems[-1:]]).fetchone()
        if row[0] is None:
            break
        systems.append(row[0])
        if len(systems) > TOKEN_SYSTEMS:
            raise _Unwalkable
    runs = [_run(conn, sp, descending, code, system, last, need, scanned) for system in systems]
    merged = runs[0] if len(runs) == 1 else list(dict.fromkeys(heapq.merge(*runs)))
    return merged[:need]


def _run(conn: sqlite3.Connection, sp: int, descending: bool, code: str, system: str, last: int | None,
         need: int, scanned: list[int]) -> list[int]:
    """Up to `need` pks after `last` with (code, system) whose resource sorts under `code`, ascending:
    index rows read `need` at a time, each batch kept to the live resources whose lowest (highest) code
    this is."""
    aggregate = "max" if descending else "min"
    kept: list[int] = []
    while len(kept) < need:
        batch = [row[0] for row in conn.execute(
            "SELECT pk FROM idx_token WHERE sp = ? AND code = ? AND system = ? AND rep = 0"
            + ("" if last is None else " AND pk > ?") + " ORDER BY pk LIMIT ?",
            [sp, code, system, *([] if last is None else [last]), need])]
        if not batch:
            break
        scanned[0] += len(batch)
        if scanned[0] > TOKEN_SCAN:
            raise _Unwalkable
        marks = ",".join("?" * len(batch))
        sorted_here = {row[0] for row in conn.execute(
            f"SELECT v.pk FROM idx_token v JOIN resources r ON r.pk = v.pk WHERE v.pk IN ({marks}) AND v.sp = ? "
            f"AND v.rep = 0 AND r.deleted = 0 GROUP BY v.pk HAVING {aggregate}(v.code) = ?", [*batch, sp, code])}
        kept += [pk for pk in batch if pk in sorted_here]
        last = batch[-1]
        if len(batch) < need:
            break
    return kept[:need]


def _page(
    conn: sqlite3.Connection, query: SearchQuery, found: Sql, position: cursors.Cursor | None
) -> tuple[list[tuple], bool]:
    """Rows (pk, sort values...) of the page, in order, and whether more rows lie beyond it."""
    sql = page_sql(query, found, position)
    fetched = conn.execute(sql.text, sql.params).fetchall()
    more = len(fetched) > query.count
    page = fetched[: query.count]
    if position is not None and not position.forward:
        page.reverse()
    return page, more


def execute(conn: sqlite3.Connection, query: SearchQuery) -> SearchPage:
    """Run `query`: one page of matches, their includes, the total if asked, and paging cursors."""
    compiler = Compiler(query.base_url, conn)
    signature = query.signature()
    position = None
    if query.cursor is not None:
        position = cursors.decode(query.cursor, signature, len(query.sort) + 1)
    page: list[tuple] = []
    more = False
    if query.count > 0:
        walked = _walk_sorted(conn, compiler, query, position) if query.sort else None
        if walked is None:
            # a page in pk order can walk the type when every filter is broad; a sort needs them all
            found = compiler.filter(query.types, query.where, "r", walk_if_broad=not query.sort)
            walked = _page(conn, query, found, position)
        page, more = walked
    total = None
    if query.total in ("accurate", "estimate"):
        counted = compiler.filter(query.types, query.where, "r")
        total = conn.execute(f"SELECT count(*) {counted.text}", counted.params).fetchone()[0]
    elif query.total == "auto" and position is None and not more and query.count > 0:
        total = len(page)
    forward = position is None or position.forward
    next_cursor = previous_cursor = None
    if page:
        if (more and forward) or (position is not None and not forward):
            next_cursor = cursors.encode(cursors.Cursor(True, _keys(page[-1])), signature)
        if position is not None and (forward or more):
            previous_cursor = cursors.encode(cursors.Cursor(False, _keys(page[0])), signature)
    matches = rows.load_current(conn, [row[0] for row in page], query.group_members)
    included = _includes(conn, compiler, query.include, matches_of(conn, [row[0] for row in page]))
    return SearchPage(matches, rows.load_current(conn, included, query.group_members), total, next_cursor,
                      previous_cursor)


def _keys(row: tuple) -> tuple:
    """Cursor keys: the sort values, then pk (the query returns pk first)."""
    return (*row[1:], row[0])


def matches_of(conn: sqlite3.Connection, pks: list[int]) -> list[tuple[int, str, str]]:
    found: dict[int, tuple[int, str, str]] = {}
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        sql = f"SELECT pk, type, id FROM resources WHERE pk IN ({','.join('?' * len(chunk))})"
        for row in conn.execute(sql, chunk):
            found[row[0]] = row
    return [found[pk] for pk in pks if pk in found]


# -- _include / _revinclude ---------------------------------------------------------------------


def _includes(
    conn: sqlite3.Connection,
    compiler: Compiler,
    wanted: Sequence[Include],
    matches: list[tuple[int, str, str]],
) -> list[int]:
    """Every resource the includes reach from the matches (and, for :iterate, from what they add)."""
    if not wanted or not matches:
        return []
    seen = {row[0] for row in matches}
    added: list[int] = []
    frontier = matches
    first = True
    while frontier:
        reached: list[tuple[int, str, str]] = []
        for include in wanted:
            if not first and not include.iterate:
                continue
            for row in _follow(conn, compiler, include, frontier):
                if row[0] not in seen:
                    seen.add(row[0])
                    added.append(row[0])
                    reached.append(row)
        frontier = reached
        first = False
    return added


def forward_include_sql(compiler: Compiler, include: Include, source_pks: Sequence[int]) -> Sql:
    """The resources that `include.keys` of the `source_pks` resources point to (on this server)."""
    local = compiler.local("x")
    ids = sorted({param_id(include.source, key) for key in include.keys})
    target = " AND t.type = ?" if include.target else ""
    return Sql(
        "SELECT DISTINCT t.pk, t.type, t.id FROM idx_reference x "
        "JOIN resources t ON t.type = x.type AND t.id = x.id "
        f"WHERE x.pk IN ({','.join('?' * len(source_pks))}) AND x.sp IN ({','.join('?' * len(ids))}) "
        f"AND x.rep = 0 AND t.deleted = 0 AND {local.text}{target}",
        [*source_pks, *ids, *local.params, *([include.target] if include.target else [])],
    )


def reverse_include_sql(compiler: Compiler, include: Include, type_: str, target_ids: Sequence[str]) -> Sql:
    """The `include.source` resources whose `include.keys` point to `type_` resources with these ids."""
    local = compiler.local("x")
    ids = sorted({param_id(include.source, key) for key in include.keys})
    return Sql(
        "SELECT DISTINCT r.pk, r.type, r.id FROM idx_reference x JOIN resources r ON r.pk = x.pk "
        f"WHERE x.sp IN ({','.join('?' * len(ids))}) AND x.id IN ({','.join('?' * len(target_ids))}) "
        f"AND x.type = ? AND x.rep = 0 AND r.deleted = 0 AND {local.text}",
        [*ids, *target_ids, type_, *local.params],
    )


def _follow(
    conn: sqlite3.Connection, compiler: Compiler, include: Include, current: list[tuple[int, str, str]]
) -> Iterable[tuple[int, str, str]]:
    if not include.reverse:
        sources = [pk for pk, type_, _ in current if type_ == include.source]
        for start in range(0, len(sources), CHUNK):
            sql = forward_include_sql(compiler, include, sources[start : start + CHUNK])
            yield from conn.execute(sql.text, sql.params)
        return
    by_type: dict[str, list[str]] = defaultdict(list)
    for _, type_, id_ in current:
        if include.target is None or include.target == type_:
            by_type[type_].append(id_)
    for type_, targets in by_type.items():
        for start in range(0, len(targets), CHUNK):
            sql = reverse_include_sql(compiler, include, type_, targets[start : start + CHUNK])
            yield from conn.execute(sql.text, sql.params)
