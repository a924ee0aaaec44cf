"""A small proportion measure written for these tests (no shared data needed): "patients with an
encounter whose HbA1c is above 9%", inverse like CMS122 (being in the numerator is the gap).

Its logic is ELM JSON written by hand, as the CQL-to-ELM translator would emit for:

    library GapTest version '1.0.0'
    using FHIR version '4.0.1'
    valueset "HbA1c Laboratory Test": 'http://example.org/fhir/ValueSet/hba1c'
    parameter "Measurement Period" Interval<DateTime>
    context Patient
    define "Initial Population": exists [Encounter]
    define "Denominator": "Initial Population"
    define "Numerator": exists ([Observation: "HbA1c Laboratory Test"] O where (O.value as Quantity).value > 9)
    define "Due": @2099-06-30

`content(due=True)` gives the Measure's group a date of compliance ("Due", far ahead): its open gaps are
then prospective.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

FHIR = "{http://hl7.org/fhir}"
MEASURE_URL = "http://example.org/fhir/Measure/gap-test"
LIBRARY_URL = "http://example.org/fhir/Library/GapTest"
VALUESET_URL = "http://example.org/fhir/ValueSet/hba1c"
LOINC = "http://loinc.org"
HBA1C = "4548-4"
POPULATION = "http://terminology.hl7.org/CodeSystem/measure-population"


def _define(name: str, expression: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "context": "Patient", "accessLevel": "Public", "expression": expression}


def _integer(value: int) -> dict[str, Any]:
    return {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer", "value": str(value)}


def _value_above_nine() -> dict[str, Any]:
    value = {"type": "Property", "path": "value", "scope": "O"}
    as_quantity = {"type": "As", "operand": value, "asType": FHIR + "Quantity"}
    number = {"type": "Property", "path": "value", "source": as_quantity}
    decimal = {"type": "Property", "path": "value", "source": number}
    nine = {"type": "ToDecimal", "operand": {"type": "Literal", "valueType": "{urn:hl7-org:elm-types:r1}Integer",
                                             "value": "9"}}
    return {"type": "Greater", "operand": [decimal, nine]}


ELM = {"library": {
    "identifier": {"id": "GapTest", "version": "1.0.0"},
    "schemaIdentifier": {"id": "urn:hl7-org:elm", "version": "r1"},
    "usings": {"def": [{"localIdentifier": "System", "uri": "urn:hl7-org:elm-types:r1"},
                       {"localIdentifier": "FHIR", "uri": "http://hl7.org/fhir", "version": "4.0.1"}]},
    "valueSets": {"def": [{"name": "HbA1c Laboratory Test", "id": VALUESET_URL, "accessLevel": "Public"}]},
    "contexts": {"def": [{"name": "Patient"}]},
    "statements": {"def": [
        _define("Patient", {"type": "SingletonFrom", "operand": {"type": "Retrieve", "dataType": FHIR + "Patient"}}),
        _define("Initial Population", {"type": "Exists", "operand": {"type": "Retrieve",
                                                                     "dataType": FHIR + "Encounter"}}),
        _define("Denominator", {"type": "ExpressionRef", "name": "Initial Population"}),
        _define("Numerator", {"type": "Exists", "operand": {
            "type": "Query",
            "source": [{"alias": "O", "expression": {
                "type": "Retrieve", "dataType": FHIR + "Observation", "codeProperty": "code",
                "codes": {"type": "ValueSetRef", "name": "HbA1c Laboratory Test"}}}],
            "relationship": [],
            "where": _value_above_nine()}}),
        _define("Due", {"type": "Date", "year": _integer(2099), "month": _integer(6), "day": _integer(30)}),
    ]},
}}


def population(code: str) -> dict[str, Any]:
    return {"id": code, "code": {"coding": [{"system": POPULATION, "code": code}]},
            "criteria": {"language": "text/cql-identifier", "expression": code.replace("-", " ").title()}}


def content(due: bool = False) -> list[dict[str, Any]]:
    """The Measure, its Library and its ValueSet."""
    measure = {
        "resourceType": "Measure", "id": "gap-test", "url": MEASURE_URL, "version": "1.0.0", "status": "active",
        "identifier": [{"system": "http://example.org/fhir/measures", "value": "GAP-1"}],
        "library": [LIBRARY_URL + "|1.0.0"],
        "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring",
                                "code": "proportion"}]},
        "improvementNotation": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation", "code": "decrease"}]},
        "group": [{"id": "group-1", "population": [population("initial-population"), population("denominator"),
                                                   population("numerator")]}],
    }
    measure["group"][0]["population"][0]["criteria"]["expression"] = "Initial Population"
    if due:
        measure["group"][0]["extension"] = [{
            "url": "http://hl7.org/fhir/us/cqfmeasures/StructureDefinition/cqfm-care-gap-date-of-compliance-expression",
            "valueExpression": {"language": "text/cql-identifier", "expression": "Due"}}]
    library = {"resourceType": "Library", "id": "gap-test-library", "url": LIBRARY_URL, "version": "1.0.0",
               "name": "GapTest", "status": "active",
               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/library-type",
                                    "code": "logic-library"}]},
               "content": [{"contentType": "application/elm+json",
                            "data": base64.b64encode(orjson.dumps(ELM)).decode()}]}
    valueset = {"resourceType": "ValueSet", "id": "hba1c", "url": VALUESET_URL, "status": "active",
                "expansion": {"timestamp": "2026-01-01T00:00:00Z",
                              "contains": [{"system": LOINC, "code": HBA1C}, {"system": LOINC, "code": "17856-6"}]}}
    return [measure, library, valueset]


def patient(id_: str, hba1c: float | None = None, encounter: bool = True, **extra: Any) -> list[dict[str, Any]]:
    """A patient with (or without) an encounter in 2026 and an HbA1c result, and a blood pressure
    reading the measure does not look at."""
    out: list[dict[str, Any]] = [{"resourceType": "Patient", "id": id_, **extra}]
    subject = {"reference": f"Patient/{id_}"}
    if encounter:
        out.append({"resourceType": "Encounter", "id": f"{id_}-visit", "status": "finished",
                     "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                     "subject": subject, "period": {"start": "2026-03-01", "end": "2026-03-01"}})
    if hba1c is not None:
        out.append({"resourceType": "Observation", "id": f"{id_}-a1c", "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": HBA1C}]}, "subject": subject,
                    "effectiveDateTime": "2026-03-01", "valueQuantity": {"value": hba1c, "unit": "%"}})
    out.append({"resourceType": "Observation", "id": f"{id_}-bp", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "85354-9"}]}, "subject": subject,
                "effectiveDateTime": "2026-03-01"})
    return out
