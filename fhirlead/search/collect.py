"""Every match of a search, all pages: for the server's own work (operations, access policy, measure
content), never for a client's request, whose pages the client asks for one by one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fhirlead.search.parse import parse_search
from fhirlead.storage.port import ResourceVersion

PAGE = 1000


async def all_matches(store: Any, registry: Any, type_: str, params: list[tuple[str, str]], *,
                      group_members: bool = True) -> list[ResourceVersion]:
    """Every current resource of `type_` matching `params` (strictly parsed: an unknown parameter is
    a programming error, not something to ignore). `group_members` False reads Groups without members."""
    found: list[ResourceVersion] = []
    async for page in pages(store, registry, type_, params, group_members=group_members):
        found += page
    return found


async def all_ids(store: Any, registry: Any, type_: str, params: list[tuple[str, str]]) -> list[str]:
    """The ids of every current resource of `type_` matching `params` (no body kept past its page)."""
    return [version.id async for page in pages(store, registry, type_, params, group_members=False)
            for version in page]


async def pages(store: Any, registry: Any, type_: str, params: list[tuple[str, str]], *,
                group_members: bool = True) -> AsyncIterator[list[ResourceVersion]]:
    query = parse_search(registry, (type_,), params, default_count=PAGE, max_count=PAGE, strict=True).query
    query = replace(query, group_members=group_members, total="none")
    while True:
        page = await store.search(query)
        yield page.matches
        if page.next_cursor is None:
            return
        query = replace(query, cursor=page.next_cursor)
