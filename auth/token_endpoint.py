"""POST /auth/token (RFC 6749 §3.2; SMART App Launch 2.2.0 §Obtain access token; SMART Backend Services).

Grant types: `authorization_code` (with PKCE), `refresh_token` (rotated; may only narrow the scope),
`client_credentials` (SMART Backend Services with private_key_jwt; confidential clients with a secret
may use it too, which is what a newcomer's one-line curl does; `system/` scopes only).
"""

from __future__ import annotations

import time
from typing import Any

from fhirlead.auth.client_auth import Authenticated, OAuthError
from fhirlead.auth.codes import CodeError
from fhirlead.auth.keys import ID_TOKEN_ALG, InvalidToken
from fhirlead.auth.scopes import grantable, parse_resource_scope, split
from fhirlead.auth.service import AuthServer
from fhirlead.auth.tokens import Authorization, WiderScope

REFRESH_SCOPES = ("offline_access", "online_access")
Issued = tuple[dict[str, Any], Authorization]  # the token response, and what it grants (for the audit)


async def exchange(auth: AuthServer, client: Authenticated, form: dict[str, str], fhir_base: str,
                   issuer: str) -> Issued:
    grant_type = form.get("grant_type")
    if grant_type == "client_credentials":
        return await _client_credentials(auth, client, form, fhir_base, issuer)
    if grant_type == "authorization_code":
        return await _authorization_code(auth, client, form, fhir_base, issuer)
    if grant_type == "refresh_token":
        return await _refresh(auth, client, form, fhir_base, issuer)
    raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")


async def _client_credentials(auth: AuthServer, client: Authenticated, form: dict[str, str], fhir_base: str,
                              issuer: str) -> Issued:
    if client.method == "none":
        raise OAuthError("unauthorized_client", "client_credentials needs a confidential client "
                                                "(private_key_jwt, as SMART Backend Services, or a client secret)")
    granted = [token for token in grantable(split(form.get("scope")), client.client.scopes)
               if token.startswith("system/") and parse_resource_scope(token) is not None]
    if not granted:
        raise OAuthError("invalid_scope", "none of the requested scopes is a system/ scope this client is "
                                          "registered for")
    authorization = Authorization(client.client.client_id, " ".join(granted), client.client.client_id)
    return await _response(auth, authorization, fhir_base, issuer, refresh=False, nonce=None)


async def _authorization_code(auth: AuthServer, client: Authenticated, form: dict[str, str], fhir_base: str,
                              issuer: str) -> Issued:
    code = form.get("code")
    if not code:
        raise OAuthError("invalid_request", "code is required")
    try:
        authorization, nonce = await auth.codes.redeem(code, client.client.client_id, form.get("redirect_uri"),
                                                       form.get("code_verifier"))
    except CodeError as error:
        raise OAuthError("invalid_grant", str(error)) from None
    refresh = any(token in REFRESH_SCOPES for token in split(authorization.scope))
    return await _response(auth, authorization, fhir_base, issuer, refresh=refresh, nonce=nonce)


async def _refresh(auth: AuthServer, client: Authenticated, form: dict[str, str], fhir_base: str,
                   issuer: str) -> Issued:
    token = form.get("refresh_token")
    if not token:
        raise OAuthError("invalid_request", "refresh_token is required")
    try:
        authorization = await auth.tokens.redeem_refresh(token, client.client.client_id, form.get("scope"))
    except InvalidToken as error:
        raise OAuthError("invalid_grant", str(error)) from None
    except WiderScope as error:
        raise OAuthError("invalid_scope", str(error)) from None
    return await _response(auth, authorization, fhir_base, issuer, refresh=True, nonce=None)


async def _response(auth: AuthServer, authorization: Authorization, fhir_base: str, issuer: str, *,
                    refresh: bool, nonce: str | None) -> Issued:
    body: dict[str, Any] = {
        "access_token": await auth.tokens.access_token(authorization, issuer, fhir_base),
        "token_type": "Bearer",
        "expires_in": auth.tokens.access_lifetime,
        "scope": authorization.scope,
        **authorization.context(),
    }
    scopes = split(authorization.scope)
    if refresh:
        body["refresh_token"] = await auth.tokens.refresh_token(authorization)
    if "fhirUser" in scopes and authorization.fhir_user:
        body["fhirUser"] = f"{issuer}/{authorization.fhir_user}"
    if "openid" in scopes and authorization.fhir_user:
        body["id_token"] = await _id_token(auth, authorization, issuer, nonce, "fhirUser" in scopes)
    return body, authorization


async def _id_token(auth: AuthServer, authorization: Authorization, issuer: str, nonce: str | None,
                    with_fhir_user: bool) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "sub": authorization.subject, "aud": authorization.client_id,
                              "iat": now, "exp": now + auth.tokens.access_lifetime}
    if with_fhir_user:
        claims["fhirUser"] = f"{issuer}/{authorization.fhir_user}"
    if nonce:
        claims["nonce"] = nonce
    return await auth.keys.sign(claims, ID_TOKEN_ALG)
