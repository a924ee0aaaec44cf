"""Request limits: a body that does not arrive in time is a 408, oversized headers a 431; both FHIR
OperationOutcomes, and the connection is not held."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import orjson
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.settings import Settings
from tests.conftest import BASE, FHIR_JSON
from tests.tokens import bearer


async def test_a_slow_body_is_a_408(settings: Settings) -> None:
    app = create_app(replace(settings, body_timeout_seconds=0.3))
    async with app.router.lifespan_context(app):
        token = (await bearer(app))["Authorization"].encode()
        first = [{"type": "http.request", "body": b'{"resourceType":', "more_body": True}]
        sent: list[dict] = []

        async def receive() -> dict:
            if first:
                return first.pop()
            await asyncio.sleep(3600)  # the rest of the declared 100 bytes never comes
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/fhir/Patient", "raw_path": b"/fhir/Patient", "query_string": b"",
                 "root_path": "", "server": ("testserver", 80), "client": ("127.0.0.1", 5000),
                 "headers": [(b"host", b"testserver"), (b"content-type", b"application/fhir+json"),
                             (b"content-length", b"100"), (b"authorization", token)]}
        await asyncio.wait_for(app(scope, receive, send), timeout=5)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 408
    assert orjson.loads(body)["resourceType"] == "OperationOutcome"


async def test_oversized_headers_are_a_431(client: httpx.AsyncClient, app: FastAPI) -> None:
    answer = await client.get("Patient", headers={"X-Padding": "x" * 40_000})
    assert answer.status_code == 431 and answer.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Patient", headers={"X-Padding": "x" * 1000})).status_code == 200
    created = await client.post("Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": FHIR_JSON})
    assert created.status_code == 201 and BASE in created.headers["location"]
