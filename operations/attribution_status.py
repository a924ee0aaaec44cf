"""`Group/[id]/$attribution-status` (Da Vinci ATR 2.1.0): whether, to whom and since when one member is
attributed on a Member Attribution List.

For `patientReference` or `memberId`, a `collection` Bundle of the member's attribution data: the Group
with only that member's entries (the list's status and contract period with them), the Patient, and the
attributed providers and coverages the entries name — each only if the caller's token may read it. A
patient who is not on the list is a 404 OperationOutcome (the IG: "an appropriate OperationOutcome").
"""

from __future__ import annotations

from typing import Any

from fhirlead import fhirjson
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import not_found
from fhirlead.operations.attribution_list import group_operation, load, read_parameters, resolve
from fhirlead.plugins import OperationCall, OperationRegistry

NAME = "attribution-status"


async def attribution_status(call: OperationCall) -> FhirResponse:
    server, request = call.server, call.request
    params = read_parameters(call, NAME)
    store = server.store  # reads only: no unit of work (and no write lock)
    attribution = await load(server, store, call.id_ or "", request.base_url)
    patient = await resolve(store, call, params, "patientReference", "memberId", ("Patient",))
    found = await attribution.matching(patient or "")
    if not found:
        raise not_found(f"{patient} is not a member of Group/{attribution.version.id}")
    group = {**attribution.head, "member": [member.element for member in found]}
    if "quantity" in group:
        group["quantity"] = len(found)
    related = [patient, *sorted({ref for m in found for ref in (m.provider, m.coverage) if ref})]
    entries: list[dict[str, Any]] = [{"fullUrl": f"{request.base_url}/Group/{attribution.version.id}",
                                      "resource": group}]
    for reference in related:
        type_, _, id_ = reference.partition("/")
        version = await store.read(type_, id_)
        if version is None or version.body is None:
            continue
        if request.access is not None and not request.access.version_visible(version):
            continue
        entries.append({"fullUrl": f"{request.base_url}/{reference}", "resource": fhirjson.loads(version.body)})
    return FhirResponse(200, {"resourceType": "Bundle", "type": "collection", "entry": entries})


def register(registry: OperationRegistry) -> None:
    registry.add(group_operation(NAME, attribution_status, affects_state=False))
