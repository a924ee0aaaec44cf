"""A server killed (SIGKILL, no shutdown) while an export runs: a client polling the same status URL of
the restarted server gets the whole export, every resource once, no torn line (Bulk Data 2.0.0 §"Bulk
Data Status Request"; docs/bulk-export.md "Durability"). Real processes: `fhirlead serve` on SQLite."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests import backends
from tests.clients.live import LiveServer, spawn

pytestmark = pytest.mark.skipif(backends.selected() != "sqlite",
                                reason="runs real server processes on their own SQLite store: once is enough")

OBSERVATIONS = 3000
BATCH = 500


def observations(start: int) -> dict:
    entries = [{"resource": {"resourceType": "Observation", "id": f"k{n}", "status": "final",
                             "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                             "subject": {"reference": "Patient/maria-garcia"},
                             "valueQuantity": {"value": 5 + n % 40 / 10, "unit": "%"}},
                "request": {"method": "PUT", "url": f"Observation/k{n}"}} for n in range(start, start + BATCH)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.fhir, timeout=60, headers={
        "Authorization": f"Bearer {server.backend_token('system/*.rs system/*.cruds')}"})


def test_a_killed_server_finishes_the_export_after_a_restart(tmp_path: Path) -> None:
    process, server = spawn(tmp_path)
    try:
        with client(server) as http:
            for start in range(0, OBSERVATIONS, BATCH):
                answer = http.post("", json=observations(start), headers={"Content-Type": "application/fhir+json"})
                assert answer.status_code == 200, answer.text[:500]
            expected = http.get("Observation", params={"_summary": "count"}).json()["total"]
            kicked = http.get("$export", params={"_type": "Observation,Patient"},
                              headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
            assert kicked.status_code == 202, kicked.text
            status_path = kicked.headers["Content-Location"].split("/fhir/", 1)[1]
            first = http.get(status_path)
            assert first.status_code in (200, 202)
        process.send_signal(signal.SIGKILL)  # mid-export, or just before its worker took it: no goodbye either way
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    process, server = spawn(tmp_path)  # the same store; another port
    try:
        with client(server) as http:
            deadline = time.monotonic() + 120
            while (status := http.get(status_path)).status_code == 202:
                assert time.monotonic() < deadline, "the restarted server did not finish the export"
                time.sleep(0.2)
            assert status.status_code == 200, status.text
            manifest = status.json()
            counts = {item["type"]: item["count"] for item in manifest["output"]}
            assert counts["Observation"] == expected >= OBSERVATIONS and counts["Patient"] >= 3
            assert manifest["error"] == []
            for item in manifest["output"]:
                path = item["url"].split("/fhir/", 1)[1]
                lines = http.get(path, headers={"Accept": "application/fhir+ndjson"}).text.splitlines()
                ids = [json.loads(line)["id"] for line in lines]  # every line whole JSON
                assert len(ids) == len(set(ids)) == item["count"]
    finally:
        process.terminate()
        process.wait(timeout=10)
