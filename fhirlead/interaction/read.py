"""read: GET [base]/[type]/[id] (https://hl7.org/fhir/R4/http.html#read)."""

from __future__ import annotations

from fhirlead import subsetting
from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import not_found
from fhirlead.interaction.representation import gone, send_version
from fhirlead.server import Server


async def handle(server: Server, request: FhirRequest, type_: str, id_: str) -> FhirResponse:
    if type_ == "Group" and not wants_members(request):
        version = await server.store.read_group_head(id_)  # a 100,000-member list without its members
    else:
        version = await server.store.read(type_, id_)
    if version is None:
        raise not_found(f"{type_}/{id_} is not known")
    if version.deleted:
        raise gone(version)
    return send_version(request, version)


def wants_members(request: FhirRequest) -> bool:
    """Whether the answer to a Group read includes `member` (`_summary=true|text` and `_elements`
    without it leave it out: member is not a summary element)."""
    mode, names = subsetting.requested(request.param("_summary"), request.param("_elements"))
    if mode in ("true", "text"):
        return False
    return not names or "member" in names
