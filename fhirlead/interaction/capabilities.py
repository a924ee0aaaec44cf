"""capabilities: GET [base]/metadata (https://hl7.org/fhir/R4/http.html#capabilities).

The CapabilityStatement is generated from what this server really has loaded: its resource types, the
search parameters of its registry, and the operations its plugins registered. Built once per server.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhirlead import __version__, clock
from fhirlead.api.messages import JSON_PATCH, FhirRequest, FhirResponse
from fhirlead.auth.routes import smart_configuration_document
from fhirlead.definitions import FHIR_VERSION, resource_types
from fhirlead.server import Server
from fhirlead.subscriptions.model import BACKPORT, BACKPORT_PROFILE
from fhirlead.subscriptions.topics import built_in_topics

INTERACTIONS = ("read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                "search-type")
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
STARTED = clock.instant(clock.now())
TOPIC_CANONICAL = BACKPORT + "capabilitystatement-subscriptiontopic-canonical"


def _operation(op: Any) -> dict[str, str]:
    entry = {"name": op.name, "definition": f"http://fhirlead.org/OperationDefinition/{op.name}"}
    if op.definition and op.definition.get("url"):
        entry["definition"] = op.definition["url"]
    return entry


def _resource(server: Server, type_: str) -> dict[str, Any]:
    operations = [_operation(op) for op in server.operations.all()
                  if (op.type_level or op.instance) and (not op.resource_types or type_ in op.resource_types)]
    resource: dict[str, Any] = {
        "type": type_,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{type_}",
        "interaction": [{"code": code} for code in INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchInclude": ["*"],
        "searchRevInclude": ["*"],
        "searchParam": [
            {"name": p.code, "definition": p.url, "type": p.type} for p in server.search.parameters_for(type_)
        ],
    }
    if operations:
        resource["operation"] = operations
    if type_ == "Subscription":  # Subscriptions R5 Backport IG 1.1.0 §Capability statements: the topics offered
        resource["extension"] = [{"url": TOPIC_CANONICAL, "valueCanonical": url} for url in built_in_topics()]
        resource["supportedProfile"] = [BACKPORT_PROFILE]
    return resource


def security(base_url: str) -> dict[str, Any]:
    """rest.security for a SMART on FHIR server (SMART App Launch 2.2.0 §Conformance: oauth-uris)."""
    auth = smart_configuration_document(base_url)
    uris = [{"url": name, "valueUri": auth[field]} for name, field in (
        ("token", "token_endpoint"), ("authorize", "authorization_endpoint"),
        ("introspect", "introspection_endpoint"), ("revoke", "revocation_endpoint"),
    )]
    return {
        "cors": True,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 using SMART-on-FHIR profile"}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                       "extension": uris}],
        "description": "SMART App Launch 2.2.0 and Backend Services; see .well-known/smart-configuration",
    }


def statement(server: Server, base_url: str) -> dict[str, Any]:
    """The CapabilityStatement of this server, as seen at `base_url`."""
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STARTED,
        "publisher": "fhirlead",
        "kind": "instance",
        "software": {"name": "fhirlead", "version": __version__},
        "implementation": {"description": "fhirlead FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": [JSON_PATCH],
        "rest": [{
            "mode": "server",
            "resource": [_resource(server, type_) for type_ in sorted(resource_types())],
            "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            "operation": [_operation(op) for op in server.operations.all() if op.system],
        }],
    }
    if not statement["rest"][0]["operation"]:
        del statement["rest"][0]["operation"]
    if server.auth is not None:
        statement["rest"][0]["security"] = security(base_url)
    return statement


def _statement_bytes(server: Server, base_url: str) -> bytes:
    return orjson.dumps(statement(server, base_url))


async def handle(server: Server, request: FhirRequest) -> FhirResponse:
    key = ("capabilities", request.base_url)
    if key not in server.memo:
        server.memo[key] = _statement_bytes(server, request.base_url)
    return FhirResponse(200, server.memo[key])
