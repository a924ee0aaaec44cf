"""patch: PATCH [base]/[type]/[id] and PATCH [base]/[type]?criteria (https://hl7.org/fhir/R4/http.html#patch).

JSON Patch (`application/json-patch+json`) is applied to the current version; the patched resource
must still be valid (422 otherwise) and keep its type and id. The write is guarded by the version that
was patched, so a concurrent change can never be overwritten silently.
"""

from __future__ import annotations

from typing import Any

from fhirlead import fhirjson, sources
from fhirlead.api.messages import JSON_PATCH, FhirRequest, FhirResponse
from fhirlead.errors import FhirError, Issue, bad_request, not_found
from fhirlead.interaction import conditions
from fhirlead.interaction.incoming import prepare
from fhirlead.interaction.outcome import Outcome, respond
from fhirlead.interaction.preconditions import conflict, expected_version
from fhirlead.interaction.representation import gone
from fhirlead.patch import json_patch
from fhirlead.server import Server
from fhirlead.storage.port import UnitOfWork, VersionConflict


def unprocessable(text: str, *expression: str) -> FhirError:
    return FhirError(422, [Issue("processing", text, expression=expression)])


def patch_document(request: FhirRequest) -> Any:
    if request.content_type != JSON_PATCH:
        raise FhirError(415, [Issue("not-supported",
                                    f"Unsupported patch format '{request.content_type}': send {JSON_PATCH}")])
    return request.json_body()


async def patch(
    server: Server, uow: UnitOfWork, type_: str, id_: str, document: Any, if_match: int | None = None
) -> Outcome:
    current = await uow.read(type_, id_)
    if current is None:
        raise not_found(f"{type_}/{id_} is not known")
    if current.deleted:
        raise gone(current)
    if if_match is not None and if_match != current.version:
        raise conflict(VersionConflict(current.reference, if_match, current.version))
    try:
        patched = json_patch.apply(fhirjson.loads(current.body), document)
    except json_patch.PatchError as error:
        raise (bad_request(str(error)) if error.malformed else unprocessable(str(error))) from None
    if patched.get("resourceType") != type_ or patched.get("id") != id_:
        raise unprocessable("A patch may not change the resource's type or id", f"{type_}.id")
    sources.stamp(uow, patched)
    try:
        entries = prepare(server, patched, type_)
    except FhirError as invalid:
        raise FhirError(422, invalid.issues) from None
    try:
        version = await uow.write(type_, id_, patched, entries, "PATCH", expected_version=current.version)
    except VersionConflict as error:
        raise conflict(error) from None
    return Outcome(200, version)


async def handle(server: Server, request: FhirRequest, type_: str, id_: str) -> FhirResponse:
    document = patch_document(request)
    if_match = expected_version(request.header("if-match"))
    async with sources.unit_of_work(server, await sources.of(server, request)) as uow:
        outcome = await patch(server, uow, type_, id_, document, if_match)
    return respond(request, outcome)


async def handle_conditional(server: Server, request: FhirRequest, type_: str) -> FhirResponse:
    document = patch_document(request)
    if_match = expected_version(request.header("if-match"))
    async with sources.unit_of_work(server, await sources.of(server, request)) as uow:
        found = await conditions.matches(server, uow, type_, request.params)
        if len(found) > 1:
            raise conditions.too_many(type_, request.params)
        if not found:
            raise not_found(f"No {type_} matched the criteria")
        outcome = await patch(server, uow, type_, found[0].id, document, if_match)
    return respond(request, outcome)
