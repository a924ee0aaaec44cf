"""`Subscription/[id]/$status` and `Subscription/$status` (Subscriptions R5 Backport IG 1.1.0,
backport-subscription-status; profiles/subscriptions/OperationDefinition-subscription-status.json): a
searchset Bundle with one `backport-subscription-status-r4` Parameters (type `query-status`) per
Subscription: its status, topic, the events numbered so far and the last delivery error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import FhirError, not_found
from fhirlead.operations.access import requiring
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search.collect import all_matches
from fhirlead.storage.port import ResourceVersion
from fhirlead.subscriptions import subscriptions_of
from fhirlead.subscriptions.events import STATE
from fhirlead.subscriptions.model import compile_subscription
from fhirlead.subscriptions.notify import status_parameters

DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "subscriptions"
                             / "OperationDefinition-subscription-status.json").read_bytes())


async def status(call: OperationCall) -> FhirResponse:
    server, request = call.server, call.request
    params = parameters.read(request, DEFINITION)
    access = request.access
    if call.id_ is not None:
        version = await server.store.read("Subscription", call.id_)
        if version is None or version.body is None or (access is not None and not access.version_visible(version)):
            raise not_found(f"Subscription/{call.id_} is not known")
        versions = [version]
    else:
        search = []
        if params.values.get("id"):
            search.append(("_id", ",".join(map(str, params.values["id"]))))
        if params.values.get("status"):
            search.append(("status", ",".join(map(str, params.values["status"]))))
        versions = [v for v in await all_matches(server.store, server.search, "Subscription", search)
                    if access is None or access.version_visible(v)]
    entries = [await _entry(call, version) for version in versions]
    return FhirResponse(200, {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries})


async def _entry(call: OperationCall, version: ResourceVersion) -> dict[str, Any]:
    server, base = call.server, call.request.base_url
    resource = fhirjson.loads(version.body or b"{}")
    subscriptions = subscriptions_of(server)
    topics = subscriptions.current.topics or await subscriptions.topics()
    state = await server.store.records.get(STATE, version.id)
    doc = state.doc if state else {}
    try:  # a Subscription no longer in force (off, error, topic retired) is reported all the same
        compiled = compile_subscription({**resource, "status": "requested"}, server.search, topics, "private")
    except FhirError:
        compiled = None
    if compiled is None:
        parameters_ = {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": f"{base}/Subscription/{version.id}"}},
            {"name": "status", "valueCode": resource.get("status")},
            {"name": "type", "valueCode": "query-status"},
            {"name": "events-since-subscription-start", "valueString": str(doc.get("events", 0))}]}
    else:
        parameters_ = status_parameters(compiled, base, "query-status", int(doc.get("events", 0)),
                                        status=resource.get("status"),
                                        error=doc.get("last_error") if doc.get("failures") else resource.get("error"))
    return {"fullUrl": f"urn:uuid:{parameters_.setdefault('id', version.id)}", "resource": parameters_,
            "search": {"mode": "match"}}


def register(registry: OperationRegistry) -> None:
    registry.add(Operation("status", status, type_level=True, instance=True, resource_types=frozenset({"Subscription"}),
                           definition=DEFINITION, authorize=requiring("Subscription")))
