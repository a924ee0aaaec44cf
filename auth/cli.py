"""`fhirlead clients add`, `fhirlead users add`: the registry, from the command line.

They write to the store's records, so they work while a server runs on the same store and take effect
at once (the server reads clients and users from the store on every authorization).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from fhirlead.auth.client_auth import jwks_url_allowed
from fhirlead.auth.launch import LaunchContext, create_launch, launch_url
from fhirlead.auth.registry import Client, Registry, User, check_fhir_user, hash_secret
from fhirlead.auth.scopes import is_known, split
from fhirlead.settings import Settings
from fhirlead.storage.factory import open_store

_ORGANIZATION = re.compile(r"^Organization/[A-Za-z0-9\-.]{1,64}$")


def register(subparsers: argparse._SubParsersAction) -> None:
    default_store = Settings().store
    clients = subparsers.add_parser("clients", help="register SMART clients").add_subparsers(dest="action",
                                                                                            required=True)
    add = clients.add_parser("add", help="register (or replace) a client")
    add.add_argument("--store", default=default_store)
    add.add_argument("--client-id", required=True)
    add.add_argument("--name")
    kind = add.add_mutually_exclusive_group(required=True)
    kind.add_argument("--public", action="store_true", help="a public client (PKCE, no secret)")
    kind.add_argument("--secret-stdin", action="store_true", help="read the client secret from standard input")
    kind.add_argument("--jwks-file", type=Path, help="the client's public keys (JWKS) for private_key_jwt")
    kind.add_argument("--jwks-url", help="where the client publishes its JWKS (https)")
    add.add_argument("--redirect-uri", action="append", default=[])
    add.add_argument("--launch-url")
    add.add_argument("--scope", required=True, help="the scopes the client may be granted (space-separated)")
    add.add_argument("--source", help="the URI of the system it writes from: meta.source of what it sends without "
                                      "one (default urn:fhirlead:client:CLIENT_ID; docs/sources.md)")
    add.add_argument("--organization", help="Organization/ID its writes' Provenance names as agent "
                                            "(default: the client itself)")
    add.add_argument("--own-provenance", action="store_true",
                     help="it records its own Provenance: the server adds none to its writes")
    add.set_defaults(run=add_client)

    users = subparsers.add_parser("users", help="user accounts for sign-in").add_subparsers(dest="action",
                                                                                           required=True)
    add_user_parser = users.add_parser("add", help="create (or replace) a user")
    add_user_parser.add_argument("--store", default=default_store)
    add_user_parser.add_argument("--username", required=True)
    add_user_parser.add_argument("--password-stdin", action="store_true", required=True)
    add_user_parser.add_argument("--fhir-user", required=True, help="Practitioner/123, Patient/x, …")
    add_user_parser.add_argument("--admin", action="store_true")
    add_user_parser.set_defaults(run=add_user)

    launch = subparsers.add_parser("launch", help="create an EHR launch context; prints the launch id (and URL)")
    launch.add_argument("--store", default=default_store)
    launch.add_argument("--client-id", required=True)
    launch.add_argument("--patient", required=True, help="Patient id")
    launch.add_argument("--encounter", help="Encounter id")
    launch.add_argument("--user", help="the username who must sign in")
    launch.add_argument("--base-url", help="the FHIR base URL apps are given as iss (default: FHIRLEAD_BASE_URL, "
                                           "or http://HOST:PORT/fhir from the server settings)")
    launch.set_defaults(run=create_launch_context)


def _fail(text: str) -> int:
    print(f"fhirlead: {text}", file=sys.stderr)
    return 2


async def with_registry(url: str, work: object) -> None:
    store = open_store(url)
    await store.open()
    try:
        await work(Registry(store.records))  # type: ignore[operator]
    finally:
        await store.close()


def _read_secret() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def add_client(args: argparse.Namespace) -> int:
    scopes = split(args.scope)
    unknown = [token for token in scopes if not is_known(token)]
    if unknown:
        return _fail(f"unknown scope(s): {' '.join(unknown)}")
    if args.source is not None and (not args.source or any(char.isspace() for char in args.source)):
        return _fail("--source must be a URI (no spaces)")
    if args.organization is not None and not _ORGANIZATION.match(args.organization):
        return _fail(f"--organization must be Organization/ID, not {args.organization!r}")
    client = Client(args.client_id, args.name or args.client_id, scopes, list(args.redirect_uri), args.launch_url,
                    source=args.source, organization=args.organization, own_provenance=args.own_provenance)
    if args.secret_stdin:
        secret = _read_secret()
        if len(secret) < 16:
            return _fail("a client secret must be at least 16 characters")
        client.secret_hash = hash_secret(secret)
    elif args.jwks_file:
        try:
            client.jwks = orjson.loads(args.jwks_file.read_bytes())
            KeySet.import_key_set(client.jwks)
        except (OSError, ValueError, JoseError) as error:
            return _fail(f"cannot read a JWKS from {args.jwks_file}: {error}")
        if any("d" in key for key in client.jwks.get("keys", [])):
            return _fail("the JWKS holds a private key: register the public keys only")
    elif args.jwks_url:
        if not jwks_url_allowed(args.jwks_url):
            return _fail("--jwks-url must be https (http only on a loopback address)")
        client.jwks_url = args.jwks_url
    if client.public and not client.redirect_uris:
        return _fail("a public client signs users in: it needs at least one --redirect-uri")
    asyncio.run(with_registry(args.store, lambda registry: registry.save_client(client)))
    print(f"client {client.client_id} registered")
    return 0


def add_user(args: argparse.Namespace) -> int:
    try:
        fhir_user = check_fhir_user(args.fhir_user)
    except ValueError as error:
        return _fail(str(error))
    password = _read_secret()
    if len(password) < 8:
        return _fail("a password must be at least 8 characters")
    user = User(args.username, hash_secret(password), fhir_user, args.admin)
    asyncio.run(with_registry(args.store, lambda registry: registry.save_user(user)))
    print(f"user {user.username} saved")
    return 0


def create_launch_context(args: argparse.Namespace) -> int:
    settings = Settings()
    base = (args.base_url or settings.base_url or f"http://{settings.host}:{settings.port}/fhir").rstrip("/")

    async def work() -> tuple[str, str | None] | str:
        store = open_store(args.store)
        await store.open()
        try:
            client = await Registry(store.records).client(args.client_id)
            if client is None:
                return f"unknown client {args.client_id!r}"
            patient = await store.read("Patient", args.patient)
            if patient is None or patient.deleted:
                return f"Patient/{args.patient} does not exist"
            if args.encounter and await store.read("Encounter", args.encounter) is None:
                return f"Encounter/{args.encounter} does not exist"
            context = LaunchContext(args.patient, args.encounter, args.user, client_id=client.client_id)
            launch_id = await create_launch(store.records, context)
            return launch_id, launch_url(client.launch_url, base, launch_id) if client.launch_url else None
        finally:
            await store.close()

    outcome = asyncio.run(work())
    if isinstance(outcome, str):
        return _fail(outcome)
    launch_id, url = outcome
    print(launch_id)
    if url:
        print(url)
    return 0
