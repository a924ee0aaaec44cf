"""search-system: GET [base]?... and POST [base]/_search (https://hl7.org/fhir/R4/http.html#search).

`_type` (comma-separated, may repeat) limits the resource types; without it every type is searched and
only parameters common to all resources apply (https://hl7.org/fhir/R4/search.html#type). Without `_type`,
AuditEvents (the server's own audit trail, which grows with every request) are left out: name them.
"""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import bad_request
from fhirlead.interaction.history import SERVER_RECORDED
from fhirlead.search.respond import run
from fhirlead.server import Server


def requested_types(server: Server, request: FhirRequest) -> tuple[str, ...]:
    named: list[str] = []
    for key, value in request.params:
        if key == "_type":
            for name in value.split(","):
                name = name.strip()
                if not server.search.is_resource_type(name):
                    raise bad_request(f"Unknown resource type '{name}' in _type", "_type")
                if name not in named:
                    named.append(name)
    return tuple(named) if named else tuple(sorted(set(server.search.types()) - set(SERVER_RECORDED)))


async def handle(server: Server, request: FhirRequest) -> FhirResponse:
    types = requested_types(server, request)
    named = [("_type", ",".join(types))] if request.param("_type") is not None else []
    return await run(server, request, types, "", link_params=named)
