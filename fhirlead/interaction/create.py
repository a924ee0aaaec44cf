"""create: POST [base]/[type], with conditional create (https://hl7.org/fhir/R4/http.html#create)."""

from __future__ import annotations

import uuid
from typing import Any

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.interaction import conditions
from fhirlead.interaction.incoming import prepare
from fhirlead.interaction.outcome import Outcome, respond
from fhirlead.server import Server
from fhirlead.storage.port import UnitOfWork


def new_id() -> str:
    return str(uuid.uuid4())


async def create(
    server: Server,
    uow: UnitOfWork,
    type_: str,
    resource: dict[str, Any],
    if_none_exist: str | None = None,
    id_: str | None = None,
) -> Outcome:
    """Create with a server-assigned id (any id in the body is ignored, as the spec says).

    `id_` is an id the server already chose (a transaction assigns ids before it writes).
    """
    if if_none_exist:
        params = conditions.criteria(if_none_exist)
        found = await conditions.matches(server, uow, type_, params)
        if len(found) > 1:
            raise conditions.too_many(type_, params)
        if found:
            return Outcome(200, found[0])
    resource["id"] = id_ or new_id()
    entries = prepare(server, resource, type_)
    version = await uow.write(type_, resource["id"], resource, entries, "POST", expected_version=0)
    return Outcome(201, version, created=True)


async def handle(server: Server, request: FhirRequest, type_: str) -> FhirResponse:
    resource = request.resource_body()
    async with server.store.unit_of_work() as uow:
        outcome = await create(server, uow, type_, resource, request.header("if-none-exist"))
    return respond(request, outcome)
