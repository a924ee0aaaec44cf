"""AuthServer: the authorization server's long-lived parts, built once per server process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from fhirlead.auth.client_auth import ClientAuthenticator
from fhirlead.auth.codes import Codes
from fhirlead.auth.keys import KeyRing
from fhirlead.auth.registry import Registry
from fhirlead.auth.tokens import TokenService
from fhirlead.settings import Settings
from fhirlead.storage.records import Records

AUTH_PREFIX = "/auth"
PURGE_INTERVAL = 600  # seconds between removals of expired records
log = logging.getLogger(__name__)


@dataclass
class AuthServer:
    records: Records
    registry: Registry
    keys: KeyRing
    tokens: TokenService
    codes: Codes
    clients: ClientAuthenticator
    housekeeping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin removing expired records (used codes, jti, launches, throttles…) in the background."""
        self.housekeeping = asyncio.get_running_loop().create_task(self._purge_forever(), name="fhirlead-auth-purge")

    async def stop(self) -> None:
        if self.housekeeping is not None:
            self.housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.housekeeping
            self.housekeeping = None

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL)
            try:
                removed = await self.records.purge_expired()
            except Exception as error:  # the next round tries again
                log.warning("purging expired authorization records failed (%s)", type(error).__name__)
            else:
                log.debug("purged %d expired authorization records", removed)

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
