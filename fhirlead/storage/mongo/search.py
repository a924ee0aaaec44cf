"""Executing a SearchQuery on MongoDB: matching, order, keyset paging, totals and includes.

Every predicate is a `find` over the flat `search_index` documents (or `resources`, for `_id` and
`_lastUpdated`) that returns the pks of the resources having a matching value; clauses combine those
sets (OR within a clause, AND across clauses, `:not` and `:missing=true` as a difference). Clauses run
from the most selective (the SQLite backend's ranking) and each later one is restricted to the pks
found so far, so a selective first clause keeps every later query small.

Order and paging match the SQLite backend exactly: the sort value of a resource is the scalar stored
per search key (`documents.sort_values`: lowest value ascending, highest descending, missing last), pk
is the final tie-break, and a keyset cursor holds the boundary row's sort values and pk. A search with
no filter and no `_sort` pages straight through the `(type, deleted, pk)` index instead.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import cmp_to_key
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
    SortKey,
)
from fhirlead.storage.mongo.access import IN_CHUNK, Access
from fhirlead.storage.mongo.documents import MISSING, resource_key
from fhirlead.storage.mongo.filters import (
    all_of,
    entry_base,
    local,
    one_of_types,
    resource_filter,
    value_filter,
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
        matched: set[int] | None = None
        page: list[Row] = []
        more = False
        if not query.where and not query.sort:
            if query.count > 0:
                page, more = await self._walk_type(query, position)
        else:
            matched = await self.match(query.types, query.where)
            if query.count > 0:
                rows = await self._sort_rows(query.sort, matched)
                page, more = paginate(rows, [k.descending for k in query.sort] + [False], query.count, position)
        total = None
        if query.total in ("accurate", "estimate"):
            if matched is None:
                live = {"type": one_of_types(query.types), "deleted": False}
                total = await self.access.count(self.access.resources, live)
            else:
                total = len(matched)
        elif query.total == "auto" and position is None and not more and query.count > 0:
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

    async def _sort_rows(self, sort: Sequence[SortKey], pks: set[int]) -> list[Row]:
        if not sort:
            return [(pk,) for pk in pks]
        # the whole `sort` sub-document: some MongoDB-compatible servers mis-project dotted paths
        projection: dict[str, Any] = {"pk": 1, "id": 1, "updated_us": 1, "sort": 1, "_id": 0}
        docs = await self.access.find_in(self.access.resources, "pk", sorted(pks), None, projection)
        return [(*(sort_value(key, doc) for key in sort), doc["pk"]) for doc in docs]

    async def _current(self, pks: Sequence[int]) -> list[dict[str, Any]]:
        """The resources documents of these pks, in the order given."""
        if not pks:
            return []
        found = {
            doc["pk"]: doc for doc in await self.access.find_in(self.access.resources, "pk", pks, None, {"sort": 0})
        }
        return [found[pk] for pk in pks if pk in found]

    # -- matching ----------------------------------------------------------------------------

    async def match(self, types: Sequence[str], where: Sequence[Clause], within: set[int] | None = None) -> set[int]:
        """The pks of the live resources of `types` satisfying every clause."""
        result = within
        for clause in sorted(where, key=clause_rank):
            result = await self._clause(clause, types, result)
            if not result:
                return set()
        if result is None:
            result = await self._universe(types)
        return result

    async def _universe(self, types: Sequence[str]) -> set[int]:
        docs = await self.access.find(
            self.access.resources, {"type": one_of_types(types), "deleted": False}, {"pk": 1, "_id": 0}
        )
        return {doc["pk"] for doc in docs}

    async def _clause(self, clause: Clause, types: Sequence[str], within: set[int] | None) -> set[int]:
        hits: set[int] = set()
        for p in clause.any_of:
            hits |= await self._predicate(p, types, within)
        if clause.negate:
            base = within if within is not None else await self._universe(types)
            return base - hits
        return hits if within is None else hits & within

    async def _predicate(self, p: Predicate, types: Sequence[str], within: set[int] | None) -> set[int]:
        if isinstance(p, Missing) and p.missing:
            base = within if within is not None else await self._universe(types)
            present = await self._entry_pks(value_filter(p, types, self.base_url) or {}, within)
            return base - present
        simple = value_filter(p, types, self.base_url)
        if simple is not None:
            return await self._entry_pks(simple, within)
        if isinstance(p, IdMatch | LastUpdated):
            return await self._pks(self.access.resources, resource_filter(p, types), within)
        if isinstance(p, CompositeMatch):
            return await self._composite(p, types, within)
        if isinstance(p, Chain):
            return await self._chain(p, types, within)
        if isinstance(p, Has):
            return await self._has(p, types, within)
        if isinstance(p, InList):
            return await self._in_list(p, types, within)
        if isinstance(p, Compartment):
            return await self._compartment(p, types, within)
        raise TypeError(f"unknown predicate {p!r}")

    def _restrict(self, filter_: dict[str, Any], within: set[int] | None) -> dict[str, Any]:
        """Let the database skip pks already ruled out, when the allowed set is small enough."""
        if within is not None and len(within) <= IN_CHUNK:
            return all_of(filter_, {"pk": {"$in": sorted(within)}})
        return filter_

    async def _pks(self, collection: Any, filter_: dict[str, Any], within: set[int] | None) -> set[int]:
        docs = await self.access.find(collection, self._restrict(filter_, within), {"pk": 1, "_id": 0})
        found = {doc["pk"] for doc in docs}
        return found if within is None else found & within

    async def _entry_pks(self, filter_: dict[str, Any], within: set[int] | None) -> set[int]:
        return await self._pks(self.access.search_index, filter_, within)

    async def _composite(self, p: CompositeMatch, types: Sequence[str], within: set[int] | None) -> set[int]:
        """All components in one repetition: intersect (pk, rep) pairs across components."""
        pairs: set[tuple[int, int]] | None = None
        for component in p.components:
            condition = value_filter(component, types, self.base_url)
            if condition is None:
                raise TypeError(f"composite component {component!r}")
            filter_ = self._restrict(all_of(condition, {"rep": {"$gt": 0}}), within)
            docs = await self.access.find(self.access.search_index, filter_, {"pk": 1, "rep": 1, "_id": 0})
            found = {(doc["pk"], doc["rep"]) for doc in docs}
            pairs = found if pairs is None else pairs & found
            if not pairs:
                return set()
        pks = {pk for pk, _ in pairs or ()}
        return pks if within is None else pks & within

    async def _chain(self, p: Chain, types: Sequence[str], within: set[int] | None) -> set[int]:
        """References in `p.key` to resources of `p.types` matching the chained clauses."""
        targets = await self.match(p.types, p.where)
        if not targets:
            return set()
        by_type: dict[str, list[str]] = defaultdict(list)
        for doc in await self.access.find_in(self.access.resources, "pk", sorted(targets), None, {"type": 1, "id": 1}):
            by_type[doc["type"]].append(doc["id"])
        found: set[int] = set()
        base = all_of(entry_base(types, p.key, "reference"), local(self.base_url))
        for type_, ids in by_type.items():
            filter_ = self._restrict(all_of(base, {"rtype": type_}), within)
            docs = await self.access.find_in(self.access.search_index, "rid", ids, filter_, {"pk": 1, "_id": 0})
            found |= {doc["pk"] for doc in docs}
        return found if within is None else found & within

    async def _referenced(
        self, filter_: dict[str, Any], sources: Iterable[int], types: Sequence[str], within: set[int] | None
    ) -> set[int]:
        """The live `types` resources that the reference entries of `sources` matching `filter_` point at."""
        docs = await self.access.find_in(
            self.access.search_index, "pk", sorted(sources), filter_, {"rtype": 1, "rid": 1, "_id": 0}
        )
        keys = sorted({resource_key(doc["rtype"], doc["rid"]) for doc in docs})
        live = {"type": one_of_types(types), "deleted": False}
        found = {d["pk"] for d in await self.access.find_in(self.access.resources, "_id", keys, live, {"pk": 1})}
        return found if within is None else found & within

    async def _has(self, p: Has, types: Sequence[str], within: set[int] | None) -> set[int]:
        sources = await self.match((p.type,), p.where)
        if not sources:
            return set()
        filter_ = all_of(entry_base((p.type,), p.key, "reference"), local(self.base_url))
        return await self._referenced(filter_, sources, types, within)

    async def _in_list(self, p: InList, types: Sequence[str], within: set[int] | None) -> set[int]:
        found = await self.access.find(
            self.access.resources, {"_id": resource_key("List", p.list_id), "deleted": False}, {"pk": 1}
        )
        if not found:
            return set()
        filter_ = all_of(entry_base(("List",), "item", "reference"), local(self.base_url))
        return await self._referenced(filter_, [found[0]["pk"]], types, within)

    async def _compartment(self, p: Compartment, types: Sequence[str], within: set[int] | None) -> set[int]:
        wanted = set(types)
        per_type = [{"type": type_, "key": {"$in": list(keys)}} for type_, keys in p.params if type_ in wanted]
        found: set[int] = set()
        if per_type:
            filter_ = all_of(
                {"$or": per_type},
                {"kind": "reference", "rid": p.owner_id, "rtype": p.owner_type},
                local(self.base_url),
            )
            found = await self._entry_pks(filter_, within)
        if p.owner_type in wanted:
            owner = {"_id": resource_key(p.owner_type, p.owner_id), "deleted": False}
            found |= await self._pks(self.access.resources, owner, within)
        return found

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


def sort_value(key: SortKey, doc: dict[str, Any]) -> Any:
    """The value `doc` sorts by under `key`: the stored scalar, or the missing-value sentinel."""
    if key.key == "_id":
        return doc["id"]
    if key.key == "_lastUpdated":
        return doc["updated_us"]
    stored = (doc.get("sort") or {}).get(key.kind, {}).get(key.key)
    if stored is None:
        return MISSING[key.kind][1 if key.descending else 0]
    return stored["d" if key.descending else "a"]


def compare(a: Row, b: Sequence[Any], descending: Sequence[bool]) -> int:
    """-1, 0 or 1: the order of rows `a` and `b` with these column directions."""
    for left, right, down in zip(a, b, descending, strict=True):
        if left != right:
            smaller = left < right
            return (1 if smaller else -1) if down else (-1 if smaller else 1)
    return 0


def paginate(
    rows: list[Row], descending: list[bool], count: int, position: cursors.Cursor | None
) -> tuple[list[Row], bool]:
    """The page of `rows` after (or before) the cursor row, in order, and whether more lie beyond it."""
    ordered = sorted(rows, key=cmp_to_key(lambda a, b: compare(a, b, descending)))
    if position is None:
        candidates = ordered
    elif position.forward:
        candidates = [row for row in ordered if compare(row, position.keys, descending) > 0]
    else:
        candidates = [row for row in reversed(ordered) if compare(row, position.keys, descending) < 0]
    fetched = candidates[: count + 1]
    page = fetched[:count]
    if position is not None and not position.forward:
        page.reverse()
    return page, len(fetched) > count
