"""SMART Backend Services (client_credentials + private_key_jwt), discovery, bearer enforcement,
introspection and revocation, over HTTP against the real app."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey, RSAKey

from fhirlead.auth.registry import Client
from tests.tokens import ASSERTION_TYPE, assertion

ROOT = "http://testserver"
TOKEN_URL = f"{ROOT}/auth/token"
RSA = RSAKey.generate_key(2048, private=True, auto_kid=True)
EC = ECKey.generate_key("P-384", private=True, auto_kid=True)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT) as c:
        yield c


async def register(app: FastAPI, client_id: str, scopes: str, *keys: object) -> None:
    jwks = {"keys": [key.as_dict(private=False) for key in keys]}  # type: ignore[attr-defined]
    await app.state.server.auth.registry.save_client(Client(client_id, client_id, scopes.split(), jwks=jwks))


async def token_request(http: httpx.AsyncClient, signed: str, scope: str = "system/Observation.rs") -> httpx.Response:
    return await http.post("/auth/token", data={"grant_type": "client_credentials", "scope": scope,
                                                "client_assertion_type": ASSERTION_TYPE,
                                                "client_assertion": signed})


@pytest.mark.parametrize(("key", "alg"), [(RSA, "RS384"), (EC, "ES384")])
async def test_backend_client_gets_a_token_and_reads_with_it(app: FastAPI, http: httpx.AsyncClient, key: object,
                                                             alg: str) -> None:
    await register(app, "ehr", "system/Observation.rs system/Patient.rs", key)
    answer = await token_request(http, assertion("ehr", TOKEN_URL, key, alg),
                                 "system/Observation.rs system/Condition.rs")
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["scope"] == "system/Observation.rs"  # requested ∩ registered
    assert "refresh_token" not in body
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    assert (await http.get("/fhir/Observation", headers=headers)).status_code == 200
    refused = await http.get("/fhir/Patient", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["resourceType"] == "OperationOutcome"
    write = await http.post("/fhir/Observation", headers={**headers, "Content-Type": "application/fhir+json"},
                            content=orjson.dumps({"resourceType": "Observation", "status": "final",
                                                  "code": {"text": "x"}}))
    assert write.status_code == 403


def _forge(alg: str, claims: dict, kid: str | None) -> str:
    header = {"alg": alg, "typ": "JWT", **({"kid": kid} if kid else {})}
    encode = lambda part: base64.urlsafe_b64encode(orjson.dumps(part)).rstrip(b"=").decode()  # noqa: E731
    return f"{encode(header)}.{encode(claims)}."


def _claims(**overrides: object) -> dict:
    now = int(time.time())
    return {"iss": "ehr", "sub": "ehr", "aud": TOKEN_URL, "exp": now + 60, "jti": uuid.uuid4().hex, **overrides}


async def test_refusals(app: FastAPI, http: httpx.AsyncClient) -> None:
    await register(app, "ehr", "system/Observation.rs", EC)
    replayed = assertion("ehr", TOKEN_URL, EC, "ES384")
    assert (await token_request(http, replayed)).status_code == 200
    cases = {
        "replayed jti": replayed,
        "exp too far ahead": assertion("ehr", TOKEN_URL, EC, "ES384", exp=int(time.time()) + 600),
        "expired": assertion("ehr", TOKEN_URL, EC, "ES384", exp=int(time.time()) - 10),
        "wrong aud": assertion("ehr", "http://testserver/fhir", EC, "ES384"),
        "alg none": _forge("none", _claims(), EC.kid),
        "HS256": jwt.encode({"alg": "HS256", "kid": EC.kid}, _claims(), OctKey.import_key(b"k" * 32)),
        "unknown kid": assertion("ehr", TOKEN_URL, ECKey.generate_key("P-384", auto_kid=True), "ES384"),
        "not the registered key": jwt.encode({"alg": "ES384", "kid": EC.kid}, _claims(),
                                             ECKey.generate_key("P-384"), algorithms=["ES384"]),
        "unknown client": assertion("nobody", TOKEN_URL, EC, "ES384"),
    }
    for case, signed in cases.items():
        answer = await token_request(http, signed)
        assert answer.status_code == 401, case
        assert answer.json()["error"] == "invalid_client", case
    unregistered = await token_request(http, assertion("ehr", TOKEN_URL, EC, "ES384"), "system/Patient.rs")
    assert unregistered.status_code == 400 and unregistered.json()["error"] == "invalid_scope"
    patient_scope = await token_request(http, assertion("ehr", TOKEN_URL, EC, "ES384"), "patient/Observation.rs")
    assert patient_scope.json()["error"] == "invalid_scope"


async def test_a_jku_header_is_never_followed(app: FastAPI, http: httpx.AsyncClient) -> None:
    await register(app, "ehr", "system/Observation.rs", EC)
    stranger = ECKey.generate_key("P-384", private=True, auto_kid=True)
    signed = jwt.encode({"alg": "ES384", "kid": stranger.kid, "jku": "https://attacker.example/jwks"}, _claims(),
                        stranger, algorithms=["ES384"])
    answer = await token_request(http, signed)
    assert answer.status_code == 401


async def test_requests_without_a_valid_token_get_401(app: FastAPI, http: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic Zm9vOmJhcg=="}):
        answer = await http.get("/fhir/Patient", headers=headers)
        assert answer.status_code == 401
        challenge = answer.headers["www-authenticate"]
        assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge
        assert answer.json()["resourceType"] == "OperationOutcome"
    metadata = await http.get("/fhir/metadata")
    assert metadata.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == TOKEN_URL
    assert (await http.get("/healthz")).status_code == 200


async def test_an_expired_token_or_one_for_another_server_is_refused(app: FastAPI, http: httpx.AsyncClient) -> None:
    keys = app.state.server.auth.keys
    now = int(time.time())
    base = {"iss": "x", "sub": "ehr", "client_id": "ehr", "scope": "system/*.rs", "jti": uuid.uuid4().hex}
    expired = await keys.sign({**base, "aud": f"{ROOT}/fhir", "iat": now - 2000, "exp": now - 1000})
    elsewhere = await keys.sign({**base, "aud": "https://other.example/fhir", "iat": now, "exp": now + 100})
    for token in (expired, elsewhere):
        answer = await http.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 401


async def test_discovery_documents(http: httpx.AsyncClient) -> None:
    answer = await http.get("/fhir/.well-known/smart-configuration", headers={"Accept": "text/html"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.headers["access-control-allow-origin"] == "*"
    config = answer.json()
    for field in ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "grant_types_supported",
                  "token_endpoint_auth_methods_supported", "scopes_supported", "response_types_supported",
                  "capabilities", "code_challenge_methods_supported", "introspection_endpoint",
                  "revocation_endpoint", "token_endpoint_auth_signing_alg_values_supported"):
        assert field in config, field
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) >= {"RS384", "ES384"}
    assert all(config[f].startswith("http://testserver/") for f in ("token_endpoint", "jwks_uri"))
    openid = (await http.get("/fhir/.well-known/openid-configuration")).json()
    assert openid["issuer"] == config["issuer"] and "RS256" in openid["id_token_signing_alg_values_supported"]
    jwks = (await http.get("/auth/jwks")).json()
    assert {key["alg"] for key in jwks["keys"]} >= {"ES256", "RS256"}
    assert all("d" not in key for key in jwks["keys"])


async def test_introspection_and_revocation(app: FastAPI, http: httpx.AsyncClient) -> None:
    await register(app, "ehr", "system/Observation.rs", EC)
    token = (await token_request(http, assertion("ehr", TOKEN_URL, EC, "ES384"))).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    async def introspect(value: str) -> dict:
        answer = await http.post("/auth/introspect", data={
            "token": value, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion("ehr", f"{ROOT}/auth/introspect", EC, "ES384")})
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert (await http.get("/fhir/Observation", headers=headers)).status_code == 200  # verified, then remembered
    active = await introspect(token)
    assert active["active"] is True and active["scope"] == "system/Observation.rs" and active["client_id"] == "ehr"
    assert (await introspect("garbage"))["active"] is False
    unauthenticated = await http.post("/auth/introspect", data={"token": token})
    assert unauthenticated.status_code == 401
    revoked = await http.post("/auth/revoke", data={
        "token": token, "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion("ehr", f"{ROOT}/auth/revoke", EC, "ES384")})
    assert revoked.status_code == 200
    assert (await http.get("/fhir/Observation", headers=headers)).status_code == 401
    assert (await introspect(token))["active"] is False
