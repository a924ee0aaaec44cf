"""Every match of a search, all pages: for the server's own work (operations, access policy, measure
content), never for a client's request, whose pages the client asks for one by one."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from fhirlead.search.parse import parse_search
from fhirlead.storage.port import ResourceVersion

PAGE = 1000


async def all_matches(store: Any, registry: Any, type_: str, params: list[tuple[str, str]], *,
                      group_members: bool = True) -> list[ResourceVersion]:
    """Every current resource of `type_` matching `params` (strictly parsed: an unknown parameter is
    a programming error, not something to ignore). `group_members` False reads Groups without members."""
    query = parse_search(registry, (type_,), params, default_count=PAGE, max_count=PAGE, strict=True).query
    query = replace(query, group_members=group_members, total="none")
    found: list[ResourceVersion] = []
    while True:
        page = await store.search(query)
        found += page.matches
        if page.next_cursor is None:
            return found
        query = replace(query, cursor=page.next_cursor)
