"""Preparing an incoming resource for storage: validate it, then extract its search index entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhirlead.search.entries import IndexEntries
    from fhirlead.server import Server


def prepare(server: Server, resource: dict[str, Any], type_: str) -> IndexEntries:
    """Raise a 400 FhirError if `resource` may not be stored as a `type_`; else its index entries."""
    server.validator.check(resource, type_)
    return server.extractor.extract(resource)
