"""CORS: browser apps on other origins can call the FHIR API and the token endpoint; the sign-in pages
are not readable cross-origin."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

ORIGIN = "https://app.example"


async def test_preflight_and_responses_carry_cors_headers(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        preflight = await http.options("/fhir/Patient/x", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "authorization, content-type, if-match"})
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "PUT" in preflight.headers["access-control-allow-methods"]
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert all(h in allowed for h in ("authorization", "content-type", "if-match"))
        refused = await http.get("/fhir/Patient", headers={"Origin": ORIGIN})
        assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"
        assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()
        token = await http.post("/auth/token", headers={"Origin": ORIGIN}, data={"grant_type": "x"})
        assert token.headers["access-control-allow-origin"] == "*"
        metadata = await http.get("/fhir/metadata", headers={"Origin": ORIGIN})
        assert metadata.headers["access-control-allow-origin"] == "*"
        page = await http.get("/auth/authorize", headers={"Origin": ORIGIN})
        assert "access-control-allow-origin" not in page.headers
