"""search-type: GET [base]/[type]?... and POST [base]/[type]/_search (https://hl7.org/fhir/R4/http.html#search)."""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.search.respond import run
from fhirlead.server import Server


async def handle(server: Server, request: FhirRequest, type_: str) -> FhirResponse:
    return await run(server, request, (type_,), type_)
