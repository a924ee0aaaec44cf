"""SMART App Launch over HTTP: standalone and EHR launch, PKCE, consent, refresh, and every refusal the
specification asks for. The app side is authlib's OAuth 2.0 client; the browser side is `flow.Browser`."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError as OAuth2Error
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import KeySet

from fhirlead.auth.codes import CODE
from fhirlead.auth.tokens import digest
from tests.auth.flow import (
    AUTHORIZE,
    FHIR,
    REDIRECT,
    ROOT,
    TOKEN,
    Browser,
    add_app,
    add_user,
    authorize_url,
    oauth_client,
    radio_values,
    redirect_params,
    seed,
)
from tests.tokens import bearer

STANDALONE = "launch/patient openid fhirUser offline_access patient/*.rs"


@pytest.fixture
async def world(app: FastAPI) -> FastAPI:
    await seed(app, [
        {"resourceType": "Practitioner", "id": "dr"},
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "One", "given": ["Pat"]}],
         "generalPractitioner": [{"reference": "Practitioner/dr"}]},
        {"resourceType": "Patient", "id": "p2", "name": [{"family": "Two"}]},
        {"resourceType": "Encounter", "id": "e1", "status": "in-progress", "class": {"code": "AMB"},
         "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "a1c"},
         "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "a1c"},
         "subject": {"reference": "Patient/p2"}},
    ])
    await add_user(app, "dr", "Practitioner/dr")
    await add_app(app, "app", f"launch {STANDALONE} online_access patient/*.cruds user/*.rs")
    return app


async def standalone_code(app: FastAPI, oauth: Any, scope: str = STANDALONE, untick: tuple[str, ...] = ()
                          ) -> tuple[str, str]:
    url, state, verifier = await authorize_url(oauth, scope=scope)
    async with Browser(app) as browser:
        assert (await browser.open(url)).status_code == 200
        picker = await browser.sign_in("dr")
        assert picker.status_code == 200 and radio_values(picker.text, "patient") == ["p1"]
        consent = await browser.pick("p1")
        assert set(radio_values(consent.text, "scope")) == set(scope.split())
        params = redirect_params(await browser.decide("allow", untick))
    assert params["state"] == state
    return params["code"], verifier


async def test_standalone_launch_with_patient_picker(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth:
        code, verifier = await standalone_code(world, oauth)
        token = await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)
    assert token["patient"] == "p1" and token["token_type"] == "Bearer" and token["expires_in"] > 0
    assert set(token["scope"].split()) == set(STANDALONE.split())
    assert "refresh_token" in token
    jwks = (await httpx.AsyncClient(transport=httpx.ASGITransport(app=world)).get(f"{ROOT}/auth/jwks")).json()
    id_token = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert id_token.claims["fhirUser"] == f"{FHIR}/Practitioner/dr" and id_token.claims["aud"] == "app"
    assert token["fhirUser"] == f"{FHIR}/Practitioner/dr"
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=FHIR, headers=headers) as fhir:
        assert (await fhir.get("Patient/p1")).status_code == 200
        assert (await fhir.get("Patient/p2")).status_code == 404
        found = (await fhir.get("Observation")).json()
        assert [e["resource"]["id"] for e in found["entry"]] == ["o1"]


async def test_ehr_launch(world: FastAPI) -> None:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=ROOT)
    created = await http.post("/auth/launch", headers=await bearer(world, scope="system/Patient.rs"),
                              json={"client_id": "app", "patient": "p1", "encounter": "e1", "user": "dr",
                                    "smart_style_url": "https://ehr.example/style.json"})
    assert created.status_code == 201, created.text
    launch = created.json()["launch"]
    scope = "launch openid fhirUser patient/*.rs"
    async with oauth_client(world, "app", scope) as oauth:
        url, state, verifier = await authorize_url(oauth, scope=scope, launch=launch)
        async with Browser(world) as browser:
            await browser.open(url)
            consent = await browser.sign_in("dr")
            assert 'name=scope' in consent.text and "name=patient" not in consent.text  # no picker: the EHR chose
            params = redirect_params(await browser.decide())
        assert params["state"] == state
        token = await oauth.fetch_token(TOKEN, code=params["code"], code_verifier=verifier)
        assert token["patient"] == "p1" and token["encounter"] == "e1"
        assert token["need_patient_banner"] is True and token["smart_style_url"] == "https://ehr.example/style.json"
        again, _state, _verifier = await authorize_url(oauth, scope=scope, launch=launch)
        async with Browser(world) as browser:
            assert redirect_params(await browser.open(again))["error"] == "invalid_request"  # a launch is used once
    refused = await http.post("/auth/launch", headers=await bearer(world, scope="system/Observation.rs"),
                              json={"client_id": "app", "patient": "p1"})
    assert refused.status_code == 403


async def test_authorization_request_refusals(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth, Browser(world) as browser:
        url, _state, _verifier = await authorize_url(oauth, scope=STANDALONE)
        wrong_redirect = url.replace("app.example", "evil.example")
        shown = await browser.open(wrong_redirect)
        assert shown.status_code == 400 and "location" not in shown.headers  # never redirected to an unknown URI
        plain = await browser.open(url.replace("code_challenge_method=S256", "code_challenge_method=plain"))
        assert redirect_params(plain)["error"] == "invalid_request"
        missing = await browser.open(AUTHORIZE + "?" + "&".join(
            p for p in url.split("?", 1)[1].split("&") if not p.startswith("code_challenge")))
        assert redirect_params(missing)["error"] == "invalid_request"
        wrong_aud = await browser.open(url.replace("aud=http%3A%2F%2Ftestserver%2Ffhir", "aud=https%3A%2F%2Fx.example"))
        assert redirect_params(wrong_aud)["error"] == "invalid_request"
        unregistered = await browser.open((await authorize_url(oauth, scope="system/*.rs"))[0])
        assert redirect_params(unregistered)["error"] == "invalid_scope"
        await browser.open(url)
        await browser.sign_in("dr")
        await browser.pick("p1")
        denied = redirect_params(await browser.decide("deny"))
        assert denied["error"] == "access_denied" and denied["state"] == _state


async def test_code_is_single_use_and_reuse_revokes(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth:
        code, verifier = await standalone_code(world, oauth)
        token = await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)
        with pytest.raises(OAuth2Error, match="invalid_grant"):
            await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)
    fhir = httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=FHIR)
    answer = await fhir.get("Patient/p1", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert answer.status_code == 401  # the tokens issued from a reused code are revoked
    async with oauth_client(world, "app", STANDALONE) as oauth:
        with pytest.raises(OAuth2Error, match="invalid_grant"):
            await oauth.refresh_token(TOKEN, refresh_token=token["refresh_token"])


async def test_wrong_verifier_and_expired_code(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth:
        code, _verifier = await standalone_code(world, oauth)
        with pytest.raises(OAuth2Error, match="invalid_grant"):
            await oauth.fetch_token(TOKEN, code=code, code_verifier="x" * 50)
        code, verifier = await standalone_code(world, oauth)
        records = world.state.server.auth.records
        record = await records.get(CODE, digest(code))
        await records.put(CODE, record.key, record.doc, expires=time.time() - 1)  # 60 s have passed
        with pytest.raises(OAuth2Error, match="invalid_grant"):
            await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)


async def test_refresh_rotates_narrows_and_detects_reuse(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth:
        code, verifier = await standalone_code(world, oauth)
        first = await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)
        second = await oauth.refresh_token(TOKEN, refresh_token=first["refresh_token"], scope="patient/Patient.rs")
        assert second["scope"] == "patient/Patient.rs" and second["patient"] == "p1"
        assert second["refresh_token"] != first["refresh_token"]
        with pytest.raises(OAuth2Error, match="invalid_scope"):
            await oauth.refresh_token(TOKEN, refresh_token=second["refresh_token"], scope="user/*.rs")
    async with oauth_client(world, "other", STANDALONE) as thief:
        await add_app(world, "other", STANDALONE)
        with pytest.raises(OAuth2Error, match="invalid_grant"):
            await thief.refresh_token(TOKEN, refresh_token=second["refresh_token"])
    async with oauth_client(world, "app", STANDALONE) as oauth:
        third = await oauth.refresh_token(TOKEN, refresh_token=second["refresh_token"], scope="patient/Patient.rs")
        with pytest.raises(OAuth2Error, match="invalid_grant"):  # reuse of a rotated token
            await oauth.refresh_token(TOKEN, refresh_token=first["refresh_token"])
        with pytest.raises(OAuth2Error, match="invalid_grant"):  # ... revoked the whole family
            await oauth.refresh_token(TOKEN, refresh_token=third["refresh_token"])
    fhir = httpx.AsyncClient(transport=httpx.ASGITransport(app=world), base_url=FHIR)
    answer = await fhir.get("Patient/p1", headers={"Authorization": f"Bearer {third['access_token']}"})
    assert answer.status_code == 401


async def test_unticked_scope_is_not_granted_and_confidential_client(world: FastAPI) -> None:
    await add_app(world, "backend-app", STANDALONE, secret="a-long-client-secret")
    async with oauth_client(world, "backend-app", STANDALONE, secret="a-long-client-secret") as oauth:
        code, verifier = await standalone_code(world, oauth, untick=("offline_access",))
        token = await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)
    assert "offline_access" not in token["scope"].split() and "refresh_token" not in token
    async with oauth_client(world, "backend-app", STANDALONE, secret="wrong-secret-wrong") as oauth:
        code, verifier = await standalone_code(world, oauth)
        with pytest.raises(OAuth2Error, match="invalid_client"):
            await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)


async def test_sign_in_is_throttled_and_forms_need_their_csrf_cookie(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth, Browser(world) as browser:
        url, _state, _verifier = await authorize_url(oauth, scope=STANDALONE)
        await browser.open(url)
        for _ in range(5):
            assert (await browser.sign_in("dr", "wrong-password")).status_code == 401
        assert (await browser.sign_in("dr")).status_code == 429
        fresh = Browser(world)
        fresh.fields = browser.fields  # the form's fields, but not the browser's cookie
        assert (await fresh.sign_in("dr")).status_code == 403
        await fresh.__aexit__()


async def test_redirect_uri_must_match_at_the_token_endpoint(world: FastAPI) -> None:
    async with oauth_client(world, "app", STANDALONE) as oauth:
        code, verifier = await standalone_code(world, oauth)
        with pytest.raises(OAuth2Error, match="invalid_grant"):
            await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier, redirect_uri=REDIRECT + "x")


async def test_online_access_refresh_tokens_expire_sooner(world: FastAPI) -> None:
    scope = "launch/patient openid fhirUser online_access patient/*.rs"
    records = world.state.server.auth.records
    async with oauth_client(world, "app", scope) as oauth:
        code, verifier = await standalone_code(world, oauth, scope)
        token = await oauth.fetch_token(TOKEN, code=code, code_verifier=verifier)
    record = await records.get("refresh", digest(token["refresh_token"]))
    assert record is not None and record.expires is not None
    assert record.expires - time.time() <= 30 * 60 + 5  # online: half an hour from each use, not 30 days
