"""Population semantics (proportion, ratio, continuous variable; patient- and episode-based), scoring,
and MeasureReport shape, on a small synthetic measure and on the published content."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from fhirlead.cql.quantity import Quantity
from fhirlead.measure import (
    MeasureBundle,
    MeasureEvaluator,
    build_report,
    measurement_period,
    subjects_from_documents,
)
from fhirlead.measure.definition import Group, MeasureDefinitionError, Population, Stratifier, parse_measure
from fhirlead.measure.evaluate import GroupResult
from fhirlead.measure.populations import aggregate, constrain, score
from fhirlead.measure.report import GroupTally
from tests.measure.conftest import evaluator_for
from tests.measure.synthetic import measure_bundle, patients

PERIOD = ("2026-01-01", "2026-12-31")


def group(scoring: str, *codes: str, refs: dict[str, str] | None = None) -> Group:
    pops = []
    for i, code in enumerate(codes):
        pid = f"{code}-{i}"
        pops.append(Population(pid, code, code, (refs or {}).get(pid)))
    return Group("g", None, scoring, "boolean", None, pops, [])


def test_proportion_constraints() -> None:
    g = group(
        "proportion",
        "initial-population",
        "denominator",
        "denominator-exclusion",
        "numerator",
        "numerator-exclusion",
        "denominator-exception",
    )
    raw = {
        0: ["a", "b", "c", "d"],
        1: ["a", "b", "c", "d", "x"],
        2: ["b"],
        3: ["a", "b"],
        4: ["a"],
        5: ["a", "b", "c"],
    }
    out = constrain(g, raw)
    assert out[1] == ["a", "b", "c", "d"]  # denominator limited to the initial population
    assert out[2] == ["b"]
    assert out[3] == ["a"]  # an excluded member cannot be in the numerator
    assert out[4] == ["a"]
    assert out[5] == ["c"]  # exceptions only for denominator members neither excluded nor in the numerator
    counts = {i: len(v) for i, v in out.items()}
    assert score(g, counts, {}) == Decimal(0)  # (1 - 1) / (4 - 1 - 1)


def test_proportion_score_is_undefined_for_an_empty_denominator() -> None:
    g = group("proportion", "initial-population", "denominator", "denominator-exclusion", "numerator")
    out = constrain(g, {0: ["a"], 1: ["a"], 2: ["a"], 3: ["a"]})
    assert out[3] == []
    assert score(g, {i: len(v) for i, v in out.items()}, {}) is None


def test_ratio_with_two_initial_populations() -> None:
    g = group(
        "ratio",
        "initial-population",
        "initial-population",
        "denominator",
        "numerator",
        refs={"denominator-2": "initial-population-0", "numerator-3": "initial-population-1"},
    )
    out = constrain(g, {0: ["a", "b"], 1: ["c"], 2: ["a", "b", "c"], 3: ["a", "c"]})
    assert out[2] == ["a", "b"] and out[3] == ["c"]
    assert score(g, {i: len(v) for i, v in out.items()}, {}) == Decimal("0.5")


def test_ratio_needs_criteria_references_with_several_initial_populations() -> None:
    g = group("ratio", "initial-population", "initial-population", "denominator")
    with pytest.raises(MeasureDefinitionError):
        constrain(g, {0: [], 1: [], 2: []})


def test_observation_aggregation() -> None:
    assert aggregate("average", [Decimal(2), Decimal(4)]) == Decimal(3)
    assert aggregate("count", [1, None, 2]) == 2
    assert aggregate("median", [Decimal(5), Decimal(1), Decimal(3), Decimal(2)]) == Decimal("2.5")
    assert aggregate("sum", [Quantity(1, "d"), Quantity(2, "d")]) == Quantity(3, "d")
    assert aggregate("max", []) is None


def test_unknown_scoring_is_rejected() -> None:
    bad = {
        "group": [
            {
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-scoring",
                        "valueCodeableConcept": {"coding": [{"code": "composite"}]},
                    }
                ]
            }
        ]
    }
    with pytest.raises(MeasureDefinitionError, match="composite"):
        parse_measure(bad)


def _evaluate(kind: str) -> tuple[MeasureEvaluator, list]:
    evaluator = MeasureEvaluator(MeasureBundle.from_json(measure_bundle(kind)))
    subjects = subjects_from_documents(patients())
    return evaluator, evaluator.evaluate(subjects, measurement_period(*PERIOD))


def test_episode_based_continuous_variable_measure() -> None:
    evaluator, results = _evaluate("cv")
    report = build_report(evaluator.definition, results, PERIOD)
    assert report["type"] == "summary"
    counts = {p["id"]: p["count"] for p in report["group"][0]["population"]}
    assert counts == {"ip": 4, "mp": 3, "mpx": 1, "obs": 2}
    assert report["group"][0]["measureScore"] == {"value": 3.0}  # average of 2 and 4 days
    individual = build_report(evaluator.definition, results[:1], PERIOD)
    assert {p["id"]: p["count"] for p in individual["group"][0]["population"]} == {
        "ip": 3,
        "mp": 2,
        "mpx": 1,
        "obs": 1,
    }
    assert individual["group"][0]["measureScore"] == {"value": 2.0}


def test_patient_based_proportion_with_stratifier_and_supplemental_data() -> None:
    evaluator, results = _evaluate("proportion")
    report = build_report(evaluator.definition, results, PERIOD)
    g = report["group"][0]
    assert {p["id"]: p["count"] for p in g["population"]} == {"ip": 2, "den": 2, "denex": 1, "num": 1}
    assert g["measureScore"] == {"value": 1.0}
    strata = {
        s["value"]["text"]: {p["id"]: p["count"] for p in s["population"]}
        for s in g["stratifier"][0]["stratum"]
    }
    assert strata == {
        "true": {"ip": 1, "den": 1, "denex": 1, "num": 0},
        "false": {"ip": 1, "den": 1, "denex": 0, "num": 1},
    }
    sde = {o["code"]["text"]: o["valueInteger"] for o in report["contained"]}
    assert sde == {"sde-gender: female": 1, "sde-gender: male": 1}
    assert all(e["valueReference"]["reference"].startswith("#") for e in report["extension"][1:])


def test_individual_report_shape() -> None:
    evaluator, results = _evaluate("proportion")
    report = build_report(evaluator.definition, results[1:], PERIOD)
    assert report["type"] == "individual"
    assert report["meta"]["profile"] == [
        "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/indv-measurereport-deqm"
    ]
    assert report["subject"] == {"reference": "Patient/p2"}
    assert report["measure"] == "http://example.org/Measure/stays|1"
    assert report["period"] == {"start": "2026-01-01", "end": "2026-12-31"}
    assert report["evaluatedResource"] == [{"reference": "Patient/p2"}, {"reference": "Encounter/e4"}]
    assert report["contained"][0]["valueCodeableConcept"] == {"text": "male"}
    with pytest.raises(ValueError):
        build_report(evaluator.definition, results, PERIOD, individual=True)


def test_measurement_period_parsing() -> None:
    mp = measurement_period("2026-01-01", "2026-12-31")
    assert mp.low.fields == (2026, 1, 1, 0, 0, 0, 0)
    assert mp.high.fields == (2026, 12, 31, 23, 59, 59, 999)
    with pytest.raises(ValueError):
        measurement_period("2026-12-31", "2026-01-01")


def test_published_summary_report_matches_the_sum_of_cases(ecqm: Path) -> None:
    measure_dir = ecqm / "CMS125FHIRBreastCancerScreening"
    evaluator = evaluator_for(measure_dir)
    docs = [
        orjson.loads(p.read_bytes())
        for p in sorted((measure_dir / "tests").glob("*.json"))
        if not p.name.endswith(".expected.json")
    ]
    results = evaluator.evaluate(subjects_from_documents(docs), measurement_period(*PERIOD))
    report = build_report(evaluator.definition, results, PERIOD)
    expected: dict[str, int] = {}
    for row in orjson.loads((measure_dir / "test-cases.json").read_bytes()):
        for code, count in row["expected"][0]["populations"].items():
            expected[code] = expected.get(code, 0) + count
    group = report["group"][0]
    assert {p["code"]["coding"][0]["code"]: p["count"] for p in group["population"]} == expected
    # strata partition the subjects: their initial-population counts add up to the total
    for stratifier in group["stratifier"]:
        assert (
            sum(s["population"][0]["count"] for s in stratifier["stratum"]) == expected["initial-population"]
        )
    num, den, denex = expected["numerator"], expected["denominator"], expected["denominator-exclusion"]
    assert group["measureScore"]["value"] == pytest.approx(num / (den - denex))


def test_episode_strata_carry_their_own_observations() -> None:
    """In an episode-based continuous-variable group stratified by a list of episodes, each stratum's
    score aggregates the observations of its own episodes only, and results folded one subject at a time
    add up to the same report."""
    pops = [Population("ip", "initial-population", "IP"), Population("mp", "measure-population", "MP"),
            Population("obs", "measure-observation", "Obs", "mp", "average")]
    g = Group("g", None, "continuous-variable", "Encounter", None, pops, [Stratifier("s", None, "Long stay")])
    tally = GroupTally(g)
    episodes = [{"resourceType": "Encounter", "id": str(n)} for n in range(1, 5)]
    keys = [f"Encounter/{n}" for n in range(1, 5)]
    # two patients: (E1, E2) observed 2 and 4 days, (E3, E4) observed 9 and 1 day; E1 and E3 stratified in
    tally.add(GroupResult({0: keys[:2], 1: keys[:2], 2: keys[:2]}, {2: [Decimal(2), Decimal(4)]}, {0: [episodes[0]]}))
    tally.add(GroupResult({0: keys[2:], 1: keys[2:], 2: keys[2:]}, {2: [Decimal(9), Decimal(1)]}, {0: [episodes[2]]}))
    entry = tally.entry()
    assert entry["measureScore"] == {"value": 4.0}
    strata = {s["value"]["text"]: (s["measureScore"], [p["count"] for p in s["population"]])
              for s in entry["stratifier"][0]["stratum"]}
    assert strata == {"true": ({"value": 5.5}, [2, 2, 2]), "false": ({"value": 2.5}, [2, 2, 2])}
