"""A small hand-written measure (ELM + Measure + data) for tests that must not need the shared data.

Library "Stays" (episode-based, continuous variable): encounters are the episodes; the measure
population is the finished ones, encounter "e3" is excluded, and the observation is the length of
stay in days. A patient-based proportion measure over the same library is also provided.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from tests.cql.elm import SYS, alias, library, lit, op, prop, query, retrieve

CQFM = "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/"
POP = "http://terminology.hl7.org/CodeSystem/measure-population"


def _operand(name: str) -> dict[str, Any]:
    return {"type": "OperandRef", "name": name}


def stays_library() -> dict[str, Any]:
    encounters = retrieve("Encounter")
    finished = query(
        [("E", {"type": "ExpressionRef", "name": "Initial Population"})],
        where=op("Equal", prop("status.value", scope="E"), lit("finished")),
    )
    excluded = query(
        [("E", {"type": "ExpressionRef", "name": "Measure Population"})],
        where=op("Equal", prop("id.value", scope="E"), lit("e3")),
    )
    length = {
        "type": "FunctionDef",
        "operand": [
            {
                "name": "Enc",
                "operandTypeSpecifier": {
                    "type": "NamedTypeSpecifier",
                    "name": "{http://hl7.org/fhir}Encounter",
                },
            }
        ],
        "expression": op(
            "DurationBetween",
            prop("period.start.value", _operand("Enc")),
            prop("period.end.value", _operand("Enc")),
            precision="Day",
        ),
    }
    has_finished = {"type": "Exists", "operand": {"type": "ExpressionRef", "name": "Measure Population"}}
    long_stay = {
        "type": "Exists",
        "operand": query(
            [("E", {"type": "ExpressionRef", "name": "Measure Population"})],
            where=op(
                "GreaterOrEqual",
                {"type": "FunctionRef", "name": "Length Of Stay", "operand": [alias("E")]},
                lit(3),
            ),
        ),
    }
    defs = {
        "Initial Population": encounters,
        "Measure Population": finished,
        "Measure Population Exclusions": excluded,
        "Length Of Stay": length,
        "Has Finished Stay": has_finished,
        "Has Long Stay": long_stay,
        "Has Excluded Stay": {
            "type": "Exists",
            "operand": {"type": "ExpressionRef", "name": "Measure Population Exclusions"},
        },
        "Gender": prop("gender.value", {"type": "SingletonFrom", "operand": retrieve("Patient")}),
        "Is Female": op("Equal", {"type": "ExpressionRef", "name": "Gender"}, lit("female")),
        "Measurement Period End": {
            "type": "End",
            "operand": {"type": "ParameterRef", "name": "Measurement Period"},
        },
    }
    lib = library(
        defs,
        name="Stays",
        version="1.0.0",
        parameters={
            "def": [
                {
                    "name": "Measurement Period",
                    "parameterTypeSpecifier": {
                        "type": "IntervalTypeSpecifier",
                        "pointType": {"type": "NamedTypeSpecifier", "name": SYS + "DateTime"},
                    },
                }
            ]
        },
    )
    return lib


def _population(code: str, expression: str, pid: str, **ext: str) -> dict[str, Any]:
    extension = [
        {"url": CQFM + name, "valueString" if name == "cqfm-criteriaReference" else "valueCode": value}
        for name, value in ext.items()
    ]
    out: dict[str, Any] = {
        "id": pid,
        "code": {"coding": [{"system": POP, "code": code}]},
        "criteria": {"language": "text/cql-identifier", "expression": expression},
    }
    if extension:
        out["extension"] = extension
    return out


def _group(scoring: str, basis: str, populations: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": f"group-{scoring}",
        "extension": [
            {"url": CQFM + "cqfm-scoring", "valueCodeableConcept": {"coding": [{"code": scoring}]}},
            {"url": CQFM + "cqfm-populationBasis", "valueCode": basis},
        ],
        "population": populations,
        **extra,
    }


def measure_bundle(kind: str = "cv") -> dict[str, Any]:
    if kind == "cv":
        group = _group(
            "continuous-variable",
            "Encounter",
            [
                _population("initial-population", "Initial Population", "ip"),
                _population("measure-population", "Measure Population", "mp"),
                _population("measure-population-exclusion", "Measure Population Exclusions", "mpx"),
                _population(
                    "measure-observation",
                    "Length Of Stay",
                    "obs",
                    **{"cqfm-aggregateMethod": "average", "cqfm-criteriaReference": "mp"},
                ),
            ],
        )
    else:
        group = _group(
            "proportion",
            "boolean",
            [
                _population("initial-population", "Has Finished Stay", "ip"),
                _population("denominator", "Has Finished Stay", "den"),
                _population("denominator-exclusion", "Has Excluded Stay", "denex"),
                _population("numerator", "Has Long Stay", "num"),
            ],
            stratifier=[
                {"id": "by-sex", "criteria": {"language": "text/cql-identifier", "expression": "Is Female"}}
            ],
        )
    measure = {
        "resourceType": "Measure",
        "id": "stays",
        "url": "http://example.org/Measure/stays",
        "version": "1",
        "library": ["http://example.org/Library/Stays"],
        "group": [group],
        "supplementalData": [
            {"id": "sde-gender", "criteria": {"language": "text/cql-identifier", "expression": "Gender"}}
        ],
    }
    elm = base64.b64encode(orjson.dumps(stays_library())).decode()
    lib = {
        "resourceType": "Library",
        "id": "Stays",
        "url": "http://example.org/Library/Stays",
        "version": "1.0.0",
        "content": [{"contentType": "application/elm+json", "data": elm}],
    }
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": measure}, {"resource": lib}],
    }


def encounter(eid: str, status: str, start: str, end: str, patient: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": eid,
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": start, "end": end},
    }


def patients() -> list[dict[str, Any]]:
    """Two patient bundles: p1 (female) with e1 2 days, e2 in progress, e3 excluded; p2 (male) e4 4 days."""
    p1 = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1", "gender": "female"}},
            {"resource": encounter("e1", "finished", "2026-02-01", "2026-02-03", "p1")},
            {"resource": encounter("e2", "in-progress", "2026-03-01", "2026-03-02", "p1")},
            {"resource": encounter("e3", "finished", "2026-04-01", "2026-04-11", "p1")},
        ],
    }
    p2 = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "p2", "gender": "male"}},
            {"resource": encounter("e4", "finished", "2026-05-01", "2026-05-05", "p2")},
        ],
    }
    return [p1, p2]
