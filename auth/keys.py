"""The server's signing keys: access tokens (ES256) and OpenID id_tokens (RS256), published as a JWKS.

Keys live in the store's records (kind `signing-key`), so every server process on one store signs with
keys the others can verify (DESIGN.md §6). A key signs for `rotate_after` seconds; it stays published
(and accepted) for `token_lifetime` seconds more, until the last token it signed has expired, then its
record expires. OpenID Connect Discovery 1.0 §3 requires RS256 for id_tokens; access tokens use
ES256, which is small and fast to verify on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from fhirlead.storage.records import RecordConflict, Records

KIND = "signing-key"
ACCESS_ALG = "ES256"
ID_TOKEN_ALG = "RS256"
_RELOAD_INTERVAL = 1.0  # the published key set is re-read at most this often


class InvalidToken(Exception):
    """A token that is malformed, badly signed, expired or not ours; the message says which."""


def _generate(alg: str) -> ECKey | RSAKey:
    if alg == ACCESS_ALG:
        return ECKey.generate_key("P-256", private=True, auto_kid=True)
    return RSAKey.generate_key(2048, private=True, auto_kid=True)


class KeyRing:
    def __init__(self, records: Records, *, rotate_after: float, token_lifetime: float) -> None:
        self._records = records
        self._rotate_after = rotate_after
        self._token_lifetime = token_lifetime
        self._keys: dict[str, tuple[str, float, ECKey | RSAKey]] = {}  # kid -> (alg, created, key)
        self._loaded_at = 0.0
        self._missing: set[str] = set()
        self._lock = asyncio.Lock()

    async def load(self) -> None:
        keys = {}
        for record in await self._records.list(KIND):
            key = (ECKey if record.doc["alg"] == ACCESS_ALG else RSAKey).import_key(record.doc["jwk"])
            keys[record.key] = (record.doc["alg"], record.doc["created"], key)
        self._keys = keys
        self._loaded_at = time.monotonic()

    async def signing_key(self, alg: str) -> ECKey | RSAKey:
        """The newest key for `alg` that may still sign, created (and shared through the store) if none."""
        now = time.time()
        fresh = [(created, key) for kid, (a, created, key) in self._keys.items()
                 if a == alg and now - created < self._rotate_after]
        if fresh:
            return max(fresh, key=lambda pair: pair[0])[1]
        async with self._lock:
            await self.load()
            fresh = [(created, key) for a, created, key in self._keys.values()
                     if a == alg and now - created < self._rotate_after]
            if fresh:
                return max(fresh, key=lambda pair: pair[0])[1]
            key = await asyncio.to_thread(_generate, alg)
            doc = {"alg": alg, "created": now, "jwk": key.as_dict(private=True)}
            expires = now + self._rotate_after + self._token_lifetime + 60
            # a kid is the key's thumbprint: a conflict would be this very key
            with contextlib.suppress(RecordConflict):
                await self._records.put(KIND, key.kid, doc, expires=expires, expected_rev=0)
            self._keys[key.kid] = (alg, now, key)
            return key

    async def sign(self, claims: dict[str, Any], alg: str = ACCESS_ALG, typ: str = "JWT") -> str:
        key = await self.signing_key(alg)
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": typ}, claims, key)

    async def verify(self, token: str, alg: str = ACCESS_ALG) -> dict[str, Any]:
        """The claims of a token this server signed with `alg`; InvalidToken otherwise. Expiry is the
        caller's to check (it knows the clock skew it allows)."""
        header = token_header(token)
        kid = header.get("kid")
        if header.get("alg") != alg or not isinstance(kid, str):
            raise InvalidToken("unexpected signing algorithm or no key id")
        if kid not in self._keys and kid not in self._missing:
            await self.load()  # a key another process created since we last looked
            if kid not in self._keys:
                if len(self._missing) > 10_000:
                    self._missing.clear()
                self._missing.add(kid)  # asked once: a flood of made-up kids costs one load each, not more
        found = self._keys.get(kid)
        if found is None:
            raise InvalidToken("signed by an unknown key")
        try:
            return dict(jwt.decode(token, found[2], algorithms=[alg]).claims)
        except (JoseError, ValueError) as error:
            raise InvalidToken("bad signature or malformed token") from error

    async def jwks(self) -> dict[str, Any]:
        """The public keys of every key still published (RFC 7517 JWK Set)."""
        for alg in (ACCESS_ALG, ID_TOKEN_ALG):  # published before the first token, so verifiers can cache them
            await self.signing_key(alg)
        if time.monotonic() - self._loaded_at > _RELOAD_INTERVAL:
            await self.load()
        keys = []
        for kid, (alg, _created, key) in sorted(self._keys.items()):
            public = key.as_dict(private=False)
            keys.append({**public, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}


def token_header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified (to choose the key that verifies it)."""
    try:
        return dict(jws.extract_compact(token.encode("ascii")).protected)
    except (JoseError, ValueError, UnicodeError) as error:
        raise InvalidToken("malformed token") from error
