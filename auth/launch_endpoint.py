"""POST /auth/launch: an EHR integration creates a launch context over HTTP (the `fhirlead launch` CLI does
the same from a shell). Needs a Backend Services token whose `system/` scopes allow reading Patients.

Request body (JSON): `{"client_id": "...", "patient": "id", "encounter": "id"?, "user": "username"?,
"need_patient_banner": true?, "smart_style_url": "https://…"?}`. Answer: `{"launch": "…",
"launch_url": "…"}` (the app's registered launch URL with `iss` and `launch` filled in, when it has one).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhirlead.auth.bearer import policy_for
from fhirlead.auth.launch import LaunchContext, create_launch, launch_url
from fhirlead.auth.routes import CORS, NO_STORE, fhir_base
from fhirlead.errors import FhirError

_FIELDS = {"client_id": str, "patient": str, "encounter": str, "user": str, "need_patient_banner": bool,
           "smart_style_url": str}


def _error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_request" if status == 400 else "access_denied",
                         "error_description": text}, status, headers=NO_STORE)


async def create(request: Request) -> Response:
    server = request.app.state.server
    if server.auth is None:
        return _error(404, "authorization is turned off on this server")
    base = fhir_base(request)
    try:
        policy = await policy_for(server, request.headers.get("authorization"), base)
    except FhirError as error:
        return JSONResponse({"error": "invalid_token", "error_description": error.issues[0].diagnostics}, 401,
                            headers={**NO_STORE, **error.headers})
    if not any(s.context == "system" for s in policy.grant.covering("Patient", "r")):
        return _error(403, "creating a launch needs a system/ token that may read Patient resources")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return _error(400, "the body must be JSON")
    if not isinstance(body, dict) or any(k not in _FIELDS or not isinstance(v, _FIELDS[k]) for k, v in body.items()):
        return _error(400, f"the body must be a JSON object with some of: {', '.join(_FIELDS)}")
    if not body.get("client_id") or not body.get("patient"):
        return _error(400, "client_id and patient are required")
    client = await server.auth.registry.client(body["client_id"])
    if client is None:
        return _error(400, "unknown client_id")
    patient = await server.store.read("Patient", body["patient"])
    if patient is None or patient.deleted:
        return _error(400, f"Patient/{body['patient']} does not exist")
    if body.get("encounter") and await server.store.read("Encounter", body["encounter"]) is None:
        return _error(400, f"Encounter/{body['encounter']} does not exist")
    context = LaunchContext(**{**body, "client_id": client.client_id})
    launch_id = await create_launch(server.auth.records, context)
    answer = {"launch": launch_id}
    if client.launch_url:
        answer["launch_url"] = launch_url(client.launch_url, base, launch_id)
    return JSONResponse(answer, 201, headers={**NO_STORE, **CORS})
