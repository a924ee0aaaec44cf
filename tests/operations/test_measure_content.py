"""Measures, their Libraries and ValueSets are ordinary resources: PUT, POSTed or loaded with `fhirlead load`.

Published measure content uses `Expression.language` `text/cql-identifier`, which R4 binds extensibly: the
JSON Schema's enum (text/cql, text/fhirpath, application/x-fhir-query) no longer refuses it, while the enums
of required bindings still hold (tools/build_definitions.py, correction 5).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI

from fhirlead.settings import Settings
from tests.measure.shared_data import require_ecqm


def measure(status: str = "active") -> dict:
    return {"resourceType": "Measure", "id": "m", "url": "http://example.org/Measure/m", "status": status,
            "group": [{"population": [{
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population",
                                     "code": "initial-population"}]},
                "criteria": {"language": "text/cql-identifier", "expression": "Initial Population"}}]}]}


async def test_an_extensibly_bound_code_outside_the_schema_enum_is_accepted(client: httpx.AsyncClient) -> None:
    created = await client.put("Measure/m", json=measure())
    assert created.status_code == 201, created.text
    read = await client.get("Measure/m")
    assert read.json()["group"][0]["population"][0]["criteria"]["language"] == "text/cql-identifier"


async def test_a_required_binding_still_refuses_a_code_outside_it(client: httpx.AsyncClient) -> None:
    refused = await client.put("Measure/m", json=measure(status="approved"))
    assert refused.status_code == 400, refused.text
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Measure/m")).status_code == 404


async def test_every_published_measure_bundle_loads(settings: Settings, app: FastAPI,
                                                    client: httpx.AsyncClient) -> None:
    from fhirlead.load import load_files

    root = require_ecqm()
    bundles = sorted(root.glob("*/measure-bundle.json"))
    report = await load_files(settings, bundles)
    assert not report.failures, report.failures
    assert report.counts["Measure"] == len(bundles) == 5
    for path in bundles:
        published = next(e["resource"] for e in orjson.loads(path.read_bytes())["entry"]
                         if e["resource"]["resourceType"] == "Measure")
        found = (await client.get("Measure", params={"url": published["url"]})).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [published["id"]], Path(path).parent.name


def contradicting() -> dict:
    """A Measure whose improvement notation's code says decrease and its display increase (as a published
    CMS2 version does): the code counts, and the writer is warned."""
    notation = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
                            "code": "decrease", "display": "Increased score indicates improvement"}]}
    return {**measure(), "improvementNotation": notation}


async def test_a_contradicting_improvement_notation_is_stored_with_a_warning(client: httpx.AsyncClient) -> None:
    answer = await client.put("Measure/m", json=contradicting(), headers={"Prefer": "return=OperationOutcome"})
    assert answer.status_code == 201, answer.text
    [issue] = answer.json()["issue"]
    assert issue["severity"] == "warning" and issue["expression"] == ["Measure.improvementNotation"]
    assert "decrease" in issue["diagnostics"] and "the code counts" in issue["diagnostics"]
    quiet = await client.put("Measure/m", json=measure(), headers={"Prefer": "return=OperationOutcome"})
    assert [i["severity"] for i in quiet.json()["issue"]] == ["information"]


async def test_loading_a_contradicting_measure_warns(settings: Settings, tmp_path: Path) -> None:
    from fhirlead.load import load_files

    path = tmp_path / "measure.ndjson"
    path.write_bytes(orjson.dumps(contradicting()) + b"\n")
    report = await load_files(settings, [path])
    assert report.counts["Measure"] == 1 and not report.failures
    assert len(report.warnings) == 1 and "Measure/m" in report.warnings[0]
