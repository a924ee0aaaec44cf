"""GET /openapi.json: an OpenAPI 3.0 description of the FHIR API, generated from the CapabilityStatement.

One document per server (built once): for each resource type its interactions (read, vread, update,
patch, delete, history, create, search with every search parameter the server has for the type) and
the system interactions (batch/transaction, system search and history, capabilities), secured by the
SMART OAuth 2.0 flows when authorization is on. Bodies are FHIR JSON (`application/fhir+json`) and are
described as objects with the right `resourceType`, not the whole FHIR schema: the server validates
them itself, and tools (schemathesis, client generators) need the paths, parameters and statuses.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhirlead import __version__
from fhirlead.interaction.capabilities import statement

FHIR_JSON = "application/fhir+json"
PARAM_TYPES = {"number": "number", "date": "string", "string": "string", "token": "string",
               "reference": "string", "composite": "string", "quantity": "string", "uri": "string",
               "special": "string"}


def _resource_body(type_: str) -> dict[str, Any]:
    return {"required": True, "content": {FHIR_JSON: {"schema": {
        "type": "object", "required": ["resourceType"],
        "properties": {"resourceType": {"type": "string", "enum": [type_]}, "id": {"type": "string"}},
    }}}}


def _answers(*statuses: str) -> dict[str, Any]:
    described = {"200": "OK", "201": "Created", "204": "No Content", "400": "Bad request (OperationOutcome)",
                 "401": "No valid access token", "403": "Not allowed by the token's scopes",
                 "404": "Not found", "405": "Method not allowed", "409": "Version conflict",
                 "410": "Deleted", "412": "Precondition failed", "422": "Unprocessable"}
    return {status: {"description": described[status], "content": {FHIR_JSON: {"schema": {"type": "object"}}}}
            for status in statuses}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"}}


def _search_params(resource: dict[str, Any]) -> list[dict[str, Any]]:
    params = [{"name": p["name"], "in": "query", "required": False,
               "schema": {"type": PARAM_TYPES.get(p.get("type", "string"), "string")}}
              for p in resource.get("searchParam", [])]
    for name, schema in (("_count", {"type": "integer", "minimum": 0}), ("_sort", {"type": "string"}),
                         ("_include", {"type": "string"}), ("_revinclude", {"type": "string"}),
                         ("_summary", {"type": "string", "enum": ["true", "false", "text", "data", "count"]}),
                         ("_elements", {"type": "string"}), ("_total", {"type": "string",
                                                                       "enum": ["none", "estimate", "accurate"]})):
        if name not in {p["name"] for p in params}:
            params.append({"name": name, "in": "query", "required": False, "schema": schema})
    return params


def _type_paths(resource: dict[str, Any]) -> dict[str, Any]:
    type_ = resource["type"]
    tag = [type_]
    search = {"tags": tag, "summary": f"search {type_}", "operationId": f"search{type_}",
              "parameters": _search_params(resource), "responses": _answers("200", "400", "401", "403")}
    return {
        f"/{type_}": {
            "get": search,
            "post": {"tags": tag, "summary": f"create a {type_}", "operationId": f"create{type_}",
                     "requestBody": _resource_body(type_), "responses": _answers("201", "400", "401", "403", "412")},
        },
        f"/{type_}/{{id}}": {
            "parameters": [_path_param("id")],
            "get": {"tags": tag, "summary": f"read a {type_}", "operationId": f"read{type_}",
                    "responses": _answers("200", "401", "403", "404", "410")},
            "put": {"tags": tag, "summary": f"update a {type_}", "operationId": f"update{type_}",
                    "requestBody": _resource_body(type_),
                    "responses": _answers("200", "201", "400", "401", "403", "409", "412")},
            "patch": {"tags": tag, "summary": f"patch a {type_} (JSON Patch)", "operationId": f"patch{type_}",
                      "requestBody": {"required": True, "content": {"application/json-patch+json": {
                          "schema": {"type": "array", "items": {"type": "object"}}}}},
                      "responses": _answers("200", "400", "401", "403", "404", "409", "412", "422")},
            "delete": {"tags": tag, "summary": f"delete a {type_}", "operationId": f"delete{type_}",
                       "responses": _answers("200", "204", "401", "403", "404", "409")},
        },
        f"/{type_}/{{id}}/_history": {
            "parameters": [_path_param("id")],
            "get": {"tags": tag, "summary": f"history of a {type_}", "operationId": f"historyInstance{type_}",
                    "responses": _answers("200", "401", "403", "404")},
        },
        f"/{type_}/{{id}}/_history/{{vid}}": {
            "parameters": [_path_param("id"), {"name": "vid", "in": "path", "required": True,
                                               "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
            "get": {"tags": tag, "summary": f"read a version of a {type_}", "operationId": f"vread{type_}",
                    "responses": _answers("200", "401", "403", "404", "410")},
        },
        f"/{type_}/_history": {
            "get": {"tags": tag, "summary": f"history of all {type_}", "operationId": f"historyType{type_}",
                    "responses": _answers("200", "401", "403")},
        },
    }


def openapi_document(server: Any, base_url: str) -> dict[str, Any]:
    capabilities = statement(server, base_url)
    rest = capabilities["rest"][0]
    paths: dict[str, Any] = {
        "/metadata": {"get": {"tags": ["system"], "summary": "the CapabilityStatement", "operationId": "capabilities",
                              "security": [], "responses": _answers("200")}},
        "/": {"post": {"tags": ["system"], "summary": "batch or transaction", "operationId": "bundle",
                       "requestBody": _resource_body("Bundle"), "responses": _answers("200", "400", "401", "403")},
              "get": {"tags": ["system"], "summary": "search all types", "operationId": "searchSystem",
                      "parameters": [{"name": "_type", "in": "query", "required": False, "schema": {"type": "string"}}],
                      "responses": _answers("200", "400", "401", "403")}},
        "/_history": {"get": {"tags": ["system"], "summary": "history of the whole system",
                              "operationId": "historySystem", "responses": _answers("200", "401", "403")}},
    }
    for resource in rest["resource"]:
        paths.update(_type_paths(resource))
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "fhirlead FHIR R4 API", "version": __version__,
                 "description": "Generated from the CapabilityStatement at /metadata."},
        "servers": [{"url": base_url}],
        "paths": paths,
    }
    security = rest.get("security")
    if security:
        uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
        document["components"] = {"securitySchemes": {"smart": {"type": "oauth2", "flows": {
            "authorizationCode": {"authorizationUrl": uris["authorize"], "tokenUrl": uris["token"], "scopes": {}},
            "clientCredentials": {"tokenUrl": uris["token"], "scopes": {}},
        }}}}
        document["security"] = [{"smart": []}]
    return document


def openapi_bytes(server: Any, base_url: str) -> bytes:
    key = ("openapi", base_url)
    if key not in server.memo:
        server.memo[key] = orjson.dumps(openapi_document(server, base_url))
    return server.memo[key]
