"""update: PUT [base]/[type]/[id], and conditional update PUT [base]/[type]?criteria.

https://hl7.org/fhir/R4/http.html#update and #cond-update. Update-as-create is allowed: a client may
choose the id of a new resource.
"""

from __future__ import annotations

from typing import Any

from fhirlead import sources
from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import bad_request
from fhirlead.interaction import conditions
from fhirlead.interaction.create import create
from fhirlead.interaction.incoming import advice, prepare
from fhirlead.interaction.outcome import Outcome, respond
from fhirlead.interaction.preconditions import conflict, expected_version
from fhirlead.numbers import shown
from fhirlead.search.entries import IndexEntries
from fhirlead.server import Server
from fhirlead.storage.port import UnitOfWork, VersionConflict


async def update(
    server: Server,
    uow: UnitOfWork,
    type_: str,
    id_: str,
    resource: dict[str, Any],
    if_match: int | None = None,
    method: str = "PUT",
    entries: IndexEntries | None = None,
) -> Outcome:
    """`entries` given: `resource` is ready as it is (`prepared`), else it is made so here."""
    if entries is None:
        entries = prepared(server, type_, id_, resource, sources.source_of(uow))
    current = await uow.read(type_, id_)
    created = current is None or current.deleted
    try:
        version = await uow.write(type_, id_, resource, entries, method, expected_version=if_match)
    except VersionConflict as error:
        raise conflict(error) from None
    return Outcome(201 if created else 200, version, created=created, issues=advice(resource, type_))


def prepared(server: Server, type_: str, id_: str, resource: dict[str, Any], source: sources.Source | None
             ) -> IndexEntries:
    """Check the id, give the resource its source's meta.source, validate and index it (a 400 FhirError
    if it may not be stored): nothing here needs the store, so a PUT does it before its unit of work
    begins, beside the writes before it (as a create does: interaction/create.py `prepared`)."""
    if "id" not in resource:
        raise bad_request(f"The resource has no id: an update must carry the id of its URL ('{id_}')", f"{type_}.id")
    if resource["id"] != id_:
        raise bad_request(f"The resource's id {shown(str(resource['id']))!r} must equal the id in the URL '{id_}'",
                          f"{type_}.id")
    sources.stamp_source(source, resource)
    return prepare(server, resource, type_)


async def conditional_update(
    server: Server,
    uow: UnitOfWork,
    type_: str,
    params: list[tuple[str, str]],
    resource: dict[str, Any],
    if_match: int | None = None,
) -> Outcome:
    found = await conditions.matches(server, uow, type_, params)
    if len(found) > 1:
        raise conditions.too_many(type_, params)
    if not found:
        if "id" in resource:
            return await update(server, uow, type_, resource["id"], resource, if_match)
        return await create(server, uow, type_, resource)
    target = found[0]
    if resource.get("id", target.id) != target.id:
        raise bad_request(f"The resource's id '{resource['id']}' differs from the matched {target.reference}",
                          f"{type_}.id")
    resource["id"] = target.id
    return await update(server, uow, type_, target.id, resource, if_match)


async def handle(server: Server, request: FhirRequest, type_: str, id_: str) -> FhirResponse:
    resource = request.resource_body()
    if_match = expected_version(request.header("if-match"))
    source = await sources.of(server, request)
    entries = prepared(server, type_, id_, resource, source)
    async with sources.unit_of_work(server, source) as uow:
        outcome = await update(server, uow, type_, id_, resource, if_match, entries=entries)
    return respond(request, outcome)


async def handle_conditional(server: Server, request: FhirRequest, type_: str) -> FhirResponse:
    resource = request.resource_body()
    if_match = expected_version(request.header("if-match"))
    async with sources.unit_of_work(server, await sources.of(server, request)) as uow:
        outcome = await conditional_update(server, uow, type_, request.params, resource, if_match)
    return respond(request, outcome)
