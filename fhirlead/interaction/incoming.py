"""Preparing an incoming resource for storage: validate it, then extract its search index entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhirlead.errors import Issue
from fhirlead.measure.gaps import notation_conflict

if TYPE_CHECKING:
    from fhirlead.search.entries import IndexEntries
    from fhirlead.server import Server


def prepare(server: Server, resource: dict[str, Any], type_: str) -> IndexEntries:
    """Raise a 400 FhirError if `resource` may not be stored as a `type_`; else its index entries. What
    the validation worker found valid in this very form is not validated again (fhirlead/validation/ahead.py)."""
    valid, entries = server.ahead.prepared(resource, type_) if server.ahead else (False, None)
    if not valid:
        server.validator.check(resource, type_)
    return entries if entries is not None else server.extractor.extract(resource)


def advice(resource: dict[str, Any], type_: str) -> list[Issue]:
    """Warnings about a resource that is stored all the same (they reach the client in an
    OperationOutcome: `Prefer: return=OperationOutcome`, or a batch/transaction entry's `outcome`)."""
    if type_ == "Measure":
        conflict = notation_conflict(resource)
        if conflict:
            return [Issue("business-rule", conflict, "warning", (f"{type_}.improvementNotation",))]
    return []
