"""history: GET [base]/[type]/[id]/_history, [base]/[type]/_history and [base]/_history.

https://hl7.org/fhir/R4/http.html#history. Newest first; `_since`, `_count`; paging by an opaque cursor
(the write sequence number), so pages stay correct while new versions are written.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fhirlead import bundle_json, clock
from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.errors import bad_request, not_found
from fhirlead.interaction.paging import link, page_size
from fhirlead.numbers import ascii_int, shown
from fhirlead.server import Server
from fhirlead.storage.port import ResourceVersion

CURSOR = "_cursor"
# Resources the server records about its own use (its audit trail): every request adds some, so they
# would flood system history (which EHRs poll to synchronise). `AuditEvent/_history` lists them.
SERVER_RECORDED = ("AuditEvent",)


def since_micros(request: FhirRequest) -> int | None:
    raw = request.param("_since")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise bad_request(f"Invalid _since '{raw}': expected an instant such as 2024-01-31T12:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return clock.micros(moment)


def cursor(request: FhirRequest) -> str | None:
    raw = request.param(CURSOR)
    if raw is not None and ascii_int(raw) is None:
        raise bad_request(f"Invalid {CURSOR} '{shown(raw)}'")
    return raw


def history_entry(base_url: str, version: ResourceVersion) -> bytes:
    created = version.method == "POST" or version.version == 1
    if version.deleted:
        status, request_url = "204 No Content", version.reference
    else:
        status = "201 Created" if created else "200 OK"
        request_url = version.type if version.method == "POST" else version.reference
    return bundle_json.entry(
        {"fullUrl": f"{base_url}/{version.reference}"},
        version.body,
        {
            "request": {"method": version.method, "url": request_url},
            "response": {"status": status, "etag": version.etag, "lastModified": version.last_updated},
        },
    )


async def history(
    server: Server, request: FhirRequest, type_: str | None, id_: str | None, exclude_types: tuple[str, ...] = ()
) -> FhirResponse:
    count = page_size(request, server.settings)
    since = since_micros(request)
    page = await server.store.history(type_, id_, since, count, cursor(request), exclude_types)
    versions = page.versions
    if request.access is not None:  # a page may come out shorter: the cursor still moves on
        versions = [version for version in versions if request.access.version_visible(version, "r")]
    kept = [(k, v) for k, v in request.params if k in ("_since", "_count")]
    links = [{"relation": "self", "url": link(request, request.params)}]
    if page.next_cursor is not None:
        links.append({"relation": "next", "url": link(request, [*kept, (CURSOR, page.next_cursor)])})
    header = {"resourceType": "Bundle", "type": "history", "link": links}
    entries = [history_entry(request.base_url, version) for version in versions]
    return FhirResponse(200, bundle_json.bundle(header, entries))


async def handle_instance(server: Server, request: FhirRequest, type_: str, id_: str) -> FhirResponse:
    if await server.store.read(type_, id_) is None:
        raise not_found(f"{type_}/{id_} is not known")
    return await history(server, request, type_, id_)


async def handle_type(server: Server, request: FhirRequest, type_: str) -> FhirResponse:
    return await history(server, request, type_, None)


async def handle_system(server: Server, request: FhirRequest) -> FhirResponse:
    return await history(server, request, None, None, SERVER_RECORDED)
