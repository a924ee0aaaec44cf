"""Administration from the command line while the server runs, JWKS-URL clients, and key rotation."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest
from fastapi import FastAPI
from joserfc.jwk import ECKey, RSAKey

from fhirlead.auth.keys import KeyRing
from fhirlead.auth.registry import Client
from fhirlead.auth.tokens import Authorization
from fhirlead.cli import main
from fhirlead.settings import Settings
from tests.auth.flow import FHIR, ROOT, seed
from tests.tokens import ASSERTION_TYPE, assertion

TOKEN_URL = f"{ROOT}/auth/token"


async def run_cli(monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: str = "") -> tuple[int, str]:
    out = io.StringIO()

    def call() -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        monkeypatch.setattr("sys.stdout", out)
        return main(argv)

    code = await asyncio.to_thread(call)
    return code, out.getvalue()


async def test_clients_users_and_launch_from_the_cli_take_effect_at_once(
    app: FastAPI, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seed(app, [{"resourceType": "Patient", "id": "p1"}])
    store = ["--store", settings.store]
    code, _ = await run_cli(monkeypatch, ["clients", "add", *store, "--client-id", "cli-backend", "--secret-stdin",
                                          "--scope", "system/Patient.rs"], "a-secret-of-some-length\n")
    assert code == 0
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT) as http:
        answer = await http.post("/auth/token", auth=("cli-backend", "a-secret-of-some-length"),
                                 data={"grant_type": "client_credentials", "scope": "system/Patient.rs"})
        assert answer.status_code == 200, answer.text
        wrong = await http.post("/auth/token", auth=("cli-backend", "not-the-secret"),
                                data={"grant_type": "client_credentials", "scope": "system/Patient.rs"})
        assert wrong.status_code == 401
    code, _ = await run_cli(monkeypatch, ["users", "add", *store, "--username", "nurse", "--password-stdin",
                                          "--fhir-user", "Practitioner/n1"], "a-good-password\n")
    assert code == 0 and (await app.state.server.auth.registry.user("nurse")).fhir_user == "Practitioner/n1"
    code, _ = await run_cli(monkeypatch, ["users", "add", *store, "--username", "x", "--password-stdin",
                                          "--fhir-user", "Organization/1"], "a-good-password\n")
    assert code == 2
    code, _ = await run_cli(monkeypatch, ["clients", "add", *store, "--client-id", "app", "--public",
                                          "--redirect-uri", "https://app.example/cb", "--launch-url",
                                          "https://app.example/launch", "--scope", "launch patient/*.rs"])
    assert code == 0
    code, printed = await run_cli(monkeypatch, ["launch", *store, "--client-id", "app", "--patient", "p1",
                                                "--base-url", FHIR])
    assert code == 0
    launch_id, url = printed.split()
    assert url.startswith("https://app.example/launch?iss=http%3A%2F%2Ftestserver%2Ffhir&launch=")
    assert url.endswith(launch_id)
    code, _ = await run_cli(monkeypatch, ["launch", *store, "--client-id", "app", "--patient", "nobody"])
    assert code == 2
    code, _ = await run_cli(monkeypatch, ["clients", "add", *store, "--client-id", "bad", "--public",
                                          "--redirect-uri", "https://a.example/cb", "--scope", "patient/*.everything"])
    assert code == 2


class JwksServer:
    """A loopback HTTP server publishing one JWKS, counting its requests."""

    def __init__(self, jwks: dict) -> None:
        body = orjson.dumps(jwks)
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def jwks_server() -> Iterator[tuple[JwksServer, RSAKey]]:
    key = RSAKey.generate_key(2048, private=True, auto_kid=True)
    server = JwksServer({"keys": [key.as_dict(private=False)]})
    yield server, key
    server.server.shutdown()


async def test_keys_from_a_registered_jwks_url_and_only_from_there(
    app: FastAPI, jwks_server: tuple[JwksServer, RSAKey]
) -> None:
    server, key = jwks_server
    await app.state.server.auth.registry.save_client(
        Client("remote", "remote", ["system/*.rs"], jwks_url=server.url))
    elsewhere = JwksServer({"keys": [ECKey.generate_key("P-384", auto_kid=True).as_dict(private=False)]})
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT) as http:
            for _ in range(2):
                signed = assertion("remote", TOKEN_URL, key, "RS384")
                answer = await http.post("/auth/token", data={
                    "grant_type": "client_credentials", "scope": "system/*.rs",
                    "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed})
                assert answer.status_code == 200, answer.text
            assert server.hits == 1  # cached
            from joserfc import jwt

            stranger = RSAKey.generate_key(2048, private=True, auto_kid=True)
            claims = {"iss": "remote", "sub": "remote", "aud": TOKEN_URL, "exp": int(time.time()) + 60, "jti": "j"}
            forged = jwt.encode({"alg": "RS384", "kid": stranger.kid, "jku": elsewhere.url}, claims, stranger,
                                algorithms=["RS384"])
            answer = await http.post("/auth/token", data={
                "grant_type": "client_credentials", "scope": "system/*.rs",
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": forged})
            assert answer.status_code == 401
        assert elsewhere.hits == 0
    finally:
        elsewhere.server.shutdown()


async def test_rotated_keys_stay_published_until_their_tokens_expire(app: FastAPI) -> None:
    auth = app.state.server.auth
    old_token = await auth.tokens.access_token(Authorization("c", "system/*.rs", "c"), FHIR, FHIR)
    rotated = KeyRing(auth.records, rotate_after=0, token_lifetime=900)  # every key is already due for rotation
    new_token = await rotated.sign({"iss": FHIR, "aud": FHIR, "sub": "c", "client_id": "c", "scope": "system/*.rs",
                                    "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": "n"})
    kids = {key["kid"] for key in (await rotated.jwks())["keys"]}
    assert len(kids) >= 3  # the first ES256 key, the rotated one, and the RS256 key
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=FHIR) as http:
        for token in (old_token, new_token):
            assert (await http.get("Patient", headers={"Authorization": f"Bearer {token}"})).status_code == 200


async def test_expired_records_are_purged_in_the_background(settings: Settings,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from fhirlead.api.app import create_app

    monkeypatch.setattr("fhirlead.auth.service.PURGE_INTERVAL", 0.05)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        records = app.state.server.auth.records
        await records.put("jti", "old", {}, expires=time.time() - 1)
        await records.put("jti", "live", {}, expires=time.time() + 60)
        await asyncio.sleep(0.3)
        assert await records.purge_expired() == 0  # the housekeeping task got there first
        assert await records.get("jti", "live") is not None
