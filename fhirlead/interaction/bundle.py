"""batch / transaction: POST [base] with a Bundle (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.bundles import batch, transaction
from fhirlead.bundles.entries import entries_of_transaction, read_bundle
from fhirlead.bundles.response import response_bundle
from fhirlead.server import Server


async def handle(server: Server, request: FhirRequest) -> FhirResponse:
    kind, entries = read_bundle(request.resource_body(), request.base_url)
    preference = request.prefer("return")
    if kind == "transaction":
        answers = await transaction.run(server, entries_of_transaction(entries), request.base_url, preference)
    else:
        answers = await batch.run(server, entries, request.base_url, preference)
    return FhirResponse(200, response_bundle(kind, answers))
