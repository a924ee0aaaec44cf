"""The audit trail's writer process (the default of `fhirlead serve`): events recorded in the server are
built and stored by a child process on the same store, and the trail falls back to writing in process
when the child is gone."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from fhirlead.api.app import create_app
from fhirlead.audit.writer import ProcessWriter
from fhirlead.settings import Settings
from tests.conftest import BASE
from tests.tokens import bearer


@pytest.fixture
def process_settings(tmp_path: Path) -> Settings:
    return replace(Settings(store=f"sqlite:///{tmp_path / 'audit.db'}"), audit_writer="process")


async def test_events_are_written_by_the_writer_process_and_after_it_dies(process_settings: Settings) -> None:
    app = create_app(process_settings)
    async with app.router.lifespan_context(app):
        trail = app.state.server.audit
        assert isinstance(trail._writer, ProcessWriter) and trail._writer.alive
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                     headers=await bearer(app)) as client:
            created = await client.post("Patient", json={"resourceType": "Patient"},
                                        headers={"Content-Type": "application/fhir+json"})
            for _ in range(20):
                await client.get(created.headers["location"].split("/_history")[0])
            await trail.flush()
            reads = (await client.get("AuditEvent?subtype=read&_total=accurate")).json()
            assert reads["total"] == 20 and trail.lost == 0
            trail._writer._process.kill()  # the child dies: the trail goes on in process
            trail._writer._process.join()
            for _ in range(5):
                await client.get(created.headers["location"].split("/_history")[0])
            await trail.flush()
            reads = (await client.get("AuditEvent?subtype=read&_total=accurate")).json()
            assert reads["total"] == 25 and trail.lost == 0
