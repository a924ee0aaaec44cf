"""The authorization server's HTTP endpoints and discovery documents.

- GET  /fhir/.well-known/smart-configuration (SMART App Launch 2.2.0 §Conformance; JSON whatever the
  Accept header, CORS open, absolute URLs)
- GET  /fhir/.well-known/openid-configuration (OpenID Connect Discovery 1.0; issuer = the FHIR base)
- GET  /auth/jwks            the public keys that sign access tokens and id_tokens
- POST /auth/token           see `token_endpoint`
- POST /auth/introspect      RFC 7662, for an authenticated client or any valid bearer token
- POST /auth/revoke          RFC 7009
"""

from __future__ import annotations

import importlib
import logging
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fhirlead.auth.client_auth import ASSERTION_ALGS, OAuthError
from fhirlead.auth.keys import ID_TOKEN_ALG, InvalidToken
from fhirlead.auth.service import AuthServer, auth_base
from fhirlead.auth.token_endpoint import exchange

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
CORS = {"Access-Control-Allow-Origin": "*"}
MAX_FORM_BYTES = 64 * 1024

SCOPES_SUPPORTED = [
    "openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
    "patient/*.rs", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds",
    "patient/*.read", "user/*.read", "user/*.write", "system/*.read",
]
CAPABILITIES = [
    "launch-ehr", "launch-standalone", "client-public", "client-confidential-symmetric",
    "client-confidential-asymmetric", "context-banner", "context-style", "context-ehr-patient",
    "context-ehr-encounter", "context-standalone-patient", "sso-openid-connect", "permission-offline",
    "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2",
    "authorize-post",
]


def fhir_base(request: Request) -> str:
    from fhirlead.api.app import base_url

    return base_url(request, request.app.state.server.settings)


def _auth(request: Request) -> AuthServer:
    auth = request.app.state.server.auth
    if auth is None:
        raise OAuthError("invalid_request", "authorization is turned off on this server", 404)
    return auth


def oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="fhirlead"'
    return JSONResponse({"error": error.error, "error_description": error.description}, error.status,
                        headers=headers)


async def read_form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send the parameters as application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "request too large", 413)
    pairs = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            raise OAuthError("invalid_request", f"parameter {key} is repeated")  # RFC 6749 §3.1
        form[key] = value
    return form


def audit(request: Request, kind: str, success: bool, client_id: str | None, detail: str | None = None,
          grant: Any = None) -> None:
    """An authorization event for the audit trail (never a token, secret or code). `grant`: what was
    granted (an Authorization: its subject and fhir_user name the user)."""
    trail = getattr(request.app.state.server, "audit", None)
    if trail is not None:
        trail.authorization(kind=kind, outcome=success, client_id=client_id,
                            username=getattr(grant, "subject", None), fhir_user=getattr(grant, "fhir_user", None),
                            address=request.client.host if request.client else None, detail=detail)


async def token(request: Request) -> Response:
    client_id: str | None = None
    try:
        auth = _auth(request)
        base = fhir_base(request)
        form = await read_form(request)
        client = await auth.clients.authenticate(form, request.headers.get("authorization"),
                                                 auth_base(base) + "/token")
        client_id = client.client.client_id
        body, granted = await exchange(auth, client, form, base, base)
    except OAuthError as error:
        audit(request, "token-refused", False, client_id, error.error)
        return oauth_error(error)
    audit(request, "token-issued", True, client_id, grant=granted)
    return JSONResponse(body, headers=NO_STORE)


async def introspect(request: Request) -> Response:
    try:
        auth = _auth(request)
        base = fhir_base(request)
        form = await read_form(request)
        await _introspection_caller(auth, request, form, base)
        answer = await _introspection(auth, form.get("token", ""), base)
    except OAuthError as error:
        return oauth_error(error)
    return JSONResponse(answer, headers=NO_STORE)


async def _introspection_caller(auth: AuthServer, request: Request, form: dict[str, str], base: str) -> None:
    """An authenticated client, or a holder of a valid access token (RFC 7662 §2.1)."""
    authorization = request.headers.get("authorization") or ""
    if authorization.lower().startswith("bearer "):
        try:
            await auth.tokens.verify(authorization[7:].strip(), base)
            return
        except InvalidToken:
            raise OAuthError("invalid_token", "the bearer token is not valid", 401) from None
    caller_form = {key: value for key, value in form.items() if key not in ("token", "token_type_hint")}
    await auth.clients.authenticate(caller_form, authorization or None, auth_base(base) + "/introspect")


async def _introspection(auth: AuthServer, token_value: str, base: str) -> dict[str, Any]:
    try:
        grant = await auth.tokens.verify(token_value, base)
    except InvalidToken:
        return {"active": False}
    answer: dict[str, Any] = {
        "active": True, "scope": grant.scope, "client_id": grant.client_id, "sub": grant.subject,
        "exp": int(grant.expires), "iss": base, "aud": base, "token_type": "Bearer",
    }
    for name, value in (("patient", grant.patient), ("encounter", grant.encounter), ("fhirUser", grant.fhir_user)):
        if value is not None:
            answer[name] = f"{base}/{value}" if name == "fhirUser" else value
    return answer


async def revoke(request: Request) -> Response:
    try:
        auth = _auth(request)
        base = fhir_base(request)
        form = await read_form(request)
        caller = {key: value for key, value in form.items() if key not in ("token", "token_type_hint")}
        client = await auth.clients.authenticate(caller, request.headers.get("authorization"),
                                                 auth_base(base) + "/revoke")
        await _revoke(auth, form.get("token", ""), client.client.client_id, base)
    except OAuthError as error:
        return oauth_error(error)
    audit(request, "token-revoked", True, client.client.client_id)
    return Response(status_code=200, headers=NO_STORE)


async def _revoke(auth: AuthServer, token_value: str, client_id: str, base: str) -> None:
    """RFC 7009 §2.2: an unknown or invalid token is not an error; another client's token is left alone."""
    family = await auth.tokens.refresh_family(token_value)
    if family is not None:
        if family[1] == client_id and family[0]:
            await auth.tokens.revoke_family(family[0])
        return
    try:
        grant = await auth.tokens.verify(token_value, base)
    except InvalidToken:
        return
    if grant.client_id == client_id:
        await auth.tokens.revoke_access(grant.token_id, grant.expires)


async def jwks(request: Request) -> Response:
    try:
        keys = await _auth(request).keys.jwks()
    except OAuthError as error:
        return oauth_error(error)
    return JSONResponse(keys, headers={**CORS, "Cache-Control": "public, max-age=300"})


def smart_configuration_document(base: str) -> dict[str, Any]:
    auth = auth_base(base)
    return {
        "issuer": base,
        "jwks_uri": f"{auth}/jwks",
        "authorization_endpoint": f"{auth}/authorize",
        "token_endpoint": f"{auth}/token",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "introspection_endpoint": f"{auth}/introspect",
        "revocation_endpoint": f"{auth}/revoke",
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": CAPABILITIES,
    }


async def smart_configuration(request: Request) -> Response:
    if request.app.state.server.auth is None:
        return JSONResponse({"error": "authorization is turned off on this server"}, 404, headers=CORS)
    return JSONResponse(smart_configuration_document(fhir_base(request)), headers=CORS)


async def openid_configuration(request: Request) -> Response:
    if request.app.state.server.auth is None:
        return JSONResponse({"error": "authorization is turned off on this server"}, 404, headers=CORS)
    base = fhir_base(request)
    smart = smart_configuration_document(base)
    document = {
        "issuer": base,
        "authorization_endpoint": smart["authorization_endpoint"],
        "token_endpoint": smart["token_endpoint"],
        "jwks_uri": smart["jwks_uri"],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "scopes_supported": ["openid", "fhirUser", "profile"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "token_endpoint_auth_methods_supported": smart["token_endpoint_auth_methods_supported"],
        "code_challenge_methods_supported": ["S256"],
        "grant_types_supported": smart["grant_types_supported"],
    }
    return JSONResponse(document, headers=CORS)


def _lazy(target: str) -> Any:
    """An endpoint defined in a module that itself imports this one (the browser flow)."""
    module_name, function = target.split(":")

    async def endpoint(request: Request) -> Response:
        return await getattr(importlib.import_module(module_name), function)(request)

    return endpoint


ENDPOINTS = [
    ("authorize", _lazy("fhirlead.auth.authorize:authorize"), ["GET", "POST"]),
    ("login", _lazy("fhirlead.auth.authorize:login"), ["POST"]),
    ("patient", _lazy("fhirlead.auth.authorize:choose_patient"), ["POST"]),
    ("consent", _lazy("fhirlead.auth.authorize:decide"), ["POST"]),
    ("launch", _lazy("fhirlead.auth.launch_endpoint:create"), ["POST"]),
    ("token", token, ["POST"]),
    ("introspect", introspect, ["POST"]),
    ("revoke", revoke, ["POST"]),
    ("jwks", jwks, ["GET"]),
]
