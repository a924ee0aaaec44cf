"""Batch processing: each entry succeeds or fails on its own, in its own unit of work.

Writes go through the same writer as transactions (so conditional references and headers behave the
same); a failure becomes that entry's status and OperationOutcome and the other entries go on.
References between entries of a batch are not resolved: the spec makes them non-conformant, because
batch entries may be processed in any order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhirlead.bundles import response
from fhirlead.bundles.entries import Entry
from fhirlead.bundles.transaction import TransactionWriter, read
from fhirlead.errors import FhirError

if TYPE_CHECKING:
    from fhirlead.server import Server


async def run(
    server: Server, entries: list[Entry | FhirError], base_url: str, preference: str | None, access: Any = None
) -> list[bytes]:
    answers = []
    for entry in entries:
        if isinstance(entry, FhirError):  # malformed entry: answered alone
            answers.append(response.error_entry(entry))
        elif entry.method in ("GET", "HEAD"):
            answers.append(await read(server, entry, base_url, access))
        else:
            try:
                answers.append(await write(server, entry, base_url, preference))
            except FhirError as error:
                answers.append(response.error_entry(error))
    return answers


async def write(server: Server, entry: Entry, base_url: str, preference: str | None) -> bytes:
    async with server.store.unit_of_work() as uow:
        writer = TransactionWriter(server, uow, base_url, preference)
        if entry.method == "DELETE":
            return await writer.guarded(entry, writer.delete(entry))
        await writer.plan([entry])
        return await writer.guarded(entry, writer.write(entry))
