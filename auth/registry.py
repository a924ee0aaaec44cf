"""Registered clients and users, kept in the store's records so every server process (and the CLI,
while a server runs) sees the same registry at once.

Client secrets and passwords are stored only as argon2id hashes (argon2-cffi's defaults, RFC 9106).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from fhirlead.storage.records import Records

CLIENT = "client"
USER = "user"
FHIR_USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
_FHIR_USER = re.compile(r"^(Practitioner|PractitionerRole|Patient|RelatedPerson)/[A-Za-z0-9\-.]{1,64}$")

_hasher = PasswordHasher()
# Compared against when a username is unknown, so that a wrong username costs as much as a wrong password.
_DUMMY_HASH = _hasher.hash("fhirlead-no-such-user")


@dataclass
class Client:
    client_id: str
    name: str
    scopes: list[str]
    redirect_uris: list[str] = field(default_factory=list)
    launch_url: str | None = None
    secret_hash: str | None = None  # confidential: client_secret_basic
    jwks: dict[str, Any] | None = None  # confidential: private_key_jwt, keys registered
    jwks_url: str | None = None  # confidential: private_key_jwt, keys fetched from here only
    # Where its writes come from (docs/sources.md): the URI its resources get as meta.source when they
    # carry none (default urn:fhirlead:client:<client_id>), the Organization its Provenance names as
    # agent (`Organization/id`; default: the client itself), and whether it records its own Provenance
    # (then the server adds none).
    source: str | None = None
    organization: str | None = None
    own_provenance: bool = False

    @property
    def public(self) -> bool:
        return self.secret_hash is None and self.jwks is None and self.jwks_url is None

    @property
    def uses_key(self) -> bool:
        return self.jwks is not None or self.jwks_url is not None


@dataclass
class User:
    username: str
    password_hash: str
    fhir_user: str
    admin: bool = False


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


async def verify_secret(hashed: str | None, secret: str) -> bool:
    """Constant-time (argon2) check, off the event loop; an absent hash still costs one verification."""

    def check() -> bool:
        try:
            return _hasher.verify(hashed or _DUMMY_HASH, secret) and hashed is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


class Registry:
    def __init__(self, records: Records) -> None:
        self._records = records

    async def client(self, client_id: str) -> Client | None:
        record = await self._records.get(CLIENT, client_id)
        return None if record is None else Client(**record.doc)

    async def save_client(self, client: Client) -> None:
        await self._records.put(CLIENT, client.client_id, asdict(client))

    async def user(self, username: str) -> User | None:
        record = await self._records.get(USER, username)
        return None if record is None else User(**record.doc)

    async def save_user(self, user: User) -> None:
        await self._records.put(USER, user.username, asdict(user))

    async def users(self) -> list[User]:
        return [User(**record.doc) for record in await self._records.list(USER)]


def check_fhir_user(reference: str) -> str:
    if not _FHIR_USER.match(reference):
        raise ValueError(f"--fhir-user must be one of {', '.join(FHIR_USER_TYPES)} as Type/id, not {reference!r}")
    return reference
