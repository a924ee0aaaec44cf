"""vread: GET [base]/[type]/[id]/_history/[vid] (https://hl7.org/fhir/R4/http.html#vread)."""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import not_found
from fhirlead.interaction.representation import gone, send_version
from fhirlead.numbers import ascii_int, shown
from fhirlead.server import Server


async def handle(server: Server, request: FhirRequest, type_: str, id_: str, vid: str) -> FhirResponse:
    number = ascii_int(vid)
    version = await server.store.vread(type_, id_, number) if number is not None else None
    if version is None:
        raise not_found(f"{type_}/{id_} has no version '{shown(vid)}'")
    if version.deleted:
        raise gone(version)
    return send_version(request, version)
