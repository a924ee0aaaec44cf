"""Access tokens (short-lived signed JWTs), refresh-token families and revocation.

Access tokens are verified from their signature alone (no store round trip per request). Revocation
still takes effect at once in the process that revoked, and within `REVOCATION_POLL` seconds in every
other process on the store: revoked token ids and refresh families are records, and each process
re-reads that (small, self-expiring) set at most once per interval.

Refresh tokens (RFC 6749 §6, OAuth 2.0 Security BCP §4.14): opaque random strings, stored only as
hashes, bound to their client, rotated on every use; presenting a used one revokes its whole family
(every refresh and access token issued from the same authorization).
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fhirlead.auth.grant import Grant
from fhirlead.auth.keys import InvalidToken, KeyRing
from fhirlead.auth.scopes import split, within
from fhirlead.storage.records import RecordConflict, Records

REVOKED = "revoked"
REFRESH = "refresh"
FAMILY = "family"
REVOCATION_POLL = 1.0
LEEWAY = 5  # seconds of clock skew tolerated
VERIFIED_CACHE_SIZE = 10_000
ONLINE_REFRESH_SECONDS = 30 * 60


def digest(secret: str) -> str:
    """The key a secret bearer string (code, refresh token) is stored under: its SHA-256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class WiderScope(Exception):
    """A refresh asked for more than the original grant."""


@dataclass
class Authorization:
    """What a user (or a client on its own) authorised: carried by codes and refresh tokens."""

    client_id: str
    scope: str
    subject: str
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    admin: bool = False
    need_patient_banner: bool | None = None
    smart_style_url: str | None = None
    family: str | None = None

    def context(self) -> dict[str, Any]:
        """The launch-context fields of a token response (SMART §Launch context arrives with your access token)."""
        context: dict[str, Any] = {}
        for name, value in (("patient", self.patient), ("encounter", self.encounter),
                            ("need_patient_banner", self.need_patient_banner),
                            ("smart_style_url", self.smart_style_url)):
            if value is not None:
                context[name] = value
        return context


class TokenService:
    def __init__(self, records: Records, keys: KeyRing, *, access_lifetime: int, refresh_lifetime: int) -> None:
        self._records = records
        self.keys = keys
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self._revoked: set[str] = set()
        self._verified: dict[tuple[str, str], Grant] = {}
        self._revoked_loaded = float("-inf")

    async def access_token(self, authorization: Authorization, issuer: str, audience: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer, "aud": audience, "sub": authorization.subject, "client_id": authorization.client_id,
            "scope": authorization.scope, "iat": now, "exp": now + self.access_lifetime,
            "jti": uuid.uuid4().hex,
        }
        for claim, value in (("patient", authorization.patient), ("encounter", authorization.encounter),
                             ("fhirUser", authorization.fhir_user), ("fam", authorization.family)):
            if value is not None:
                claims[claim] = value
        if authorization.admin:
            claims["fhirlead_admin"] = True
        return await self.keys.sign(claims)

    async def verify(self, token: str, audience: str) -> Grant:
        """The grant of a valid, unexpired, unrevoked access token for `audience`; InvalidToken otherwise.

        A token whose signature was verified once is remembered (per process, bounded): the signature
        check is most of the cost of a small read. Expiry and revocation are checked every time."""
        cached = self._verified.get((token, audience))
        if cached is not None:
            if cached.expires + LEEWAY < time.time():
                raise InvalidToken("the access token has expired")
            if await self.revoked(cached):
                raise InvalidToken("the access token has been revoked")
            return cached
        grant = await self._verify_signed(token, audience)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[(token, audience)] = grant
        return grant

    async def _verify_signed(self, token: str, audience: str) -> Grant:
        claims = await self.keys.verify(token)
        now = time.time()
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp + LEEWAY < now:
            raise InvalidToken("the access token has expired")
        if claims.get("aud") != audience:
            raise InvalidToken("the access token is not for this server")
        if not isinstance(claims.get("client_id"), str) or not isinstance(claims.get("jti"), str):
            raise InvalidToken("malformed access token")
        grant = Grant.from_claims(claims)
        if await self.revoked(grant):
            raise InvalidToken("the access token has been revoked")
        return grant

    # -- revocation ---------------------------------------------------------------------------

    async def revoked(self, grant: Grant) -> bool:
        if time.monotonic() - self._revoked_loaded > REVOCATION_POLL:
            self._revoked = {record.key for record in await self._records.list(REVOKED)}
            self._revoked_loaded = time.monotonic()
        return f"jti:{grant.token_id}" in self._revoked or (
            grant.family is not None and f"fam:{grant.family}" in self._revoked
        )

    async def revoke_access(self, token_id: str, expires: float) -> None:
        await self._mark(f"jti:{token_id}", expires)

    async def revoke_family(self, family: str) -> None:
        """Every token of the family: its refresh tokens (through the family record) and the access
        tokens that carry its id."""
        await self._records.put(FAMILY, family, {"revoked": True}, expires=time.time() + self.refresh_lifetime)
        await self._mark(f"fam:{family}", time.time() + self.refresh_lifetime)

    async def _mark(self, key: str, expires: float) -> None:
        await self._records.put(REVOKED, key, {}, expires=expires + LEEWAY)
        self._revoked.add(key)

    async def family_revoked(self, family: str) -> bool:
        record = await self._records.get(FAMILY, family)
        return record is not None and bool(record.doc.get("revoked"))

    # -- refresh tokens -----------------------------------------------------------------------

    async def refresh_token(self, authorization: Authorization) -> str:
        token = new_secret()
        doc = {**authorization.__dict__, "used": False}
        await self._records.put(REFRESH, digest(token), doc, expires=time.time() + self._lifetime_of(authorization),
                                expected_rev=0)
        return token

    def _lifetime_of(self, authorization: Authorization) -> float:
        """offline_access: the full refresh lifetime; online_access (SMART: usable while the user is
        online) only ONLINE_REFRESH_SECONDS from each use, so a refresh chain dies once the app stops."""
        if "offline_access" in split(authorization.scope):
            return self.refresh_lifetime
        return min(self.refresh_lifetime, ONLINE_REFRESH_SECONDS)

    async def redeem_refresh(self, token: str, client_id: str, scope: str | None = None) -> Authorization:
        """The authorization behind a refresh token, which is used up by this call, narrowed to `scope`
        if given. A reused token revokes its family; a token of another client, or a scope wider than
        the original, is refused without using the token up."""
        record = await self._records.get(REFRESH, digest(token))
        if record is None:
            raise InvalidToken("unknown or expired refresh token")
        doc = dict(record.doc)
        if doc["client_id"] != client_id:
            raise InvalidToken("the refresh token was issued to another client")
        family = doc.get("family")
        if doc.get("used"):
            if family:
                await self.revoke_family(family)
            raise InvalidToken("the refresh token was already used; its family is revoked")
        if family and await self.family_revoked(family):
            raise InvalidToken("the refresh token has been revoked")
        if scope:
            wanted, had = split(scope), split(doc["scope"])
            if not all(within(token, had) for token in wanted):
                raise WiderScope("a refresh may only narrow the scope")
            doc["scope"] = " ".join(wanted)
        try:
            await self._records.put(REFRESH, record.key, {**doc, "used": True}, expires=record.expires,
                                    expected_rev=record.rev)
        except RecordConflict:  # used concurrently: treat as reuse
            if family:
                await self.revoke_family(family)
            raise InvalidToken("the refresh token was already used; its family is revoked") from None
        doc.pop("used", None)
        return Authorization(**doc)


    async def refresh_family(self, token: str) -> tuple[str | None, str] | None:
        """(family, client_id) of a refresh token, for revocation and introspection."""
        record = await self._records.get(REFRESH, digest(token))
        return None if record is None else (record.doc.get("family"), record.doc["client_id"])
