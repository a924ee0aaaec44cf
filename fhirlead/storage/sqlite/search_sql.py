"""Compiling the search IR into SQLite SQL over the index tables.

Every predicate compiles two ways: as a *check* on a resource row `r` (a correlated EXISTS that seeks
the index table's primary key (pk, sp, ...)) and, when it can, as a *driver* (a SELECT of the pks that
have a matching value, seeking the (sp, value) index). A query is answered by picking the most
selective clause as driver — `r.pk IN (driver)` — and checking the rest per candidate, so no search
reads the resources or an index table from end to end. A query with no drivable clause (only `:not`
or `:missing=true`, or no filter at all) lists the type through the (type, deleted) index.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fhirlead.search.normalize import prefix_upper_bound
from fhirlead.search.query import (
    Chain,
    Clause,
    Compartment,
    CompositeMatch,
    Has,
    IdMatch,
    InList,
    LastUpdated,
    Missing,
    Predicate,
    RangeMatch,
    ReferenceMatch,
    StringMatch,
    TokenMatch,
    UriMatch,
)
from fhirlead.search.types.quantity import CANONICAL
from fhirlead.search.types.uri import above_prefixes
from fhirlead.storage.sqlite.index import param_id, table

# Lower is more selective: the clause used to drive the query is the one with the lowest rank.
NOT_DRIVABLE = 99
PROBE_LIMITS = (200, 2_000, 20_000)  # rounds of the driver race (see Compiler.choose_driver)


@dataclass
class Sql:
    text: str
    params: list[Any] = field(default_factory=list)


def _marks(count: int) -> str:
    return ",".join("?" * count)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Compiler:
    """SQL for one query; `base_url` lets absolute references to this server count as local."""

    def __init__(self, base_url: str, conn: sqlite3.Connection | None = None) -> None:
        self.base_url = base_url
        self.conn = conn  # for probing driver sizes; None = static ranking only
        self._alias = 0
        self._decisions: dict[tuple, tuple[int | None, bool]] = {}

    def alias(self, stem: str) -> str:
        self._alias += 1
        return f"{stem}{self._alias}"

    # -- building blocks ---------------------------------------------------------------------

    def sp(self, column: str, types: Sequence[str], key: str) -> Sql:
        ids = sorted({param_id(type_, key) for type_ in types})
        if len(ids) == 1:
            return Sql(f"{column} = ?", ids)
        return Sql(f"{column} IN ({_marks(len(ids))})", ids)

    def local(self, a: str) -> Sql:
        """The reference row `a` points at a resource on this server."""
        if not self.base_url:
            return Sql(f"{a}.url = ''")
        return Sql(f"({a}.url = '' OR {a}.url = ? || '/' || {a}.type || '/' || {a}.id)", [self.base_url])

    # -- predicates on one index table -------------------------------------------------------

    def value_condition(self, p: Predicate, types: Sequence[str], a: str) -> tuple[str, Sql] | None:
        """(table, condition on alias `a`) for predicates answered by one index table."""
        if isinstance(p, StringMatch):
            return "string", self._and(self.sp(f"{a}.sp", types, p.key), self._string(p, a))
        if isinstance(p, TokenMatch):
            return "token", self._and(self.sp(f"{a}.sp", types, p.key), self._token(p, a))
        if isinstance(p, RangeMatch):
            kind = "date" if p.kind == "date" else p.kind
            return kind, self._and(self.sp(f"{a}.sp", types, p.key), self._range(p, a))
        if isinstance(p, ReferenceMatch):
            return "reference", self._and(self.sp(f"{a}.sp", types, p.key), self._reference(p, a))
        if isinstance(p, UriMatch):
            return "uri", self._and(self.sp(f"{a}.sp", types, p.key), self._uri(p, a))
        if isinstance(p, Missing):
            return p.kind, self.sp(f"{a}.sp", types, p.key)
        return None

    @staticmethod
    def _and(*parts: Sql) -> Sql:
        texts = [part.text for part in parts if part.text]
        return Sql(" AND ".join(texts), [param for part in parts for param in part.params])

    @staticmethod
    def _string(p: StringMatch, a: str) -> Sql:
        if p.mode == "exact":
            from fhirlead.search.normalize import fold

            return Sql(f"{a}.norm = ? AND {a}.exact = ?", [fold(p.value), p.value])
        if p.mode == "contains":
            return Sql(f"{a}.norm LIKE ? ESCAPE '\\'", [f"%{_like_escape(p.value)}%"])
        if not p.value:
            return Sql("")
        return Sql(f"{a}.norm >= ? AND {a}.norm < ?", [p.value, prefix_upper_bound(p.value)])

    @staticmethod
    def _token(p: TokenMatch, a: str) -> Sql:
        parts, params = [], []
        if p.code is not None:
            parts.append(f"{a}.code = ?")
            params.append(p.code)
        if p.system is not None:
            parts.append(f"{a}.system = ?")
            params.append(p.system)
        return Sql(" AND ".join(parts), params)

    @staticmethod
    def _range(p: RangeMatch, a: str) -> Sql:
        lo, hi = f"{a}.lo", f"{a}.hi"
        extra: list[str] = []
        extra_params: list[Any] = []
        if p.kind == "quantity":
            if p.system is not None:
                extra.append(f"{a}.system = ?")
                extra_params.append(p.system)
            else:
                extra.append(f"{a}.system != ?")
                extra_params.append(CANONICAL)
            if p.code is not None:
                extra.append(f"{a}.code = ?")
                extra_params.append(p.code)
            if p.unit is not None:
                extra.append(f"({a}.code = ? OR {a}.unit = ?)")
                extra_params += [p.unit, p.unit]
        if p.kind == "date":
            text, params = _date_condition(p.prefix, lo, hi, p.low, p.high)
        else:
            text, params = _number_condition(p.prefix, lo, hi, p.low, p.high, p.value)
        return Sql(" AND ".join([*extra, text]), [*extra_params, *params])

    def _reference(self, p: ReferenceMatch, a: str) -> Sql:
        if p.url is not None:
            parts, params = [f"{a}.url = ?", f"{a}.url != ''"], [p.url]
            if p.version is not None:
                parts.append(f"{a}.version = ?")
                params.append(p.version)
            return Sql(" AND ".join(parts), params)
        if p.type is not None:
            if self.base_url:
                return Sql(
                    f"{a}.id = ? AND {a}.type = ? AND ({a}.url = '' OR {a}.url = ?)",
                    [p.id, p.type, f"{self.base_url}/{p.type}/{p.id}"],
                )
            return Sql(f"{a}.id = ? AND {a}.type = ? AND {a}.url = ''", [p.id, p.type])
        local = self.local(a)
        return Sql(f"{a}.id = ? AND {local.text}", [p.id, *local.params])

    @staticmethod
    def _uri(p: UriMatch, a: str) -> Sql:
        if p.mode == "below":
            return Sql(f"{a}.uri >= ? AND {a}.uri < ?", [p.value, prefix_upper_bound(p.value)])
        if p.mode == "above":
            prefixes = above_prefixes(p.value)
            return Sql(f"{a}.uri IN ({_marks(len(prefixes))})", prefixes)
        return Sql(f"{a}.uri = ?", [p.value])

    # -- checks and drivers ------------------------------------------------------------------

    def check(self, p: Predicate, types: Sequence[str], r: str) -> Sql:
        """SQL that is true when resource row `r` satisfies `p`."""
        simple = self.value_condition(p, types, a := self.alias("v"))
        if simple is not None:
            kind, condition = simple
            exists = Sql(
                f"EXISTS (SELECT 1 FROM {table(kind)} {a} WHERE {a}.pk = {r}.pk AND {condition.text})",
                condition.params,
            )
            if isinstance(p, Missing) and p.missing:
                return Sql(f"NOT {exists.text}", exists.params)
            return exists
        if isinstance(p, IdMatch):
            return Sql(f"{r}.id IN ({_marks(len(p.ids))})", list(p.ids))
        if isinstance(p, LastUpdated):
            text, params = _point_condition(p.prefix, f"{r}.updated_us", p.low, p.high)
            return Sql(text, params)
        if isinstance(p, CompositeMatch):
            joined = self._composite(p, types)
            return Sql(f"EXISTS (SELECT 1 {joined.text} AND {joined.first}.pk = {r}.pk)", joined.params)
        if isinstance(p, Chain):
            source = self._chain_refs(p, types, check=True)
            return Sql(f"EXISTS (SELECT 1 {source.text} AND {source.first}.pk = {r}.pk)", source.params)
        if isinstance(p, Has | InList):
            refs = self._has_refs(p, check=True) if isinstance(p, Has) else self._list_refs(p)
            a = refs.first
            return Sql(
                f"EXISTS (SELECT 1 FROM idx_reference {a} WHERE {refs.text} AND {a}.id = {r}.id "
                f"AND {a}.type = {r}.type)",
                refs.params,
            )
        if isinstance(p, Compartment):
            refs = self._compartment_refs(p, types)
            own = Sql(f"({r}.type = ? AND {r}.id = ?)", [p.owner_type, p.owner_id])
            text = f"(EXISTS (SELECT 1 {refs.text} AND {refs.first}.pk = {r}.pk) OR {own.text})"
            return Sql(text, [*refs.params, *own.params])
        raise TypeError(f"unknown predicate {p!r}")

    def drive(self, p: Predicate, types: Sequence[str]) -> Sql | None:
        """SQL selecting the pks of resources satisfying `p` (duplicates allowed), or None."""
        if isinstance(p, Missing) and p.missing:
            return None
        if isinstance(p, RangeMatch) and p.kind == "date" and p.prefix in ("ge", "le"):
            # "after (or before) the range, or inside it": two disjoint index ranges, each streamed.
            # As one OR, SQLite would collect both branches in full before the first row.
            sp = self.sp("d.sp", types, p.key)
            outside = ("d.hi > ?", [p.high]) if p.prefix == "ge" else ("d.lo < ?", [p.low])
            return Sql(
                f"SELECT d.pk FROM idx_date d WHERE {sp.text} AND {outside[0]} UNION ALL "
                f"SELECT d.pk FROM idx_date d WHERE {sp.text} AND d.lo >= ? AND d.lo <= ? AND +d.hi <= ?",
                [*sp.params, *outside[1], *sp.params, p.low, p.high, p.high],
            )
        simple = self.value_condition(p, types, a := self.alias("d"))
        if simple is not None:
            kind, condition = simple
            return Sql(f"SELECT {a}.pk FROM {table(kind)} {a} WHERE {condition.text}", condition.params)
        if isinstance(p, IdMatch):
            return Sql(
                f"SELECT pk FROM resources WHERE type IN ({_marks(len(types))}) "
                f"AND id IN ({_marks(len(p.ids))}) AND deleted = 0",
                [*types, *p.ids],
            )
        if isinstance(p, LastUpdated):
            text, params = _point_condition(p.prefix, "updated_us", p.low, p.high)
            return Sql(
                f"SELECT pk FROM resources WHERE type IN ({_marks(len(types))}) AND deleted = 0 AND {text}",
                [*types, *params],
            )
        if isinstance(p, CompositeMatch):
            joined = self._composite(p, types)
            return Sql(f"SELECT {joined.first}.pk {joined.text}", joined.params)
        if isinstance(p, Chain):
            source = self._chain_refs(p, types)
            return Sql(f"SELECT {source.first}.pk {source.text}", source.params)
        if isinstance(p, Has | InList):
            refs = self._has_refs(p) if isinstance(p, Has) else self._list_refs(p)
            a, t = refs.first, self.alias("t")
            return Sql(
                f"SELECT {t}.pk FROM idx_reference {a} "
                f"JOIN resources {t} ON {t}.type = {a}.type AND {t}.id = {a}.id "
                f"WHERE {refs.text} AND {t}.type IN ({_marks(len(types))}) AND {t}.deleted = 0",
                [*refs.params, *types],
            )
        if isinstance(p, Compartment):
            refs = self._compartment_refs(p, types)
            text = f"SELECT {refs.first}.pk {refs.text}"
            params = list(refs.params)
            if p.owner_type in types:
                text += " UNION ALL SELECT pk FROM resources WHERE type = ? AND id = ? AND deleted = 0"
                params += [p.owner_type, p.owner_id]
            return Sql(text, params)
        return None

    # -- composite, chain, _has, _list, compartment ------------------------------------------

    def _composite(self, p: CompositeMatch, types: Sequence[str]) -> _Joined:
        joins, params, first = [], [], ""
        where = Sql("")
        for component in p.components:
            a = self.alias("c")
            found = self.value_condition(component, types, a)
            if found is None:
                raise TypeError(f"composite component {component!r}")
            kind, condition = found
            if not first:
                first = a
                joins.append(f"FROM {table(kind)} {a}")
                where = condition
            else:
                joins.append(
                    f"JOIN {table(kind)} {a} ON {a}.pk = {first}.pk AND {a}.rep = {first}.rep "
                    f"AND {condition.text}"
                )
                params += condition.params
        return _Joined(
            " ".join(joins) + f" WHERE {first}.rep > 0 AND {where.text}", [*params, *where.params], first
        )

    def _chain_refs(self, p: Chain, types: Sequence[str], check: bool = False) -> _Joined:
        """References in `p.key` to target resources matching the chained clauses (one join, so the
        target match list is computed once and each reference is found through (sp, id, type)).

        `check`: the fragment tests one source resource (correlated on the reference's pk). The
        target list is then only a membership test ("+" keeps SQLite from using `IN` as an equality
        constraint on the (type, id, pk) index, which would seek once per listed target, per row)."""
        a, t = self.alias("x"), self.alias("t")
        targets = self.match(p.types, p.where)
        sp = self.sp(f"{a}.sp", types, p.key)
        local = self.local(a)
        member = f"+{t}.pk" if check else f"{t}.pk"
        text = (
            f"FROM resources {t} JOIN idx_reference {a} ON {a}.id = {t}.id AND {a}.type = {t}.type "
            f"WHERE {member} IN ({targets.text}) AND {sp.text} AND {local.text}"
        )
        return _Joined(text, [*targets.params, *sp.params, *local.params], a)

    def _has_refs(self, p: Has, check: bool = False) -> _Joined:
        """Conditions on reference rows (`first` alias, no FROM): via `p.key` from `p.type` resources
        matching `p.where`. `check`: the rows are found by (sp, id, type) of one target, and the source
        list is only a membership test (see `_chain_refs`)."""
        a = self.alias("h")
        sources = self.match((p.type,), p.where)
        local = self.local(a)
        member = f"+{a}.pk" if check else f"{a}.pk"
        return _Joined(
            f"{a}.sp = ? AND {member} IN ({sources.text}) AND {local.text}",
            [param_id(p.type, p.key), *sources.params, *local.params],
            a,
        )

    def _list_refs(self, p: InList) -> _Joined:
        """Conditions on reference rows (`first` alias, no FROM): the items of List/`p.list_id`."""
        a, lst = self.alias("l"), self.alias("list")
        local = self.local(a)
        return _Joined(
            f"{a}.sp = ? AND {a}.pk IN (SELECT {lst}.pk FROM resources {lst} WHERE {lst}.type = 'List' "
            f"AND {lst}.id = ? AND {lst}.deleted = 0) AND {local.text}",
            [param_id("List", "item"), p.list_id, *local.params],
            a,
        )

    def _compartment_refs(self, p: Compartment, types: Sequence[str]) -> _Joined:
        a = self.alias("k")
        wanted = set(types)
        ids = sorted({param_id(type_, key) for type_, keys in p.params if type_ in wanted for key in keys})
        if not ids:
            return _Joined(f"FROM idx_reference {a} WHERE 0", [], a)
        local = self.local(a)
        text = (
            f"FROM idx_reference {a} WHERE {a}.sp IN ({_marks(len(ids))}) AND {a}.id = ? AND {a}.type = ? "
            f"AND {local.text}"
        )
        return _Joined(text, [*ids, p.owner_id, p.owner_type, *local.params], a)

    # -- whole queries -----------------------------------------------------------------------

    def clause_check(self, clause: Clause, types: Sequence[str], r: str) -> Sql:
        parts = [self.check(p, types, r) for p in clause.any_of]
        text = parts[0].text if len(parts) == 1 else "(" + " OR ".join(part.text for part in parts) + ")"
        if clause.negate:
            text = f"NOT ({text})"
        return Sql(text, [param for part in parts for param in part.params])

    def clause_drive(self, clause: Clause, types: Sequence[str]) -> Sql | None:
        if clause.negate:
            return None
        drives = [self.drive(p, types) for p in clause.any_of]
        if any(d is None for d in drives):
            return None
        return Sql(
            " UNION ALL ".join(d.text for d in drives if d), [x for d in drives if d for x in d.params]
        )

    def choose_driver(self, types: Sequence[str], where: Sequence[Clause]) -> tuple[int | None, bool]:
        """(index of the clause to drive the query with, whether every candidate is broad).

        Candidates are ordered by a static selectivity rank. With a connection at hand they are then
        raced: each is counted up to a limit that grows tenfold per round (200, 2,000, 20,000), and
        the smallest one that finishes under the limit wins. A selective first candidate (the usual
        case: an id or a reference) is settled by one tiny probe; a selective chain still beats a
        common code; no probe reads more than ten times the winner's size. When nothing finishes, the
        candidates are all broad: the caller may then walk the type in pk order and check each
        clause, which fills a page after a few rows instead of materializing a huge driver list.
        The decision is remembered per (types, clauses), so the page and the count agree.
        """
        memo_key = (tuple(types), tuple(where))
        if memo_key in self._decisions:
            return self._decisions[memo_key]
        candidates = self._candidates(types, where)
        decision: tuple[int | None, bool] = (candidates[0][0] if candidates else None, False)
        if candidates and self.conn is not None:
            decision = self._race(candidates)
        self._decisions[memo_key] = decision
        return decision

    def _candidates(self, types: Sequence[str], where: Sequence[Clause]) -> list[tuple[int, Sql, bool]]:
        """The drivable clauses, by static rank: (index, driver SQL, nested)."""
        candidates = []
        for index in sorted(range(len(where)), key=lambda i: clause_rank(where[i])):
            if clause_rank(where[index]) >= NOT_DRIVABLE:
                break
            driver = self.clause_drive(where[index], types)
            if driver is not None:
                nested = any(isinstance(p, Chain | Has) for p in where[index].any_of)
                candidates.append((index, driver, nested))
        return candidates

    def first_is_selective(self, types: Sequence[str], where: Sequence[Clause]) -> bool:
        """Whether the best-ranked drivable clause matches fewer than the race's second limit (2,000): a
        page sorted from that few is cheap to compute. Under the first limit that is the race's own
        decision, remembered as such; above it the race, if it runs, compares every candidate."""
        memo = self._decisions.get((tuple(types), tuple(where)))
        if memo is not None:
            return memo[0] is not None and not memo[1]
        candidates = self._candidates(types, where)
        if not candidates or self.conn is None:
            return False
        count = self.probe(candidates[0][1], PROBE_LIMITS[1])
        if count < PROBE_LIMITS[0]:
            self._decisions[(tuple(types), tuple(where))] = (candidates[0][0], False)
        return count < PROBE_LIMITS[1]

    def _race(self, candidates: list[tuple[int, Sql, bool]]) -> tuple[int | None, bool]:
        """Count candidates in rounds; a nested one (chain, _has: each probe recomputes its inner
        match) only enters the last round, unless it is the first candidate."""
        first_index, first_driver, _ = candidates[0]
        if self.probe(first_driver, PROBE_LIMITS[0]) < PROBE_LIMITS[0]:
            return first_index, False
        for limit in PROBE_LIMITS[1:]:
            last_round = limit == PROBE_LIMITS[-1]
            best: tuple[int, int] | None = None  # (count, index) of the smallest finisher so far
            for index, driver, nested in candidates:
                if nested and not last_round:
                    continue
                cap = limit if best is None else best[0]
                count = self.probe(driver, cap)
                if count < cap:
                    best = (count, index)
            if best is not None:
                return best[1], False
        return first_index, True

    def probe(self, driver: Sql, limit: int) -> int:
        """How many rows `driver` yields, counting no further than `limit`."""
        assert self.conn is not None
        sql = f"SELECT count(*) FROM (SELECT 1 FROM ({driver.text}) LIMIT ?)"
        return int(self.conn.execute(sql, [*driver.params, limit]).fetchone()[0])

    def filter(
        self, types: Sequence[str], where: Sequence[Clause], r: str, walk_if_broad: bool = False
    ) -> Sql:
        """`FROM resources r WHERE ...`: the live resources of `types` matching every clause.

        `walk_if_broad`: when every drivable clause matches very many resources, list the type in pk
        order (its index) and check every clause per row, so that a page ordered by pk stops early.
        """
        driver_index, broad = self.choose_driver(types, where)
        if broad and walk_if_broad:
            driver_index = None
        parts: list[Sql] = []
        if driver_index is not None:
            driver = self.clause_drive(where[driver_index], types)
            assert driver is not None
            parts.append(Sql(f"{r}.pk IN ({driver.text}) AND {r}.deleted = 0", driver.params))
        else:
            parts.append(Sql(f"{r}.type IN ({_marks(len(types))}) AND {r}.deleted = 0", list(types)))
        for index, clause in enumerate(where):
            if index != driver_index:
                parts.append(self.clause_check(clause, types, r))
        joined = self._and(*parts)
        return Sql(f"FROM resources {r} WHERE {joined.text}", joined.params)

    def match(self, types: Sequence[str], where: Sequence[Clause]) -> Sql:
        """SQL selecting the pks of the matching resources (for chains and `_has`)."""
        r = self.alias("m")
        found = self.filter(types, where, r)
        return Sql(f"SELECT {r}.pk {found.text}", found.params)


@dataclass
class _Joined:
    """A FROM ... WHERE ... fragment and the alias of its first table (whose pk is the match)."""

    text: str
    params: list[Any]
    first: str


# -- comparison semantics (https://hl7.org/fhir/R4/search.html#prefix) ---------------------------


def _date_condition(prefix: str, lo: str, hi: str, low: int | float, high: int | float) -> tuple[str, list]:
    """Target range [lo, hi) against the search range [low, high)."""
    # "+": let the index range be on lo, bounded on both sides (lo <= hi <= high: the bound changes no
    # answer, but without it SQLite scans from `low` to the index's end, every later date)
    contained = f"({lo} >= ? AND {lo} <= ? AND +{hi} <= ?)"
    table_ = {
        "eq": (contained, [low, high, high]),
        "ne": (f"NOT {contained}", [low, high, high]),
        "gt": (f"{hi} > ?", [high]),
        "lt": (f"{lo} < ?", [low]),
        "ge": (f"({hi} > ? OR {contained})", [high, low, high, high]),
        "le": (f"({lo} < ? OR {contained})", [low, low, high, high]),
        "sa": (f"{lo} >= ?", [high]),
        "eb": (f"{hi} <= ?", [low]),
        "ap": (f"({lo} < ? AND {hi} > ?)", [high, low]),
    }
    return table_[prefix]


def _number_condition(
    prefix: str, lo: str, hi: str, low: float, high: float, value: float | None
) -> tuple[str, list]:
    """Target [lo, hi] (a single value has lo == hi) against the search value and its range [low, high)."""
    exact = value if value is not None else (low + high) / 2
    margin = abs(exact) * 0.1
    inside = f"({lo} >= ? AND {hi} < ?)"
    table_ = {
        "eq": (inside, [low, high]),
        "ne": (f"NOT {inside}", [low, high]),
        "gt": (f"{hi} > ?", [exact]),
        "lt": (f"{lo} < ?", [exact]),
        "ge": (f"{hi} >= ?", [exact]),
        "le": (f"{lo} <= ?", [exact]),
        "sa": (f"{lo} > ?", [exact]),
        "eb": (f"{hi} < ?", [exact]),
        "ap": (f"({lo} <= ? AND {hi} >= ?)", [exact + margin, exact - margin]),
    }
    return table_[prefix]


def _point_condition(prefix: str, column: str, low: int, high: int) -> tuple[str, list]:
    """A point in time (one microsecond wide) against the search range [low, high)."""
    table_ = {
        "eq": (f"({column} >= ? AND {column} < ?)", [low, high]),
        "ne": (f"NOT ({column} >= ? AND {column} < ?)", [low, high]),
        "gt": (f"{column} >= ?", [high]),
        "lt": (f"{column} < ?", [low]),
        "ge": (f"{column} >= ?", [low]),
        "le": (f"{column} < ?", [high]),
        "sa": (f"{column} >= ?", [high]),
        "eb": (f"{column} < ?", [low]),
        "ap": (f"({column} >= ? AND {column} < ?)", [low, high]),
    }
    return table_[prefix]


# -- driver choice ------------------------------------------------------------------------------


def predicate_rank(p: Predicate) -> int:
    if isinstance(p, IdMatch):
        return 0
    if isinstance(p, ReferenceMatch | Compartment | InList):
        return 1
    if isinstance(p, TokenMatch):
        if p.code is None:
            return 7
        return 2 if p.system is not None else 3
    if isinstance(p, StringMatch):
        if p.mode == "exact":
            return 2
        if p.mode == "contains":
            return 8
        return 3 if len(p.value) >= 3 else 6
    if isinstance(p, UriMatch):
        return 2 if p.mode == "eq" else 5
    if isinstance(p, CompositeMatch):
        return min(predicate_rank(c) for c in p.components) + 1
    if isinstance(p, Chain | Has):
        return 4
    if isinstance(p, RangeMatch):
        return 5 if p.prefix in ("eq", "ap") else 6
    if isinstance(p, LastUpdated):
        return 6
    if isinstance(p, Missing):
        return NOT_DRIVABLE if p.missing else 8
    return NOT_DRIVABLE


def clause_rank(clause: Clause) -> int:
    if clause.negate or not clause.any_of:
        return NOT_DRIVABLE
    return max(predicate_rank(p) for p in clause.any_of)
