"""A browser's part of the SMART authorization-code flow, driven over HTTP against the app: follow the
authorize URL, fill in the sign-in form, pick a patient, tick scopes, press Allow or Deny. The app side
(PKCE, token exchange, refresh) is done by authlib, as a real SMART app's library would."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import orjson
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from fastapi import FastAPI

from fhirlead.auth.registry import Client, User, hash_secret

ROOT = "http://testserver"
FHIR = f"{ROOT}/fhir"
REDIRECT = "https://app.example/callback"
AUTHORIZE = f"{ROOT}/auth/authorize"
TOKEN = f"{ROOT}/auth/token"
_HASHES: dict[str, str] = {}


def hidden(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in re.findall(r"name=(\w+) value='([^']*)'", html)
            if name in ("request_id", "csrf")}


def radio_values(html: str, name: str) -> list[str]:
    return [unescape(v) for v in re.findall(rf"type=(?:radio|checkbox) name={name} value='([^']*)'", html)]


async def add_user(app: FastAPI, username: str, fhir_user: str, admin: bool = False) -> None:
    if username not in _HASHES:
        _HASHES[username] = hash_secret(f"{username}-password")
    await app.state.server.auth.registry.save_user(User(username, _HASHES[username], fhir_user, admin))


async def add_app(app: FastAPI, client_id: str, scopes: str, secret: str | None = None,
                  launch_url: str | None = None) -> None:
    client = Client(client_id, f"App {client_id}", scopes.split(), [REDIRECT], launch_url,
                    secret_hash=hash_secret(secret) if secret else None)
    await app.state.server.auth.registry.save_client(client)


@asynccontextmanager
async def oauth_client(app: FastAPI, client_id: str, scope: str, secret: str | None = None
                       ) -> AsyncIterator[AsyncOAuth2Client]:
    async with AsyncOAuth2Client(
        client_id, secret, token_endpoint_auth_method="client_secret_basic" if secret else "none",
        scope=scope, redirect_uri=REDIRECT, code_challenge_method="S256",
        transport=httpx.ASGITransport(app=app),
    ) as oauth:
        yield oauth


class Browser:
    """One user's browser: cookies kept, redirects to the app not followed (their URL is the result)."""

    def __init__(self, app: FastAPI) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT)
        self.page = ""
        self.fields: dict[str, str] = {}

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.http.aclose()

    async def open(self, url: str) -> httpx.Response:
        answer = await self.http.get(url)
        self._read(answer)
        return answer

    def _read(self, answer: httpx.Response) -> None:
        if answer.headers.get("content-type", "").startswith("text/html"):
            self.page = answer.text
            self.fields = hidden(answer.text) or self.fields

    async def submit(self, action: str, data: list[tuple[str, str]]) -> httpx.Response:
        body = urlencode([*self.fields.items(), *data])
        answer = await self.http.post(f"/auth/{action}", content=body,
                                      headers={"Content-Type": "application/x-www-form-urlencoded"})
        self._read(answer)
        return answer

    async def sign_in(self, username: str, password: str | None = None) -> httpx.Response:
        return await self.submit("login", [("username", username), ("password", password or f"{username}-password")])

    async def pick(self, patient: str) -> httpx.Response:
        return await self.submit("patient", [("patient", patient)])

    async def decide(self, decision: str = "allow", untick: tuple[str, ...] = ()) -> httpx.Response:
        scopes = [("scope", s) for s in radio_values(self.page, "scope") if s not in untick]
        return await self.submit("consent", [*scopes, ("decision", decision)])


def redirect_params(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code in (302, 303), (answer.status_code, answer.text[:500])
    location = answer.headers["location"]
    assert location.startswith(REDIRECT), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


async def authorize_url(oauth: AsyncOAuth2Client, **extra: str) -> tuple[str, str, str]:
    """(url, state, code_verifier) for an authorization request with PKCE S256 and aud."""
    verifier = generate_token(48)
    url, state = oauth.create_authorization_url(AUTHORIZE, code_verifier=verifier, aud=FHIR, **extra)
    return url, state, verifier


async def seed(app: FastAPI, resources: list[dict[str, Any]]) -> None:
    from tests.tokens import bearer

    headers = {**await bearer(app), "Content-Type": "application/fhir+json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR) as http:
        for resource in resources:
            answer = await http.put(f"{resource['resourceType']}/{resource['id']}", content=orjson.dumps(resource),
                                    headers=headers)
            assert answer.status_code in (200, 201), answer.text
