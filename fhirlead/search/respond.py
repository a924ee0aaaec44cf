"""The search interaction flow the three search handlers share: parse, run, answer with a Bundle.

https://hl7.org/fhir/R4/http.html#search. Links are GET URLs (also for POST `_search`): `self` with
the parameters actually applied, `next`/`previous` with the same plus the opaque `_cursor`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.search import bundle
from fhirlead.search.live import still_indexing
from fhirlead.search.parse import CURSOR, ParsedSearch, parse_search
from fhirlead.search.query import Clause

if TYPE_CHECKING:
    from fhirlead.server import Server


def page_url(base: str, path: str, params: list[tuple[str, str]]) -> str:
    url = f"{base}/{path}" if path else base
    query = urlencode(params)
    return f"{url}?{query}" if query else url


def parse_request(
    server: Server, request: FhirRequest, types: tuple[str, ...], extra: tuple[Clause, ...] = ()
) -> ParsedSearch:
    return parse_search(
        server.search,
        types,
        request.params,
        base_url=request.base_url,
        default_count=server.settings.default_page_size,
        max_count=server.settings.max_page_size,
        strict=request.prefer("handling") == "strict",
        extra=extra,
    )


async def run(
    server: Server,
    request: FhirRequest,
    types: tuple[str, ...],
    path: str,
    extra: tuple[Clause, ...] = (),
    link_params: list[tuple[str, str]] | None = None,
) -> FhirResponse:
    """Search `types` with the request's parameters; `path` is the GET path the links use. With an
    access token, the types, the query and every resource returned are held to what it allows."""
    access = request.access
    if access is not None:
        types = access.search_types(types, named=bool(link_params) or len(types) == 1)
        extra = (*extra, *access.search_clauses(types))
    parsed = parse_request(server, request, types, extra)
    if access is not None:
        access.check_query(parsed.query)
    page = await server.store.search(parsed.query)
    if access is not None:
        page = replace(page, matches=[v for v in page.matches if access.version_visible(v, "s")],
                       includes=[v for v in page.includes if access.version_visible(v, "r")])
    used = [*(link_params or []), *parsed.used]
    links = [{"relation": "self", "url": page_url(request.base_url, path, used)}]
    if page.next_cursor is not None:
        links.append(
            {"relation": "next", "url": page_url(request.base_url, path, [*used, (CURSOR, page.next_cursor)])}
        )
    if page.previous_cursor is not None:
        links.append(
            {
                "relation": "previous",
                "url": page_url(request.base_url, path, [*used, (CURSOR, page.previous_cursor)]),
            }
        )
    body = bundle.searchset(
        base_url=request.base_url,
        links=links,
        total=page.total,
        matches=page.matches,
        includes=page.includes,
        warnings=[*parsed.warnings, *still_indexing(server, parsed.query.types, parsed.used)],
        summary=parsed.summary,
        elements=parsed.elements,
    )
    return FhirResponse(200, body)
