"""Batch processing: each entry succeeds or fails on its own, in its own unit of work.

Writes go through the same writer as transactions (so conditional references and headers behave the
same); a failure becomes that entry's status and OperationOutcome and the other entries go on.
References between entries of a batch are not resolved: the spec makes them non-conformant, because
batch entries may be processed in any order.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fhirlead import sources
from fhirlead.bundles import response
from fhirlead.bundles.entries import Entry
from fhirlead.bundles.transaction import TransactionWriter, read
from fhirlead.errors import FhirError, internal_error, log_unexpected

if TYPE_CHECKING:
    from fhirlead.server import Server

log = logging.getLogger(__name__)


async def run(
    server: Server, entries: list[Entry | FhirError], base_url: str, preference: str | None, access: Any = None,
    source: sources.Source | None = None,
) -> list[bytes]:
    """Each entry's answer; each write in its own unit of work, with its own Provenance (`fhirlead.sources`)."""
    answers = []
    for entry in entries:
        if isinstance(entry, FhirError):  # malformed entry: answered alone
            answers.append(response.error_entry(entry))
        else:
            answers.append(await _answer(server, entry, base_url, preference, access, source))
    return answers


async def _answer(server: Server, entry: Entry, base_url: str, preference: str | None, access: Any,
                  source: sources.Source | None) -> bytes:
    """One entry's answer, whatever goes wrong inside it: the other entries are not its business, and
    those already committed must not end in a 500 for the whole batch."""
    try:
        if entry.method in ("GET", "HEAD"):
            return await read(server, entry, base_url, access)
        return await write(server, entry, base_url, preference, source)
    except FhirError as error:
        return response.error_entry(error)
    except Exception as error:
        log_unexpected(log, error, f"a batch entry ({entry.method} {entry.type_})")
        return response.error_entry(internal_error(f"{entry.label}: "))


async def write(server: Server, entry: Entry, base_url: str, preference: str | None,
                source: sources.Source | None = None) -> bytes:
    async with sources.unit_of_work(server, source) as uow:
        writer = TransactionWriter(server, uow, base_url, preference)
        if entry.method == "DELETE":
            return await writer.guarded(entry, writer.delete(entry))
        await writer.plan([entry])
        return await writer.guarded(entry, writer.write(entry))
