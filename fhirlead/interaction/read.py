"""read: GET [base]/[type]/[id] (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import not_found
from fhirlead.interaction.representation import gone, send_version
from fhirlead.server import Server


async def handle(server: Server, request: FhirRequest, type_: str, id_: str) -> FhirResponse:
    version = await server.store.read(type_, id_)
    if version is None:
        raise not_found(f"{type_}/{id_} is not known")
    if version.deleted:
        raise gone(version)
    return send_version(request, version)
