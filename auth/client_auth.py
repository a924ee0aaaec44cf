"""Client authentication at the token, introspection and revocation endpoints.

- `client_secret_basic` (RFC 6749 §2.3.1): HTTP Basic with the url-encoded client id and secret.
- `private_key_jwt` (RFC 7523 §2.2; SMART Backend Services, "Authenticating to the token endpoint"):
  a JWT signed with RS384 or ES384 by a key of the client's registered JWKS (or of the JWKS at its
  registered URL: no other URL is fetched, whatever the assertion's `jku` says); `iss` = `sub` = client
  id, `aud` = the token endpoint, `exp` at most five minutes ahead, `jti` never seen before.
- public clients name themselves with `client_id` only.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhirlead.auth.keys import InvalidToken, token_header
from fhirlead.auth.registry import Client, Registry, verify_secret
from fhirlead.storage.records import RecordConflict, Records

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300
JTI = "jti"
_JWKS_CACHE_SECONDS = 300
_JWKS_REFETCH_SECONDS = 10


class OAuthError(Exception):
    """An OAuth error response (RFC 6749 §5.2): `error` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True)
class Authenticated:
    client: Client
    method: str  # none, client_secret_basic, private_key_jwt


def jwks_url_allowed(url: str) -> bool:
    """https anywhere; http only to a loopback host (development)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class JwksCache:
    """Key sets fetched from registered JWKS URLs, per process, refreshed after a while or when an
    assertion names an unknown kid (at most every few seconds per URL)."""

    def __init__(self) -> None:
        self._sets: dict[str, tuple[float, KeySet]] = {}

    async def key_set(self, url: str, kid: str | None) -> KeySet:
        now = time.monotonic()
        cached = self._sets.get(url)
        if cached is not None:
            age = now - cached[0]
            known = kid is None or any(key.kid == kid for key in cached[1].keys)
            if age < _JWKS_CACHE_SECONDS and (known or age < _JWKS_REFETCH_SECONDS):
                return cached[1]
        if not jwks_url_allowed(url):
            raise OAuthError("invalid_client", "the client's registered JWKS URL is not https", 401)
        try:
            async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
                answer = await http.get(url, headers={"Accept": "application/json"})
            answer.raise_for_status()
            key_set = KeySet.import_key_set(answer.json())
        except (httpx.HTTPError, ValueError, JoseError) as error:
            raise OAuthError("invalid_client", "the client's JWKS could not be fetched", 401) from error
        self._sets[url] = (now, key_set)
        return key_set


class ClientAuthenticator:
    def __init__(self, registry: Registry, records: Records) -> None:
        self._registry = registry
        self._records = records
        self._jwks = JwksCache()

    async def authenticate(
        self, form: dict[str, str], authorization: str | None, endpoint_url: str
    ) -> Authenticated:
        """The client making this request, authenticated by whichever method it registered for."""
        if authorization and authorization.lower().startswith("basic "):
            return await self._basic(authorization[6:].strip(), form)
        if form.get("client_assertion_type") or form.get("client_assertion"):
            return await self._assertion(form, endpoint_url)
        client = await self._known(form.get("client_id"))
        if not client.public:
            raise OAuthError("invalid_client", "this client must authenticate", 401)
        return Authenticated(client, "none")

    async def _known(self, client_id: str | None) -> Client:
        client = await self._registry.client(client_id) if client_id else None
        if client is None:
            raise OAuthError("invalid_client", "unknown client", 401)
        return client

    async def _basic(self, encoded: str, form: dict[str, str]) -> Authenticated:
        try:
            client_id, _, secret = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
        client_id, secret = unquote(client_id), unquote(secret)
        client = await self._registry.client(client_id)
        hashed = client.secret_hash if client is not None else None
        if not await verify_secret(hashed, secret) or client is None:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if form.get("client_id") not in (None, client_id):
            raise OAuthError("invalid_request", "client_id does not match the authenticated client")
        return Authenticated(client, "client_secret_basic")

    async def _assertion(self, form: dict[str, str], endpoint_url: str) -> Authenticated:
        if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
            raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}", 401)
        assertion = form["client_assertion"]
        try:
            header = token_header(assertion)
        except InvalidToken:
            raise OAuthError("invalid_client", "the client assertion is not a JWT", 401) from None
        alg = header.get("alg")
        if alg not in ASSERTION_ALGS:
            raise OAuthError("invalid_client", f"client assertions must be signed with {' or '.join(ASSERTION_ALGS)}",
                             401)
        unverified = _unverified_claims(assertion)
        client = await self._known(unverified.get("iss") if isinstance(unverified.get("iss"), str) else None)
        if not client.uses_key:
            raise OAuthError("invalid_client", "this client has no registered keys", 401)
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        if client.jwks is not None:
            key_set = KeySet.import_key_set(client.jwks)
        else:
            key_set = await self._jwks.key_set(client.jwks_url or "", kid)
        if kid is None or not any(key.kid == kid for key in key_set.keys):
            raise OAuthError("invalid_client", "the assertion's kid is not among the client's keys", 401)
        try:
            claims = dict(jwt.decode(assertion, key_set, algorithms=[alg]).claims)
        except (JoseError, ValueError):
            raise OAuthError("invalid_client", "the client assertion's signature does not verify", 401) from None
        await self._check_claims(client, claims, endpoint_url)
        return Authenticated(client, "private_key_jwt")

    async def _check_claims(self, client: Client, claims: dict[str, Any], endpoint_url: str) -> None:
        now = time.time()
        if claims.get("iss") != client.client_id or claims.get("sub") != client.client_id:
            raise OAuthError("invalid_client", "iss and sub must both be the client id", 401)
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if endpoint_url not in audiences:
            raise OAuthError("invalid_client", "the assertion's aud must be this token endpoint", 401)
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= now:
            raise OAuthError("invalid_client", "the client assertion has expired", 401)
        if exp > now + MAX_ASSERTION_LIFETIME + 5:
            raise OAuthError("invalid_client", "the assertion's exp is more than five minutes ahead", 401)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise OAuthError("invalid_client", "the client assertion has no jti", 401)
        try:
            await self._records.put(JTI, f"{client.client_id}:{jti}", {}, expires=float(exp) + 5, expected_rev=0)
        except RecordConflict:
            raise OAuthError("invalid_client", "this client assertion (jti) was already used", 401) from None


def _unverified_claims(token: str) -> dict[str, Any]:
    import orjson

    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        raise OAuthError("invalid_client", "the client assertion is not a JWT", 401) from None
    if not isinstance(claims, dict):
        raise OAuthError("invalid_client", "the client assertion is not a JWT", 401)
    return claims
