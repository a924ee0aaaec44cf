"""`fhirlead load --source URI [--organization Organization/ID]` (docs/sources.md): what it loads gets
that meta.source where it has none, and each Bundle / NDJSON chunk its Provenance, in the same commit;
without --source nothing is added (an operator's load names no client)."""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhirlead.api.app import create_app
from fhirlead.load import load_files, run
from fhirlead.settings import Settings
from fhirlead.sources import of_operator
from tests.bundle.helpers import bundle, entry
from tests.rest.test_sources import provenances
from tests.tokens import bearer

SOURCE = "https://ehr.northside.example/fhir"


async def read_all(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(every Patient and Observation, every Provenance) through the API."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver/fhir",
            headers=await bearer(app)) as client:
        found = (await client.get("", params={"_type": "Patient,Observation", "_count": "1000"})).json()
        return [item["resource"] for item in found.get("entry", [])], await provenances(client)


def transaction_file(path: Path, patient_id: str, **meta: Any) -> Path:
    patient = {"resourceType": "Patient", "id": patient_id, "gender": "female", **({"meta": meta} if meta else {})}
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
                   "subject": {"reference": f"Patient/{patient_id}"}}
    path.write_bytes(orjson.dumps(bundle("transaction", entry("PUT", f"Patient/{patient_id}", patient),
                                         entry("POST", "Observation", observation))))
    return path


async def test_a_load_with_a_source_records_it_per_bundle_and_chunk(settings: Settings, tmp_path: Path) -> None:
    first = transaction_file(tmp_path / "a.json", "pa")
    second = transaction_file(tmp_path / "b.json", "pb", source="https://lab.example/x")
    chunked = tmp_path / "more.ndjson.gz"
    chunked.write_bytes(gzip.compress(b"\n".join(
        orjson.dumps({"resourceType": "Patient", "id": f"n{n}"}) for n in range(600))))  # two chunks of 500/100
    report = await load_files(settings, [first, second, chunked],
                              source=of_operator(SOURCE, "Organization/northside"))
    assert not report.failures and report.total == 604
    resources, found = await read_all(settings)
    by_id = {resource["id"]: resource["meta"].get("source") for resource in resources}
    assert by_id["pb"] == "https://lab.example/x"
    assert {source for id_, source in by_id.items() if id_ != "pb"} == {SOURCE}
    assert [len(item["target"]) for item in found] == [2, 2, 500, 100]  # one per Bundle and per chunk
    assert all(item["agent"][0]["who"] == {"reference": "Organization/northside"} for item in found)
    assert {target["reference"] for target in found[0]["target"]} == {
        f"{resource['resourceType']}/{resource['id']}/_history/1" for resource in resources
        if resource.get("subject", {}).get("reference") == "Patient/pa" or resource["id"] == "pa"}


async def test_a_load_without_a_source_adds_nothing(settings: Settings, tmp_path: Path) -> None:
    report = await load_files(settings, [transaction_file(tmp_path / "a.json", "pa")])
    assert report.total == 2
    resources, found = await read_all(settings)
    assert found == [] and all("source" not in resource["meta"] for resource in resources)


def test_organization_needs_a_source(tmp_path: Path) -> None:
    args = argparse.Namespace(paths=[str(transaction_file(tmp_path / "a.json", "pa"))], store="sqlite:///x.db",
                              reload=False, source=None, organization="Organization/northside")
    assert run(args) == 2
