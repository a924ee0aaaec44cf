"""The R4 Measure reader on shapes published content uses: unused populations and empty stratifiers as
MADiE exports them, scoring/basis/improvement notation at measure or group level, stratifiers with
components, and stratifiers of an episode-based group that list the episodes of their stratum."""

from __future__ import annotations

import copy

import pytest

from fhirlead.measure import MeasureBundle, MeasureEvaluator, build_report, measurement_period, subjects_from_documents
from fhirlead.measure.definition import MeasureDefinitionError, parse_measure
from tests.measure.synthetic import CQFM, POP, measure_bundle, patients

PERIOD = ("2026-01-01", "2026-12-31")


def _pop(code: str, expression: str | None) -> dict:
    criteria = {"language": "text/cql-identifier"}
    if expression:
        criteria["expression"] = expression
    return {"code": {"coding": [{"system": POP, "code": code}]}, "criteria": criteria}


def test_unused_populations_and_empty_stratifiers_are_not_part_of_the_measure() -> None:
    measure = {
        "scoring": {"coding": [{"code": "proportion"}]},
        "group": [
            {
                "population": [
                    _pop("initial-population", "IP"),
                    _pop("denominator", "Denom"),
                    _pop("denominator-exception", None),
                    _pop("numerator", "Num"),
                    _pop("numerator-exclusion", None),
                ],
                "stratifier": [{"id": "s0", "criteria": {"language": "text/cql-identifier"}}],
            }
        ],
    }
    g = parse_measure(measure).groups[0]
    assert [p.code for p in g.populations] == ["initial-population", "denominator", "numerator"]
    assert g.stratifiers == []
    assert parse_measure(measure).expressions == ["IP", "Denom", "Num"]
    measure["group"][0]["population"][0] = _pop("initial-population", None)
    with pytest.raises(MeasureDefinitionError, match="no initial population"):
        parse_measure(measure)


def test_scoring_basis_and_improvement_notation_at_measure_or_group_level() -> None:
    increase = {"coding": [{"code": "increase"}]}
    decrease = {"coding": [{"code": "decrease"}]}
    measure = {
        "scoring": {"coding": [{"code": "cohort"}]},
        "improvementNotation": increase,
        "extension": [{"url": CQFM + "cqfm-populationBasis", "valueCode": "Encounter"}],
        "group": [
            {"population": [_pop("initial-population", "IP")]},
            {
                "extension": [
                    {"url": CQFM + "cqfm-scoring", "valueCodeableConcept": {"coding": [{"code": "proportion"}]}},
                    {"url": CQFM + "cqfm-populationBasis", "valueCode": "boolean"},
                    {"url": CQFM + "cqfm-improvementNotation", "valueCodeableConcept": decrease},
                ],
                "population": [_pop("initial-population", "IP")],
            },
        ],
    }
    g1, g2 = parse_measure(measure).groups
    assert (g1.scoring, g1.basis, g1.improvement_notation) == ("cohort", "Encounter", increase)
    assert (g2.scoring, g2.basis, g2.improvement_notation) == ("proportion", "boolean", decrease)


def test_text_cql_criteria_may_quote_the_identifier() -> None:
    measure = {
        "scoring": {"coding": [{"code": "cohort"}]},
        "group": [{"population": [{"code": {"coding": [{"code": "initial-population"}]},
                                   "criteria": {"language": "text/cql", "expression": '"Initial Population"'}}]}],
    }
    assert parse_measure(measure).expressions == ["Initial Population"]


def _report(bundle: dict) -> dict:
    evaluator = MeasureEvaluator(MeasureBundle.from_json(bundle))
    results = evaluator.evaluate(subjects_from_documents(patients()), measurement_period(*PERIOD))
    return build_report(evaluator.definition, results, PERIOD)


def test_stratifier_components_become_stratum_components() -> None:
    bundle = measure_bundle("proportion")
    sex = {"coding": [{"code": "sex"}]}
    female = {"coding": [{"code": "is-female"}]}
    bundle["entry"][0]["resource"]["group"][0]["stratifier"] = [
        {
            "id": "sex-and-flag",
            "component": [
                {"code": sex, "criteria": {"language": "text/cql-identifier", "expression": "Gender"}},
                {"code": female, "criteria": {"language": "text/cql-identifier", "expression": "Is Female"}},
            ],
        }
    ]
    strata = _report(bundle)["group"][0]["stratifier"][0]["stratum"]
    assert all("value" not in s for s in strata)
    by_components = {
        tuple((c["code"]["coding"][0]["code"], c["value"]["text"]) for c in s["component"]): {
            p["id"]: p["count"] for p in s["population"]
        }
        for s in strata
    }
    assert by_components == {
        (("sex", "female"), ("is-female", "true")): {"ip": 1, "den": 1, "denex": 1, "num": 0},
        (("sex", "male"), ("is-female", "false")): {"ip": 1, "den": 1, "denex": 0, "num": 1},
    }


def test_episode_based_stratifier_listing_its_episodes() -> None:
    """`Stratification 1: ...` definitions of episode-based measures return the stratum's episodes."""
    bundle = copy.deepcopy(measure_bundle("cv"))
    bundle["entry"][0]["resource"]["group"][0]["stratifier"] = [
        {"id": "excluded", "criteria": {"language": "text/cql-identifier", "expression": "Measure Population"}}
    ]
    strata = _report(bundle)["group"][0]["stratifier"][0]["stratum"]
    counts = {s["value"]["text"]: {p["id"]: p["count"] for p in s["population"]} for s in strata}
    # e1, e3 (p1) and e4 (p2) are finished, e2 is not; e3 is excluded
    assert counts["true"] == {"ip": 3, "mp": 3, "mpx": 1, "obs": 2}
    assert counts["false"] == {"ip": 1, "mp": 0, "mpx": 0, "obs": 0}


def test_r5_cross_version_extensions_and_plain_improvement_notation() -> None:
    """R5 `group.scoring`/`group.basis`/`group.improvementNotation` carried in R4 by the cross-version
    extensions, and an improvementNotation given as a plain code by older content."""
    r5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Measure."
    measure = {
        "improvementNotation": "decrease",
        "group": [
            {
                "extension": [
                    {"url": r5 + "group.scoring", "valueCodeableConcept": {"coding": [{"code": "ratio"}]}},
                    {"url": r5 + "group.basis", "valueCode": "Encounter"},
                ],
                "population": [_pop("initial-population", "IP")],
            }
        ],
    }
    g = parse_measure(measure).groups[0]
    assert (g.scoring, g.basis) == ("ratio", "Encounter")
    assert g.improvement_notation == {
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "code": "decrease"}]
    }


def test_aggregate_method_as_madie_writes_it() -> None:
    def observation(**value: str) -> dict:
        pop = _pop("measure-observation", "Length")
        pop["extension"] = [{"url": CQFM + "cqfm-aggregateMethod", **value}]
        return pop

    measure = {
        "scoring": {"coding": [{"code": "continuous-variable"}]},
        "group": [{"population": [_pop("initial-population", "IP"), _pop("measure-population", "MP"),
                                  observation(valueString="Sum"), observation(valueString="Average"),
                                  observation(valueCode="maximum"), observation(valueCode="median")]}],
    }
    methods = [p.aggregate_method for p in parse_measure(measure).groups[0].populations[2:]]
    assert methods == ["sum", "average", "max", "median"]
