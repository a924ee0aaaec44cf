"""Resolving the search criteria of conditional interactions to the resources they match."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from fhirlead.errors import FhirError, Issue, bad_request
from fhirlead.search import conditional
from fhirlead.storage.port import ResourceVersion, UnitOfWork

if TYPE_CHECKING:
    from fhirlead.server import Server


def criteria(query: str) -> list[tuple[str, str]]:
    """Parse `identifier=sys|val&active=true` (an If-None-Exist header, or a conditional URL's query)."""
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise bad_request(f"Empty search criteria '{query}'")
    return params


async def matches(
    server: Server, uow: UnitOfWork, type_: str, params: list[tuple[str, str]]
) -> list[ResourceVersion]:
    """Up to two matches: enough to tell none, one, and several apart."""
    return await conditional.find(server, uow, type_, params, limit=2)


def too_many(type_: str, params: list[tuple[str, str]]) -> FhirError:
    shown = "&".join(f"{k}={v}" for k, v in params)
    return FhirError(412, [Issue("multiple-matches", f"The criteria '{type_}?{shown}' match more than one resource")])
