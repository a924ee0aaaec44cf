"""delete: DELETE [base]/[type]/[id], and conditional delete DELETE [base]/[type]?criteria.

https://hl7.org/fhir/R4/http.html#delete. Deleting what does not exist, or no longer does, succeeds
with nothing to do (200 and an informational OperationOutcome), as the spec allows. A conditional
delete deletes a single match; several matches are a 412 (CapabilityStatement: `single`).
"""

from __future__ import annotations

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import Issue
from fhirlead.interaction import conditions
from fhirlead.interaction.outcome import Outcome, respond
from fhirlead.interaction.preconditions import conflict, expected_version
from fhirlead.server import Server
from fhirlead.storage.port import UnitOfWork, VersionConflict


def _informational(text: str) -> list[Issue]:
    return [Issue("informational", text, severity="information")]


async def delete(server: Server, uow: UnitOfWork, type_: str, id_: str, if_match: int | None = None) -> Outcome:
    current = await uow.read(type_, id_)
    if (current is None or current.deleted) and if_match is None:
        state = "was not found" if current is None else "was already deleted"
        return Outcome(200, current, issues=_informational(f"{type_}/{id_} {state}: nothing to delete"))
    try:
        version = await uow.write(type_, id_, None, None, "DELETE", expected_version=if_match)
    except VersionConflict as error:
        raise conflict(error) from None
    return Outcome(200, version, issues=_informational(f"Deleted {type_}/{id_} (version {version.version})"))


async def conditional_delete(
    server: Server, uow: UnitOfWork, type_: str, params: list[tuple[str, str]], if_match: int | None = None
) -> Outcome:
    found = await conditions.matches(server, uow, type_, params)
    if len(found) > 1:
        raise conditions.too_many(type_, params)
    if not found:
        return Outcome(200, None, issues=_informational(f"No {type_} matched the criteria: nothing to delete"))
    return await delete(server, uow, type_, found[0].id, if_match)


async def handle(server: Server, request: FhirRequest, type_: str, id_: str) -> FhirResponse:
    if_match = expected_version(request.header("if-match"))
    async with server.store.unit_of_work() as uow:
        outcome = await delete(server, uow, type_, id_, if_match)
    return respond(request, outcome)


async def handle_conditional(server: Server, request: FhirRequest, type_: str) -> FhirResponse:
    if_match = expected_version(request.header("if-match"))
    async with server.store.unit_of_work() as uow:
        outcome = await conditional_delete(server, uow, type_, request.params, if_match)
    return respond(request, outcome)
