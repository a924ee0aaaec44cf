"""Authorization codes (RFC 6749 §4.1) with PKCE (RFC 7636), as SMART App Launch 2.2.0 requires:
S256 only, single use, bound to client and redirect URI, expiring within a minute. A code presented a
second time is refused and revokes every token issued from it (RFC 6749 §4.1.2)."""

from __future__ import annotations

import hmac
import time
import uuid
from dataclasses import asdict
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from fhirlead.auth.tokens import Authorization, TokenService, digest, new_secret
from fhirlead.storage.records import RecordConflict, Records

CODE = "code"
CODE_LIFETIME = 60


class CodeError(Exception):
    """The code cannot be redeemed; the message says why (for the error_description)."""


class Codes:
    def __init__(self, records: Records, tokens: TokenService) -> None:
        self._records = records
        self._tokens = tokens

    async def issue(self, authorization: Authorization, redirect_uri: str, code_challenge: str,
                    nonce: str | None) -> str:
        code = new_secret()
        authorization.family = uuid.uuid4().hex  # the tokens this code yields share a family
        doc = {"authorization": asdict(authorization), "redirect_uri": redirect_uri,
               "code_challenge": code_challenge, "nonce": nonce, "used": False}
        await self._records.put(CODE, digest(code), doc, expires=time.time() + CODE_LIFETIME, expected_rev=0)
        return code

    async def redeem(self, code: str, client_id: str, redirect_uri: str | None,
                     verifier: str | None) -> tuple[Authorization, str | None]:
        """The authorization and nonce behind `code`, which is used up by this call."""
        record = await self._records.get(CODE, digest(code))
        if record is None:
            raise CodeError("unknown or expired authorization code")
        doc: dict[str, Any] = record.doc
        authorization = Authorization(**doc["authorization"])
        if doc["used"]:
            await self._tokens.revoke_family(authorization.family or "")
            raise CodeError("the authorization code was already used; the tokens issued from it are revoked")
        if authorization.client_id != client_id:
            raise CodeError("the authorization code was issued to another client")
        if redirect_uri != doc["redirect_uri"]:
            raise CodeError("redirect_uri does not match the one of the authorization request")
        if not verifier or not hmac.compare_digest(create_s256_code_challenge(verifier), doc["code_challenge"]):
            raise CodeError("code_verifier does not match the code_challenge")
        try:
            await self._records.put(CODE, record.key, {**doc, "used": True}, expires=time.time() + 3600,
                                    expected_rev=record.rev)
        except RecordConflict:
            await self._tokens.revoke_family(authorization.family or "")
            raise CodeError("the authorization code was already used") from None
        return authorization, doc["nonce"]
