"""Executing a SearchQuery on MongoDB: matching, order, keyset paging, totals and includes.

Matching, order and paging run inside MongoDB as one aggregation pipeline (`pipeline`): the driving
clause as a `$match` on `search_index`, the other clauses as `$elemMatch` over each candidate's entries,
then sort and keyset paging; `_total` is the same pipeline ending in `$count`. Predicates that reach
other resources (chains, `_has`, `_list`, composites) are resolved first, each by its own query or
pipeline, into `$in` lists of ids, keys or pks that their clause then matches against.

Order and paging match the SQLite backend exactly: the sort value of a resource is the scalar stored
per search key (`documents.sort_values`: lowest value ascending, highest descending, missing last), pk
is the final tie-break, and a keyset cursor holds the boundary row's sort values and pk. A search with
no filter and no `_sort` pages straight through the `(type, deleted, pk)` index instead. Includes
follow references a page at a time in batched `$in` queries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from fhirlead.search import cursor as cursors
from fhirlead.search.query import (
    Chain,
    Clause,
    Compartment,
    CompositeMatch,
    Has,
    IdMatch,
    Include,
    InList,
    LastUpdated,
    Missing,
    Predicate,
    SearchQuery,
)
from fhirlead.storage.mongo.access import Access
from fhirlead.storage.mongo.documents import resource_key
from fhirlead.storage.mongo.filters import all_of, entry_base, local, one_of_types, point_condition, value_filter
from fhirlead.storage.mongo.pipeline import (
    NOTHING,
    ResolvedClause,
    Stage,
    Term,
    any_of,
    count_stages,
    match_stages,
    page_stages,
)
from fhirlead.storage.port import SearchPage
from fhirlead.storage.sqlite.search_sql import clause_rank  # the backend-neutral selectivity ranking

Row = tuple[Any, ...]  # the sort values of a match, then its pk


class Searcher:
    """Runs searches through one `Access` (a database, inside a unit of work or not)."""

    def __init__(self, access: Access, base_url: str) -> None:
        self.access = access
        self.base_url = base_url

    # -- whole queries -----------------------------------------------------------------------

    async def execute(self, query: SearchQuery) -> SearchPage:
        signature = query.signature()
        position = None
        if query.cursor is not None:
            position = cursors.decode(query.cursor, signature, len(query.sort) + 1)
        forward = position is None or position.forward
        page: list[Row] = []
        more = False
        total = None
        counting = query.total in ("accurate", "estimate")
        if not query.where and not query.sort:
            if query.count > 0:
                page, more = await self._walk_type(query, position)
            if counting:
                live = {"type": one_of_types(query.types), "deleted": False}
                total = await self.access.count(self.access.resources, live)
        else:
            collection, stages = await self.plan(query.types, query.where)
            if query.count > 0:
                paging = page_stages(query.sort, None if position is None else position.keys, forward, query.count)
                found = await self.access.aggregate(self.access.db[collection], stages + paging)
                fetched = [(*(row[f"_s{n}"] for n in range(len(query.sort))), row["pk"]) for row in found]
                page, more = fetched[: query.count], len(fetched) > query.count
                if not forward:
                    page.reverse()
            if counting:
                counted = await self.access.aggregate(self.access.db[collection], stages + count_stages())
                total = counted[0]["n"] if counted else 0
        if query.total == "auto" and position is None and not more and query.count > 0:
            total = len(page)
        next_cursor = previous_cursor = None
        if page:
            if (more and forward) or (position is not None and not forward):
                next_cursor = cursors.encode(cursors.Cursor(True, page[-1]), signature)
            if position is not None and (forward or more):
                previous_cursor = cursors.encode(cursors.Cursor(False, page[0]), signature)
        docs = await self._current([row[-1] for row in page])
        matches = await self.access.versions(docs, query.group_members)
        included = await self._includes(query.include, [(d["pk"], d["type"], d["id"]) for d in docs])
        includes = await self.access.versions(await self._current(included), query.group_members)
        return SearchPage(matches, includes, total, next_cursor, previous_cursor)

    async def _walk_type(self, query: SearchQuery, position: cursors.Cursor | None) -> tuple[list[Row], bool]:
        """A page of the whole type in pk order, read through the (type, deleted, pk) index."""
        forward = position is None or position.forward
        filter_: dict[str, Any] = {"type": one_of_types(query.types), "deleted": False}
        if position is not None:
            filter_["pk"] = {"$gt" if forward else "$lt": position.keys[0]}
        docs = await self.access.find(
            self.access.resources, filter_, {"pk": 1, "_id": 0}, [("pk", 1 if forward else -1)], query.count + 1
        )
        fetched = [(doc["pk"],) for doc in docs]
        page = fetched[: query.count]
        if not forward:
            page.reverse()
        return page, len(fetched) > query.count

    async def _current(self, pks: Sequence[int]) -> list[dict[str, Any]]:
        """The resources documents of these pks, in the order given."""
        if not pks:
            return []
        found = {
            doc["pk"]: doc for doc in await self.access.find_in(self.access.resources, "pk", pks, None, {"sort": 0})
        }
        return [found[pk] for pk in pks if pk in found]

    # -- matching ----------------------------------------------------------------------------

    async def plan(self, types: Sequence[str], where: Sequence[Clause]) -> tuple[str, list[Stage]]:
        """The collection and stages whose rows are the live `types` resources matching every clause."""
        clauses = []
        for clause in sorted(where, key=clause_rank):
            terms = [await self._term(p, types) for p in clause.any_of]
            clauses.append(ResolvedClause(tuple(terms), clause.negate))
        return match_stages(types, clauses)

    async def match(self, types: Sequence[str], where: Sequence[Clause]) -> list[dict[str, Any]]:
        """The rows (`_id`, pk, type, id, ...) of the live `types` resources matching every clause."""
        collection, stages = await self.plan(types, where)
        return await self.access.aggregate(self.access.db[collection], stages)

    async def _term(self, p: Predicate, types: Sequence[str]) -> Term:
        simple = value_filter(p, types, self.base_url)
        if simple is not None:
            return Term(entries=simple, absent=isinstance(p, Missing) and p.missing)
        if isinstance(p, IdMatch):
            return Term(resource={"id": {"$in": list(p.ids)}})  # the types: every row is of them
        if isinstance(p, LastUpdated):
            return Term(resource=point_condition(p.prefix, "updated_us", p.low, p.high))
        if isinstance(p, CompositeMatch):
            return Term(resource={"pk": {"$in": await self._composite(p, types)}})
        if isinstance(p, Chain):
            return await self._chain(p, types)
        if isinstance(p, Has):
            return Term(resource=by_type_and_id(await self._has(p)))
        if isinstance(p, InList):
            return Term(resource=by_type_and_id(await self._in_list(p)))
        if isinstance(p, Compartment):
            return self._compartment(p, types)
        raise TypeError(f"unknown predicate {p!r}")

    async def _composite(self, p: CompositeMatch, types: Sequence[str]) -> list[int]:
        """All components in one repetition: (pk, rep) groups holding an entry for every component."""
        conditions = []
        for component in p.components:
            condition = value_filter(component, types, self.base_url)
            if condition is None:
                raise TypeError(f"composite component {component!r}")
            conditions.append(all_of(condition, {"rep": {"$gt": 0}}))
        keys = {getattr(component, "key", None) for component in p.components}
        stages: list[Stage] = [
            {"$match": any_of(conditions)},
            {"$group": {"_id": {"pk": "$pk", "rep": "$rep"}, "keys": {"$addToSet": "$key"}}},
            {"$match": {"keys": {"$size": len(keys)}}},
            {"$group": {"_id": "$_id.pk"}},
        ]
        return sorted(doc["_id"] for doc in await self.access.aggregate(self.access.search_index, stages))

    async def _chain(self, p: Chain, types: Sequence[str]) -> Term:
        """References in `p.key` to resources of `p.types` matching the chained clauses."""
        by_type: dict[str, list[str]] = defaultdict(list)
        for row in await self.match(p.types, p.where):
            by_type[row["type"]].append(row["id"])
        targets = any_of([{"rtype": type_, "rid": {"$in": ids}} for type_, ids in sorted(by_type.items())])
        return Term(entries=all_of(entry_base(types, p.key, "reference"), local(self.base_url), targets))

    async def _referenced(self, filter_: dict[str, Any], sources: Iterable[int]) -> list[tuple[str, str]]:
        """The (type, id) that the reference entries of `sources` matching `filter_` point at."""
        docs = await self.access.find_in(
            self.access.search_index, "pk", sorted(sources), filter_, {"rtype": 1, "rid": 1, "_id": 0}
        )
        return sorted({(doc["rtype"], doc["rid"]) for doc in docs})

    async def _has(self, p: Has) -> list[tuple[str, str]]:
        sources = [row["pk"] for row in await self.match((p.type,), p.where)]
        if not sources:
            return []
        filter_ = all_of(entry_base((p.type,), p.key, "reference"), local(self.base_url))
        return await self._referenced(filter_, sources)

    async def _in_list(self, p: InList) -> list[tuple[str, str]]:
        found = await self.access.find(
            self.access.resources, {"_id": resource_key("List", p.list_id), "deleted": False}, {"pk": 1}
        )
        if not found:
            return []
        filter_ = all_of(entry_base(("List",), "item", "reference"), local(self.base_url))
        return await self._referenced(filter_, [found[0]["pk"]])

    def _compartment(self, p: Compartment, types: Sequence[str]) -> Term:
        wanted = set(types)
        per_type = [{"type": type_, "key": {"$in": list(keys)}} for type_, keys in p.params if type_ in wanted]
        entries = None
        if per_type:
            entries = all_of(
                any_of(per_type),
                {"kind": "reference", "rid": p.owner_id, "rtype": p.owner_type},
                local(self.base_url),
            )
        owner = {"type": p.owner_type, "id": p.owner_id} if p.owner_type in wanted else None
        if entries is None and owner is None:
            return Term(resource=NOTHING)
        return Term(entries=entries, resource=owner)

    # -- _include / _revinclude ------------------------------------------------------------------

    async def _includes(self, wanted: Sequence[Include], matches: list[tuple[int, str, str]]) -> list[int]:
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
                for row in await self._follow(include, frontier):
                    if row[0] not in seen:
                        seen.add(row[0])
                        added.append(row[0])
                        reached.append(row)
            frontier = reached
            first = False
        return added

    async def _follow(self, include: Include, current: list[tuple[int, str, str]]) -> list[tuple[int, str, str]]:
        references = all_of(entry_base((include.source,), include.keys, "reference"), {"rep": 0},
                            local(self.base_url))
        keys: set[str] = set()
        if not include.reverse:
            sources = [pk for pk, type_, _ in current if type_ == include.source]
            docs = await self.access.find_in(
                self.access.search_index, "pk", sources, references, {"rtype": 1, "rid": 1, "_id": 0}
            )
            keys = {
                resource_key(doc["rtype"], doc["rid"])
                for doc in docs
                if include.target is None or doc["rtype"] == include.target
            }
        else:
            by_type: dict[str, list[str]] = defaultdict(list)
            for _, type_, id_ in current:
                if include.target is None or include.target == type_:
                    by_type[type_].append(id_)
            pks: set[int] = set()
            for type_, ids in by_type.items():
                docs = await self.access.find_in(
                    self.access.search_index, "rid", ids, all_of(references, {"rtype": type_}), {"pk": 1, "_id": 0}
                )
                pks |= {doc["pk"] for doc in docs}
            rows = await self.access.find_in(
                self.access.resources, "pk", sorted(pks), {"deleted": False}, {"pk": 1, "type": 1, "id": 1}
            )
            return sorted((doc["pk"], doc["type"], doc["id"]) for doc in rows)
        rows = await self.access.find_in(
            self.access.resources, "_id", sorted(keys), {"deleted": False}, {"pk": 1, "type": 1, "id": 1}
        )
        return sorted((doc["pk"], doc["type"], doc["id"]) for doc in rows)


def by_type_and_id(targets: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Rows that are one of `targets` (matched on type and id: a row's `_id` is not kept by every server)."""
    ids: dict[str, list[str]] = defaultdict(list)
    for type_, id_ in targets:
        ids[type_].append(id_)
    return any_of([{"type": type_, "id": {"$in": found}} for type_, found in sorted(ids.items())])
