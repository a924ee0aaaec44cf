"""AuthServer: the authorization server's long-lived parts, built once per server process."""

from __future__ import annotations

from dataclasses import dataclass

from fhirlead.auth.client_auth import ClientAuthenticator
from fhirlead.auth.codes import Codes
from fhirlead.auth.keys import KeyRing
from fhirlead.auth.registry import Registry
from fhirlead.auth.tokens import TokenService
from fhirlead.settings import Settings
from fhirlead.storage.records import Records

AUTH_PREFIX = "/auth"


@dataclass
class AuthServer:
    records: Records
    registry: Registry
    keys: KeyRing
    tokens: TokenService
    codes: Codes
    clients: ClientAuthenticator

    @classmethod
    def build(cls, records: Records, settings: Settings) -> AuthServer:
        keys = KeyRing(records, rotate_after=settings.key_rotation_seconds,
                       token_lifetime=settings.access_token_seconds)
        tokens = TokenService(records, keys, access_lifetime=settings.access_token_seconds,
                              refresh_lifetime=settings.refresh_token_seconds)
        registry = Registry(records)
        return cls(records, registry, keys, tokens, Codes(records, tokens), ClientAuthenticator(registry, records))


def auth_base(fhir_base: str) -> str:
    """The authorization server's base URL beside a FHIR base URL (…/fhir → …/auth)."""
    root = fhir_base[: -len("/fhir")] if fhir_base.endswith("/fhir") else fhir_base
    return root + AUTH_PREFIX
