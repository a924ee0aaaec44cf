"""Every published eCQM test case: population counts must equal the expected MeasureReport.

One test per case (id: measure/series-title). The expected reports are the published files, unchanged;
only population counts are compared (their measureScore is a MADiE artefact: 1.0 for every case).
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from fhirlead.measure import build_report, measurement_period, subjects_from_documents
from tests.measure.conftest import evaluator_for
from tests.measure.shared_data import ecqm_dir

PERIOD = ("2026-01-01", "2026-12-31")


def _cases() -> list[object]:
    root = ecqm_dir()
    if root is None:
        return [pytest.param(None, None, id="ecqm-data-missing")]
    params = []
    for measure_dir in sorted(p for p in root.iterdir() if (p / "test-cases.json").is_file()):
        short = measure_dir.name.split("FHIR")[0]
        for row in orjson.loads((measure_dir / "test-cases.json").read_bytes()):
            case_id = f"{short}/{row['series']}-{row['title']}-{row['patientId'][:8]}"
            params.append(pytest.param(measure_dir, row["patientId"], id=case_id))
    return params


def _counts(report: dict) -> dict[tuple[str, str], int]:
    out = {}
    for group in report["group"]:
        for pop in group["population"]:
            out[(group.get("id"), pop["code"]["coding"][0]["code"])] = pop["count"]
    return out


@pytest.mark.parametrize(("measure_dir", "patient_id"), _cases())
def test_published_case(measure_dir: Path | None, patient_id: str | None, ecqm: Path) -> None:
    assert measure_dir is not None and patient_id is not None
    evaluator = evaluator_for(measure_dir)
    data = orjson.loads((measure_dir / "tests" / f"{patient_id}.json").read_bytes())
    expected = orjson.loads((measure_dir / "tests" / f"{patient_id}.expected.json").read_bytes())
    subjects = subjects_from_documents([data])
    assert [s.id for s in subjects] == [patient_id]
    results = evaluator.evaluate(subjects, measurement_period(*PERIOD))
    report = build_report(evaluator.definition, results, PERIOD)
    assert report["type"] == "individual"
    assert report["subject"] == {"reference": f"Patient/{patient_id}"}
    assert _counts(report) == _counts(expected)
