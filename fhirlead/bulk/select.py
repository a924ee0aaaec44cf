"""`_typeFilter` applied to the versions an export writes (Bulk Data 2.0.0 §"_typeFilter Experimental Query
Parameter", https://hl7.org/fhir/uv/bulkdata/STU2/export.html): a resource of a filtered type is kept when
it matches one of the type's queries (they are ORed; a query's parameters are ANDed, as in a search).

Each version is judged as it was at `transactionTime` (the version the export writes), in memory on its own
index entries (`fhirlead.subscriptions.matcher`, the predicates with the store backends' semantics). A query
that one resource cannot decide alone (a chain, `_has`, `_list`, `_lastUpdated`) is asked of the store for
the page's ids instead, so it judges the resource's current version (docs/bulk-export.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhirlead import fhirjson
from fhirlead.search.parse import parse_search
from fhirlead.search.query import Clause, IdMatch
from fhirlead.storage.port import ResourceVersion
from fhirlead.subscriptions.matcher import matches, unsupported

PAGE = 1000


async def filtered(server: Any, doc: dict[str, Any], type_: str, versions: list[ResourceVersion]
                   ) -> list[ResourceVersion]:
    """The versions matching one of the type's `_typeFilter` queries (all when the type has none)."""
    queries = (doc.get("filters") or {}).get(type_)
    if not queries or not versions:
        return versions
    base = doc.get("base") or ""
    kept: set[str] = set()
    entries: dict[str, Any] = {}
    for pairs in queries:
        where = parse_search(server.search, (type_,), [(n, v) for n, v in pairs], base_url=base,
                             strict=True).query.where
        rest = [v for v in versions if v.id not in kept]
        if unsupported(where):
            kept |= await _in_store(server, type_, [(n, v) for n, v in pairs], base, [v.id for v in rest])
            continue
        for version in rest:
            if version.id not in entries:
                entries[version.id] = server.extractor.extract(fhirjson.loads(version.body or b"{}"))
            if matches(where, version.id, entries[version.id], base):
                kept.add(version.id)
    return [v for v in versions if v.id in kept]


async def _in_store(server: Any, type_: str, pairs: list[tuple[str, str]], base: str, ids: list[str]) -> set[str]:
    """Which of `ids` the store's search finds for the query (their current versions)."""
    found: set[str] = set()
    for start in range(0, len(ids), PAGE):
        only = Clause((IdMatch(tuple(ids[start:start + PAGE])),))
        query = parse_search(server.search, (type_,), pairs, base_url=base, default_count=PAGE, max_count=PAGE,
                             strict=True, extra=(only,)).query
        query = replace(query, total="none", group_members=False)
        while True:
            page = await server.store.search(query)
            found |= {v.id for v in page.matches}
            if page.next_cursor is None:
                break
            query = replace(query, cursor=page.next_cursor)
    return found
