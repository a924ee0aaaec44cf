"""Access tokens for the suites: every suite runs with authorization on, as a real client would.

A Backend Services client (`private_key_jwt`, ES384) is registered in the app's store and obtains its
token from the real token endpoint over HTTP, exactly as an EHR integration does.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey

from fhirlead.auth.registry import Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SYSTEM_CLIENT = "test-system"
SYSTEM_SCOPE = "system/*.cruds"
_KEY = ECKey.generate_key("P-384", private=True, auto_kid=True)


def client_jwks(key: ECKey = _KEY) -> dict[str, Any]:
    return {"keys": [key.as_dict(private=False)]}


def assertion(client_id: str, token_url: str, key: Any = _KEY, alg: str = "ES384", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + 240, "jti": uuid.uuid4().hex,
              **overrides}
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key, algorithms=[alg])


async def register_system_client(app: FastAPI, client_id: str = SYSTEM_CLIENT, scopes: str = SYSTEM_SCOPE,
                                 jwks: dict[str, Any] | None = None) -> None:
    registry = app.state.server.auth.registry
    await registry.save_client(Client(client_id, client_id, scopes.split(), jwks=jwks or client_jwks()))


async def system_token(app: FastAPI, root: str = "http://testserver", scope: str = SYSTEM_SCOPE,
                       client_id: str = SYSTEM_CLIENT) -> str:
    """A Backend Services access token for `scope`, from the app's own token endpoint."""
    await register_system_client(app, client_id, scope)
    token_url = f"{root}/auth/token"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=root) as http:
        answer = await http.post("/auth/token", data={
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion(client_id, token_url),
        })
    answer.raise_for_status()
    return answer.json()["access_token"]


async def bearer(app: FastAPI, root: str = "http://testserver", scope: str = SYSTEM_SCOPE) -> dict[str, str]:
    return {"Authorization": f"Bearer {await system_token(app, root, scope)}"}
