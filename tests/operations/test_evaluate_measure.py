"""`$evaluate-measure` over the live record: the published eCQM test cases (../shared/data/ecqm-2025)
loaded into a running server with `fhirlead load`, each evaluated over HTTP, one subject per call, must
give the published population counts; a population report over a Group of them is the sum."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import FastAPI

from fhirlead.measure import build_report, measurement_period, subjects_from_documents
from fhirlead.settings import Settings
from tests import backends
from tests.measure.conftest import evaluator_for
from tests.measure.shared_data import ecqm_dir, require_ecqm

ON_MONGOMOCK = "CMS2FHIR"  # the smallest measure: its first MONGOMOCK_CASES cases
MONGOMOCK_CASES = 12
MONGOMOCK = ("mongomock scans every document per query (10 minutes for all five measures): the MongoDB run "
             f"evaluates {MONGOMOCK_CASES} cases of {ON_MONGOMOCK}; the SQLite run all 290")
PERIOD = {"periodStart": "2026-01-01", "periodEnd": "2026-12-31"}


def measures() -> list[object]:
    root = ecqm_dir()
    if root is None:
        return [pytest.param("ecqm-data-missing", id="ecqm-data-missing")]
    slow = backends.selected() == "mongomock"
    return [pytest.param(d.name, id=d.name.split("FHIR")[0], marks=[pytest.mark.skip(reason=MONGOMOCK)]
                         if slow and not d.name.startswith(ON_MONGOMOCK) else [])
            for d in sorted(root.iterdir()) if d.is_dir()]


def counts(report: dict) -> Counter:
    return Counter({(group.get("id"), population["code"]["coding"][0]["code"]): population["count"]
                    for group in report["group"] for population in group["population"]})


def implied_status(measure: dict, expected: dict) -> str:
    """The DEQM gap status the published counts imply (worst over the groups): not eligible (denominator
    less exclusions and exceptions) is not-applicable; else the numerator, read through the group's
    improvement notation, tells closed from open."""
    found = []
    for group, reported in zip(measure["group"], expected["group"], strict=True):
        notation = next((e["valueCodeableConcept"]["coding"][0]["code"] for e in group.get("extension", [])
                         if e["url"].endswith("cqfm-improvementNotation")),
                        measure.get("improvementNotation", {}).get("coding", [{}])[0].get("code", "increase"))
        count = Counter({p["code"]["coding"][0]["code"]: p["count"] for p in reported["population"]})
        eligible = count["denominator"] - count["denominator-exclusion"] - count["denominator-exception"]
        met = count["numerator"] - count["numerator-exclusion"] > 0
        if eligible <= 0:
            found.append("not-applicable")
        else:
            found.append("closed-gap" if met == (notation == "increase") else "open-gap")
    return next(s for s in ("open-gap", "closed-gap", "not-applicable") if s in found)


def measure_of(folder: Path) -> dict:
    bundle = orjson.loads((folder / "measure-bundle.json").read_bytes())
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Measure")


@pytest.mark.parametrize("name", measures())
async def test_every_published_case_through_the_api(name: str, settings: Settings, app: FastAPI,
                                                    client: httpx.AsyncClient) -> None:
    from fhirlead.load import load_files

    folder = require_ecqm() / name
    cases = orjson.loads((folder / "test-cases.json").read_bytes())
    if backends.selected() == "mongomock":
        cases = cases[:MONGOMOCK_CASES]
    report = await load_files(settings, [folder / "measure-bundle.json",
                                         *(folder / "tests" / f"{row['patientId']}.json" for row in cases)])
    assert not report.failures, report.failures
    measure = measure_of(folder)
    total: Counter = Counter()
    for row in cases:
        patient = row["patientId"]
        expected = orjson.loads((folder / "tests" / f"{patient}.expected.json").read_bytes())
        answer = await client.get(f"Measure/{measure['id']}/$evaluate-measure",
                                  params={**PERIOD, "subject": f"Patient/{patient}"})
        assert answer.status_code == 200, answer.text
        individual = answer.json()
        assert individual["type"] == "individual" and individual["subject"] == {"reference": f"Patient/{patient}"}
        assert counts(individual) == counts(expected), f"{row['series']} {row['title']}"
        total += counts(individual)
        gaps = await client.get("Measure/$care-gaps", params=[
            *PERIOD.items(), ("subject", f"Patient/{patient}"), ("measureId", measure["id"]),
            *(("status", s) for s in ("open-gap", "closed-gap", "prospective-gap", "not-applicable"))])
        assert gaps.status_code == 200, gaps.text
        [document] = [p["resource"] for p in gaps.json()["parameter"]]
        [issue] = [e["resource"] for e in document["entry"] if e["resource"]["resourceType"] == "DetectedIssue"]
        status = issue["modifierExtension"][0]["valueCodeableConcept"]["coding"][0]["code"]
        assert status == implied_status(measure, expected), f"{row['series']} {row['title']}"
    group = {"resourceType": "Group", "id": "cases", "type": "person", "actual": True,
             "member": [{"entity": {"reference": f"Patient/{row['patientId']}"}} for row in cases]}
    assert (await client.put("Group/cases", json=group)).status_code == 201
    summary = await client.post("Measure/$evaluate-measure", json={"resourceType": "Parameters", "parameter": [
        {"name": "periodStart", "valueDate": "2026-01-01"}, {"name": "periodEnd", "valueDate": "2026-12-31"},
        {"name": "measure", "valueString": measure["url"]}, {"name": "subject", "valueString": "Group/cases"}]})
    assert summary.status_code == 200, summary.text
    assert summary.json()["type"] == "summary"
    assert counts(summary.json()) == total
    # the whole summary (strata, supplemental data) as the in-memory engine builds it from the same cases
    documents = [orjson.loads((folder / "tests" / f"{row['patientId']}.json").read_bytes()) for row in cases]
    evaluator = evaluator_for(folder)
    offline = build_report(evaluator.definition, evaluator.evaluate(
        subjects_from_documents(documents, require_profile=False), measurement_period(*PERIOD.values())),
        tuple(PERIOD.values()), individual=False)
    live = summary.json()
    assert live["group"] == offline["group"]
    assert live.get("contained") == offline.get("contained")
