"""FHIR interactions without `Origin` skip Starlette's middleware and router (fhirlead/api/direct.py):
they must be answered exactly as the full stack answers them, and only they may skip it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.routing import Router

from fhirlead.api.direct import FhirApp
from tests.tokens import ASSERTION_TYPE, SYSTEM_CLIENT, SYSTEM_SCOPE, assertion, bearer, register_system_client

PATIENT = b'{"resourceType":"Patient","name":[{"family":"Direct"}],"gender":"female"}'


async def _bearer(app: FastAPI, root_path: str) -> dict[str, str]:
    """A system token issued by the app as it is mounted (under `root_path`: its audience says so)."""
    if not root_path:
        return await bearer(app)
    root = f"http://testserver{root_path}"
    await register_system_client(app, SYSTEM_CLIENT, SYSTEM_SCOPE)
    async with _client(app, {}, root_path) as http:
        answer = await http.post("/auth/token", data={
            "grant_type": "client_credentials", "scope": SYSTEM_SCOPE, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(SYSTEM_CLIENT, f"{root}/auth/token")})
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _client(app: FastAPI, headers: dict[str, str], root_path: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, root_path=root_path),
                             base_url=f"http://testserver{root_path}", headers=headers)


async def _create(http: httpx.AsyncClient) -> httpx.Response:
    created = await http.post("/fhir/Patient", content=PATIENT,
                              headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
    assert created.status_code == 201
    return created


async def _answers(http: httpx.AsyncClient, path: str) -> list[tuple[Any, ...]]:
    answers = []
    for method, url in [("GET", path), ("HEAD", path), ("GET", path + "/_history/1"), ("GET", "/fhir/Unknown/1"),
                        ("DELETE", "/fhir/metadata"), ("GET", "/fhir?_type=Patient"),
                        ("GET", "/fhir/?_type=Patient"),
                        ("GET", "/fhir/metadata?_elements=fhirVersion"),
                        ("GET", "/fhir/.well-known/smart-configuration"), ("GET", "/fhir/$export-status/none"),
                        ("PROPFIND", path)]:
        answer = await http.request(method, url)
        answers.append((method, url, answer.status_code, sorted(answer.headers.multi_items()), answer.content))
    return answers


@pytest.mark.parametrize("root_path", ["", "/proxy"])
async def test_the_shortcut_answers_as_the_full_stack(app: FastAPI, root_path: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    headers = {"Accept": "application/fhir+json", **await _bearer(app, root_path)}
    routed: list[str] = []
    original = Router.__call__

    async def counted(self: Router, scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(Router, "__call__", counted)
    async with _client(app, headers, root_path) as http:
        created = await _create(http)
        path = "/fhir/Patient/" + created.headers["location"].split("/Patient/")[1].split("/")[0]
        routed.clear()
        direct = await _answers(http, path)
        # only what must take the full stack reached the router: the other routes under /fhir, a method
        # the FHIR routes do not take
        assert routed == [f"{root_path}/fhir/.well-known/smart-configuration", f"{root_path}/fhir/$export-status/none",
                          f"{root_path}{path}"]
        monkeypatch.setattr(FhirApp, "_path_params", lambda self, scope: None)
        assert await _answers(http, path) == direct
        again = await _create(http)
    assert created.headers["vary"] == again.headers["vary"] == "Origin"
    assert created.headers["location"].startswith(f"http://testserver{root_path}/fhir/Patient/")
    assert sorted(created.headers) == sorted(again.headers)


@pytest.mark.parametrize("root_path", ["", "/proxy"])  # behind a proxy's root path as well
async def test_requests_with_an_origin_take_the_cors_middleware(app: FastAPI, root_path: str) -> None:
    async with _client(app, {}, root_path) as http:
        answer = await http.get("/fhir/metadata", headers={"Origin": "https://app.example"})
        plain = await http.get("/fhir/metadata")
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in plain.headers and plain.headers["vary"] == "Origin"
    assert answer.content == plain.content
