"""The aggregation pipeline a MongoDB search runs: pure builders, no I/O (see `search` for the
execution and docs/search.md "How MongoDB search runs").

A search's clauses are first resolved into `Term`s (one per predicate): a condition on the resource's
search_index entries (`entries`: some entry matches; `absent`: none does), a condition on its
`resources` document (`resource`), or both (OR-ed, for compartments). The pipeline then

1. starts from the driving clause: the most selective clause (SQLite's ranking) whose terms are all
   plain entry conditions runs as `$match` on `search_index` (served by the per-kind partial value
   indexes) and `$group`s its pks; `$lookup` joins each pk's `resources` document (unique `pk` index),
   which `$replaceRoot` makes the row. Without such a clause it starts from `resources` by
   `(type, deleted)` plus every resource-only clause (`_id`, `_lastUpdated`: `type_id` and
   `type_updated` indexes);
2. keeps live resources of the searched types, projected to the few fields a row needs;
3. when clauses on entries remain, `$lookup`s the row's entries by pk (`pk_key` index) and `$match`es
   each clause as `$elemMatch` (OR within a clause: `$or`; `:not` and `:missing=true`: `$nor`);
4. computes each sort key's scalar (`$ifNull` with the missing-value sentinel), `$sort`s by them and
   pk, applies the keyset cursor as one `$match` (`$or` of lexicographic comparisons) and `$limit`s.

`_total` runs stages 1 to 3 followed by `$count`. Operators used: `$match`, `$group`, `$lookup`
(localField/foreignField only), `$unwind`, `$replaceRoot`, `$project`, `$addFields`, `$ifNull`,
`$sort`, `$limit`, `$count`, and in filters `$in`, `$or`, `$and`, `$nor`, `$elemMatch`, `$size`,
ranges and `$regex` — the subset MongoDB and the mongomock stand-in both run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhirlead.storage.mongo.documents import MISSING
from fhirlead.storage.mongo.filters import Filter, all_of, one_of_types
from fhirlead.storage.mongo.schema import RESOURCES, SEARCH_INDEX

Stage = dict[str, Any]
ROW_FIELDS = {"pk": 1, "type": 1, "id": 1, "updated_us": 1, "sort": 1}  # what a row keeps of `resources`


@dataclass(frozen=True)
class Term:
    """One resolved predicate: entries matching `entries` exist (none, if `absent`), or the resources
    document matches `resource`."""

    entries: Filter | None = None
    resource: Filter | None = None
    absent: bool = False

    @property
    def plain_entries(self) -> bool:
        return self.entries is not None and self.resource is None and not self.absent

    @property
    def resource_only(self) -> bool:
        return self.entries is None and self.resource is not None


NOTHING: Filter = {"pk": {"$in": []}}


@dataclass(frozen=True)
class ResolvedClause:
    terms: tuple[Term, ...]
    negate: bool = False

    @property
    def drives(self) -> bool:
        """Can run as the `$match` on search_index that starts the pipeline."""
        return not self.negate and bool(self.terms) and all(t.plain_entries for t in self.terms)

    @property
    def on_resource(self) -> bool:
        """Can join the first `$match` on `resources`."""
        return not self.negate and bool(self.terms) and all(t.resource_only for t in self.terms)

    @property
    def needs_entries(self) -> bool:
        return any(t.entries is not None for t in self.terms)


def any_of(filters: Sequence[Filter]) -> Filter:
    if not filters:
        return NOTHING
    return filters[0] if len(filters) == 1 else {"$or": list(filters)}


def conjunctions(filter_: Filter, most: int = 16) -> list[Filter] | None:
    """`filter_` as an OR of flat field conditions (no `$and`/`$or` inside), or None when it is not one
    (a `$nor`, two conditions on a field that do not merge, more than `most` alternatives)."""
    alternatives: list[Filter] = [{}]
    for name, value in filter_.items():
        if name == "$and":
            choices: list[list[Filter]] = []
            for part in value:
                found = conjunctions(part, most)
                if found is None:
                    return None
                choices.append(found)
        elif name == "$or":
            options: list[Filter] = []
            for part in value:
                found = conjunctions(part, most)
                if found is None:
                    return None
                options += found
            choices = [options]
        elif name.startswith("$"):
            return None
        else:
            choices = [[{name: value}]]
        for options in choices:
            merged = [_merge(a, b) for a in alternatives for b in options]
            if any(m is None for m in merged) or len(merged) > most:
                return None
            alternatives = [m for m in merged if m is not None]
    return alternatives


def _merge(a: Filter, b: Filter) -> Filter | None:
    out = dict(a)
    for name, value in b.items():
        if name not in out:
            out[name] = value
        elif isinstance(out[name], dict) and isinstance(value, dict) and not set(out[name]) & set(value) \
                and all(op.startswith("$") for op in (*out[name], *value)):
            out[name] = {**out[name], **value}
        elif out[name] != value:
            return None
    return out


def has_entry(entries: Filter) -> Filter:
    """Some entry in `idx` matches: one `$elemMatch` per flat alternative where there are few (servers
    that answer `$elemMatch` over plain field conditions only get it right too)."""
    flat = conjunctions(entries)
    if flat is None:
        return {"idx": {"$elemMatch": entries}}
    return any_of([{"idx": {"$elemMatch": alternative}} for alternative in flat])


def term_condition(term: Term) -> Filter:
    """The term as a filter on a row carrying its entries in `idx`."""
    parts: list[Filter] = []
    if term.entries is not None:
        has = has_entry(term.entries)
        parts.append({"$nor": [has]} if term.absent else has)
    if term.resource is not None:
        parts.append(term.resource)
    return any_of(parts)


def clause_condition(clause: ResolvedClause) -> Filter:
    either = any_of([term_condition(t) for t in clause.terms])
    return {"$nor": [either]} if clause.negate else either


def match_stages(types: Sequence[str], clauses: Sequence[ResolvedClause]) -> tuple[str, list[Stage]]:
    """Stages 1 to 3 and the collection they run on: one row per live matching resource, fields `_id`
    ("Type/id") and ROW_FIELDS. `clauses` come most selective first."""
    live: Filter = {"type": one_of_types(types), "deleted": False}
    driver = next((c for c in clauses if c.drives), None)
    rest = [c for c in clauses if c is not driver]
    stages: list[Stage]
    collection = SEARCH_INDEX if driver is not None else RESOURCES
    if driver is not None:
        stages = [
            {"$match": any_of([t.entries for t in driver.terms if t.entries is not None])},
            {"$group": {"_id": "$pk"}},
            {"$lookup": {"from": RESOURCES, "localField": "_id", "foreignField": "pk", "as": "r"}},
            {"$unwind": "$r"},
            {"$replaceRoot": {"newRoot": "$r"}},
            {"$match": live},
        ]
    else:
        first = [clause_condition(c) for c in rest if c.on_resource]
        rest = [c for c in rest if not c.on_resource]
        stages = [{"$match": all_of(live, *first)}]
    stages.append({"$project": ROW_FIELDS})
    resource_only = [clause_condition(c) for c in rest if not c.needs_entries]
    if resource_only:
        stages.append({"$match": all_of(*resource_only)})
    on_entries = [clause_condition(c) for c in rest if c.needs_entries]
    if on_entries:
        stages += [
            {"$lookup": {"from": SEARCH_INDEX, "localField": "pk", "foreignField": "pk", "as": "idx"}},
            {"$match": all_of(*on_entries)},
            {"$project": {"idx": 0}},
        ]
    return collection, stages


@dataclass(frozen=True)
class SortColumn:
    """One sort key as a row field: the expression computing it and its direction."""

    field: str
    expression: Any
    descending: bool


def sort_columns(sort: Sequence[Any]) -> list[SortColumn]:
    """`SortKey`s as row columns: `_id`, `_lastUpdated`, or the stored scalar with its sentinel."""
    columns = []
    for number, key in enumerate(sort):
        if key.key == "_id":
            expression: Any = "$id"
        elif key.key == "_lastUpdated":
            expression = "$updated_us"
        else:
            side = "d" if key.descending else "a"
            sentinel = MISSING[key.kind][1 if key.descending else 0]
            expression = {"$ifNull": [f"$sort.{key.kind}.{key.key}.{side}", sentinel]}
        columns.append(SortColumn(f"_s{number}", expression, key.descending))
    return columns


def keyset(columns: Sequence[SortColumn], boundary: Sequence[Any], forward: bool) -> Filter:
    """Rows after (`forward`) or before the boundary row (its column values, then its pk)."""
    fields = [(c.field, c.descending) for c in columns] + [("pk", False)]
    branches: list[Filter] = []
    for depth, (field, descending) in enumerate(fields):
        smaller = descending == forward  # forward on a descending column (or back on an ascending one)
        branch: Filter = {f: boundary[n] for n, (f, _) in enumerate(fields[:depth])}
        branch[field] = {"$lt" if smaller else "$gt": boundary[depth]}
        branches.append(branch)
    return any_of(branches)


def page_stages(sort: Sequence[Any], boundary: Sequence[Any] | None, forward: bool, count: int) -> list[Stage]:
    """Stage 4: order, keyset and limit (count + 1, to know whether more lie beyond); rows carry
    `_s0`… and `pk`. A backward page comes in reverse order."""
    columns = sort_columns(sort)
    stages: list[Stage] = []
    if columns:
        stages.append({"$addFields": {c.field: c.expression for c in columns}})
    order = {c.field: (-1 if c.descending else 1) * (1 if forward else -1) for c in columns}
    order["pk"] = 1 if forward else -1
    if boundary is not None:
        stages.append({"$match": keyset(columns, boundary, forward)})
    stages += [
        {"$sort": order},
        {"$limit": count + 1},
        {"$project": {"_id": 0, "pk": 1, **{c.field: 1 for c in columns}}},
    ]
    return stages


def count_stages() -> list[Stage]:
    return [{"$count": "n"}]
