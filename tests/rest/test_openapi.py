"""GET /openapi.json: a valid OpenAPI 3 document of the FHIR API, generated from the CapabilityStatement
(so OpenAPI tools and fuzzers can use it), and a docs page whose assets this server serves (no CDN)."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from openapi_spec_validator import validate

ROOT = "http://testserver"


async def test_the_document_describes_the_fhir_api(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ROOT) as http:
        answer = await http.get("/openapi.json")  # public, like /metadata
        assert answer.status_code == 200
        document = answer.json()
        validate(document)
        assert document["servers"] == [{"url": f"{ROOT}/fhir"}]
        patient = document["paths"]["/Patient"]["get"]
        names = {p["name"] for p in patient["parameters"]}
        assert {"name", "birthdate", "identifier", "_count", "_include"} <= names
        assert set(document["paths"]["/Observation/{id}"]) >= {"get", "put", "patch", "delete"}
        assert "/Observation/{id}/_history/{vid}" in document["paths"]
        flows = document["components"]["securitySchemes"]["smart"]["flows"]
        assert flows["clientCredentials"]["tokenUrl"] == f"{ROOT}/auth/token"
        page = await http.get("/docs")
        assert page.status_code == 200 and "/openapi.json" in page.text
        assert "cdn" not in page.text.lower() and "https://" not in page.text.split("<body>")[-1]
        assert (await http.get("/docs/assets/swagger-ui-bundle.js")).status_code == 200
