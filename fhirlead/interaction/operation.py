"""operation: [base]/$op, [base]/[type]/$op, [base]/[type]/[id]/$op (https://hl7.org/fhir/R4/operations.html)."""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import FhirError, Issue, not_found
from fhirlead.plugins import OperationCall
from fhirlead.server import Server


async def handle(
    server: Server, request: FhirRequest, name: str, type_: str | None = None, id_: str | None = None
) -> FhirResponse:
    level = "instance" if id_ is not None else "type" if type_ is not None else "system"
    operation = server.operations.find(name, level, type_)
    if operation is None:
        where = {"system": "the system level", "type": f"{type_}", "instance": f"{type_} instances"}[level]
        raise not_found(f"Operation ${name} is not supported on {where}")
    if request.method == "GET" and operation.affects_state:
        raise FhirError(405, [Issue("not-supported", f"${name} changes data: invoke it with POST")],
                        {"Allow": "POST"})
    call = OperationCall(server, request, type_, id_)
    if request.access is not None:
        await request.access.authorize_operation(operation, call)
    return await operation.handler(call)
