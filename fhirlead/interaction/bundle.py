"""batch / transaction: POST [base] with a Bundle (https://hl7.org/fhir/R4/http.html#transaction).

With an access token, every entry is checked first: a transaction with one entry the token does not
allow fails whole (nothing is written); in a batch that entry alone fails. A server with a validation
worker (`fhirlead serve`) hands it each transaction first, to validate while this process does the rest
(fhirlead/validation/ahead.py).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from fhirlead import fhirjson, sources
from fhirlead.api.dispatch import route_target
from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.bundles import batch, transaction
from fhirlead.bundles.entries import Entry, entries_of_transaction, read_bundle
from fhirlead.bundles.response import response_bundle
from fhirlead.bundles.transaction import located
from fhirlead.errors import FhirError
from fhirlead.server import Server
from fhirlead.validation.ahead import plannable, vouched


async def check_entry(access: Any, entry: Entry, base_url: str) -> None:
    """403 if the token does not allow the entry. A read entry's other errors (404, 405) are left to its
    own answer, as without a token; a write entry's are not (the write must not go ahead unchecked)."""
    if entry.method in ("GET", "HEAD"):
        try:
            target, arguments = route_target(entry.method, entry.segments)
            await access.authorize(target, arguments, FhirRequest(entry.method, base_url, entry.path,
                                                                  entry.params, access=access))
        except FhirError as error:
            if error.status == 403:
                raise
    else:
        await access.check_entry(entry)


async def handle(server: Server, request: FhirRequest) -> FhirResponse:
    kind, entries = read_bundle(request.resource_body(), request.base_url)
    preference = request.prefer("return")
    access = request.access
    source = await sources.of(server, request)
    if kind == "transaction":
        chosen = entries_of_transaction(entries)
        ahead = None
        if server.ahead and plannable(chosen):
            ahead = server.ahead.offer(partial(transaction_entries, request.body, request.base_url),
                                       len(request.body), source, extract=True)
        try:
            if access is not None:
                for entry in chosen:
                    try:
                        await check_entry(access, entry, request.base_url)
                    except FhirError as error:
                        raise located(entry, error) from None
            async with vouched(server.ahead, ahead) as ids:  # the worker's ids, and what it found valid
                answers = await transaction.run(server, chosen, request.base_url, preference, access, source, ids)
        finally:
            if server.ahead:
                server.ahead.discard(ahead)
    else:
        if access is not None:
            entries = [await _checked(access, entry, request.base_url) for entry in entries]
        answers = await batch.run(server, entries, request.base_url, preference, access, source)
    return FhirResponse(200, response_bundle(kind, answers))


def transaction_entries(body: bytes, base_url: str) -> list[Entry]:
    """A transaction's entries from its request body, as `handle` reads them (in the validation worker)."""
    return entries_of_transaction(read_bundle(fhirjson.loads_untrusted(body), base_url)[1])


async def _checked(access: Any, entry: Entry | FhirError, base_url: str) -> Entry | FhirError:
    if isinstance(entry, FhirError):
        return entry
    try:
        await check_entry(access, entry, base_url)
    except FhirError as error:
        return located(entry, error)
    return entry
