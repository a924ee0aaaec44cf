"""Bearer tokens on FHIR requests (RFC 6750): who is calling, or 401.

Only the CapabilityStatement (`GET /fhir/metadata`) is answered without a token; `.well-known`
documents and `/healthz` are routes of their own and never reach here.
"""

from __future__ import annotations

from typing import Any

from fhirlead.auth.enforce import Policy
from fhirlead.auth.keys import InvalidToken
from fhirlead.errors import FhirError, Issue


def unauthorized(reason: str) -> FhirError:
    challenge = f'Bearer realm="fhirlead", error="invalid_token", error_description="{reason}"'
    return FhirError(401, [Issue("login", f"Authorization required: {reason}")], {"WWW-Authenticate": challenge})


def is_public(method: str, segments: list[str]) -> bool:
    return method in ("GET", "HEAD") and segments == ["metadata"]


async def policy_for(server: Any, authorization: str | None, fhir_base: str) -> Policy:
    """The caller's access, from its `Authorization: Bearer` header."""
    if not authorization:
        raise unauthorized("no access token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("expected an Authorization: Bearer access token")
    try:
        grant = await server.auth.tokens.verify(token.strip(), fhir_base)
    except InvalidToken as error:
        raise unauthorized(str(error)) from None
    policy = Policy(grant, server)
    await policy.prepare()
    return policy
