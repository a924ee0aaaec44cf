"""Shared paging parameters: `_count` within the server's limits, and links built from the request."""

from __future__ import annotations

from urllib.parse import urlencode

from fhirlead.api.messages import FhirRequest
from fhirlead.numbers import count_param
from fhirlead.settings import Settings


def page_size(request: FhirRequest, settings: Settings) -> int:
    """`_count`, defaulting to the server's page size and capped at its maximum (the spec lets a
    server return fewer than asked). A count that is not a non-negative integer is a 400."""
    raw = request.param("_count")
    if raw is None:
        return settings.default_page_size
    return count_param(raw, settings.max_page_size)


def link(request: FhirRequest, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    url = f"{request.base_url}/{request.path}" if request.path else request.base_url
    return f"{url}?{query}" if query else url
