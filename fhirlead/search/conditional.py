"""Search criteria of conditional interactions (If-None-Exist, conditional update/delete/patch, and
conditional references in transactions): https://hl7.org/fhir/R4/http.html#ccreate.

Strict by design: an unknown or unsupported parameter is a 400, because silently ignoring it would
widen the match and update or delete the wrong resource.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from fhirlead.errors import bad_request
from fhirlead.search.parse import RESULT_PARAMS, parse_search
from fhirlead.search.query import SearchQuery
from fhirlead.storage.port import ResourceVersion, SearchPage

if TYPE_CHECKING:
    from fhirlead.server import Server


class Searcher(Protocol):
    async def search(self, query: SearchQuery) -> SearchPage: ...


async def find(
    server: Server,
    reader: Searcher,
    type_: str,
    params: list[tuple[str, str]],
    limit: int,
    base_url: str = "",
) -> list[ResourceVersion]:
    """At most `limit` current resources of `type_` matching `params` (a Store or a UnitOfWork)."""
    for name, _ in params:
        if name.partition(":")[0] in RESULT_PARAMS:
            raise bad_request(f"'{name}' cannot be used in conditional criteria", name)
    parsed = parse_search(
        server.search, (type_,), params, base_url=base_url, default_count=limit, max_count=limit, strict=True
    )
    if not parsed.query.where:
        raise bad_request("Conditional criteria must contain at least one search parameter")
    page = await reader.search(parsed.query)
    return page.matches[:limit]
