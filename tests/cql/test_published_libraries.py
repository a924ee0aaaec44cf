"""The published libraries (FHIRHelpers, QICoreCommon, CumulativeMedicationDuration...) beyond what the
measures' test cases touch: everything compiles, and utility functions compute what their CQL says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirlead.cql.datetime import Date, DateTime
from fhirlead.cql.engine import Engine, call_function
from fhirlead.cql.interval import Interval
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.retrieve import InMemoryDataSource
from fhirlead.measure import MeasureBundle
from tests.measure.shared_data import require_ecqm


@pytest.fixture(scope="module")
def bundles() -> list[MeasureBundle]:
    root = require_ecqm()
    return [
        MeasureBundle.from_json(orjson.loads((d / "measure-bundle.json").read_bytes()))
        for d in sorted(Path(root).iterdir())
        if (d / "measure-bundle.json").is_file()
    ]


@pytest.mark.parametrize("native_helpers", [True, False])
def test_every_published_definition_and_function_compiles(
    bundles: list[MeasureBundle], native_helpers: bool
) -> None:
    compiled = 0
    for bundle in bundles:
        engine = Engine(bundle.libraries, bundle.terminology, native_helpers=native_helpers)
        for versions in bundle.libraries:
            for lib in versions:
                comp = engine.compiler_for(lib.name, lib.version)
                for name in lib.statements:
                    comp.definition(name)
                    compiled += 1
                for name in lib.functions:
                    for fn in comp.functions(name):
                        if not fn.external and fn.native is None:
                            fn.compiled_body()
                            compiled += 1
    assert compiled > 500


@pytest.fixture(scope="module")
def helpers(bundles: list[MeasureBundle]) -> tuple[Any, Any, Any]:
    bundle = next(b for b in bundles if b.main_library.name.startswith("CMS2"))
    engine = Engine(bundle.libraries, bundle.terminology)
    patient = {"resourceType": "Patient", "id": "p", "birthDate": "1980-01-01"}
    ctx = engine.context(InMemoryDataSource([patient], require_profile=False))
    return (
        engine.compiler_for("QICoreCommon", "4.0.000"),
        engine.compiler_for("CumulativeMedicationDuration", "6.0.000"),
        ctx,
    )


def test_qicorecommon_day_functions(helpers: tuple[Any, Any, Any]) -> None:
    qc, _cmd, ctx = helpers
    period = Interval(DateTime((2026, 1, 1, 0, 0, 0, 0), 0), DateTime((2026, 1, 4, 12, 0, 0, 0), 0))
    assert call_function(qc, "toDayNumbers", [period], ctx) == [1, 2, 3]
    days = call_function(qc, "daysInPeriod", [period], ctx)
    assert [d["dayIndex"] for d in days] == [1, 2, 3]
    assert days[0]["dayPeriod"] == Interval(period.low, DateTime((2026, 1, 2, 0, 0, 0, 0), 0), True, False)


def test_qicorecommon_age_quantities_become_intervals(helpers: tuple[Any, Any, Any]) -> None:
    qc, _cmd, ctx = helpers
    interval = call_function(qc, "toInterval", [Quantity(40, "year")], ctx)
    # the birth date is converted to a DateTime (day precision) by the ELM, then 40 years added
    assert interval == Interval(DateTime((2020, 1, 1), 0), DateTime((2021, 1, 1), 0), True, False)
    assert type(interval.low) is DateTime


MED_REQUEST = {
    "resourceType": "MedicationRequest",
    "id": "m1",
    "status": "active",
    "intent": "order",
    "authoredOn": "2026-01-10",
    "dosageInstruction": [
        {
            "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}],
        }
    ],
    "dispenseRequest": {"quantity": {"value": 60}, "numberOfRepeatsAllowed": 1},
}
DAYS = {"system": "http://unitsofmeasure.org", "code": "d", "unit": "days"}


def test_cumulative_medication_duration(helpers: tuple[Any, Any, Any]) -> None:
    _qc, cmd, ctx = helpers
    # 60 tablets at 1 tablet twice a day, one refill: 60 days from the authored date
    assert call_function(cmd, "medicationRequestPeriod", [MED_REQUEST], ctx) == Interval(
        Date(2026, 1, 10), Date(2026, 3, 10)
    )
    second = dict(
        MED_REQUEST,
        id="m2",
        authoredOn="2026-03-01",
        dispenseRequest={"expectedSupplyDuration": dict(DAYS, value=30)},
    )
    # overlapping prescriptions are collapsed: Jan 10 .. Mar 30
    assert call_function(cmd, "cumulativeMedicationDuration", [[MED_REQUEST, second]], ctx) == 80
    dispense = {
        "resourceType": "MedicationDispense",
        "id": "d1",
        "whenHandedOver": "2026-02-01",
        "daysSupply": dict(DAYS, value=10),
    }
    early_refill = dict(dispense, id="d2", whenHandedOver="2026-02-05")
    # dispenses are rolled out end to end: 10 + 10 days
    assert call_function(cmd, "cumulativeMedicationDuration", [[dispense, early_refill]], ctx) == 20
