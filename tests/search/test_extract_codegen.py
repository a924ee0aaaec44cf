"""The generated extraction function (fhirlead/search/extract_codegen.py) against the plans it is made
from: interpreted plan by plan, step by step, they must give the very same entries in the same order."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from fhirlead.search.entries import IndexEntries
from fhirlead.search.extract import Branch, Extractor, _composite
from fhirlead.search.registry import SearchRegistry


def interpreted(extractor: Extractor, resource: dict[str, Any]) -> IndexEntries:
    """The plans run one by one, each path one step at a time (what extraction did before codegen)."""
    out = IndexEntries()
    reached: dict = {}
    for plan in extractor.plans(resource["resourceType"]):
        if plan.fields is not None and plan.fields.isdisjoint(resource):
            continue
        try:
            if plan.components:
                _composite(plan, resource, out, reached)
                continue
            for branch in plan.branches:
                values = branch.accessor([resource], resource) if branch.compiled else branch.accessor(resource)
                for value in values:
                    branch.convert(plan.key, value, out)
        except Exception:
            continue
    return out.dedupe()


def _entries(entries: IndexEntries) -> dict[str, list]:
    return {kind.name: list(getattr(entries, kind.name)) for kind in dataclasses.fields(IndexEntries)}


def test_every_example_gives_the_interpreted_entries(extractor: Extractor, examples: list[dict[str, Any]]) -> None:
    with_values = 0
    for resource in examples:
        ours = extractor.extract(resource)
        assert _entries(ours) == _entries(interpreted(extractor, resource)), \
            f"{resource['resourceType']}/{resource.get('id')}"
        with_values += ours.count() > 0
    assert with_values > 700


CUSTOM = [  # paths the generated code runs in other ways: an index, %resource, the typed compiler
    {"resourceType": "SearchParameter", "url": "http://example.org/sp/first-category", "code": "first-category",
     "base": ["Observation"], "type": "token", "expression": "Observation.category[0].coding"},
    {"resourceType": "SearchParameter", "url": "http://example.org/sp/also-performer", "code": "also-performer",
     "base": ["Observation"], "type": "reference", "expression": "Observation.subject | %resource.performer"},
    {"resourceType": "SearchParameter", "url": "http://example.org/sp/first-given", "code": "first-given",
     "base": ["Patient"], "type": "string", "expression": "Patient.name.given.first()"},
]


def test_indexes_resource_roots_and_fallbacks_as_interpreted() -> None:
    extractor = Extractor(SearchRegistry.default(extra=CUSTOM))
    observation = {
        "resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
        "category": [{"coding": [{"system": "urn:c", "code": "one"}]},
                     {"coding": [{"system": "urn:c", "code": "two"}]}],
        "subject": {"reference": "Patient/p"}, "performer": [{"reference": "Practitioner/d"}, "not an object"],
    }
    patient = {"resourceType": "Patient", "id": "p", "name": [{"given": ["Ann", "Bea"]}, {"given": ["Cy"]}]}
    for resource in (observation, patient):
        assert _entries(extractor.extract(resource)) == _entries(interpreted(extractor, resource))
    entries = extractor.extract(observation)
    assert ("first-category", "urn:c", "one") in entries.token
    assert ("first-category", "urn:c", "two") not in entries.token
    assert ("also-performer", "Practitioner", "d", "", "") in entries.reference
    assert ("first-given", "ann", "Ann") in extractor.extract(patient).string


def test_a_failing_parameter_keeps_its_first_values_and_the_others_run(
    registry: SearchRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    extractor = Extractor(registry)
    plans = list(extractor.plans("Patient"))
    index = next(number for number, plan in enumerate(plans) if plan.key == "given")
    original = plans[index].branches[0]

    def convert(key: str, value: Any, out: IndexEntries) -> None:
        if value == "Bea":
            raise ValueError("a value no converter expected")
        original.convert(key, value, out)

    plans[index] = dataclasses.replace(plans[index], branches=(Branch(original.accessor, convert, True),))
    extractor._plans["Patient"] = tuple(plans)
    patient = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1970",
               "name": [{"family": "Ng", "given": ["Ann", "Bea", "Cy"]}]}
    with caplog.at_level(logging.WARNING, logger="fhirlead.search.extract"):
        entries = extractor.extract(patient)
        extractor.extract(patient)
    assert ("given", "ann", "Ann") in entries.string
    assert not [entry for entry in entries.string if entry[0] == "given" and entry[2] != "Ann"]
    assert ("gender", "", "female") in entries.token
    assert ("family", "ng", "Ng") in entries.string and entries.date
    failures = [record for record in caplog.records if "Patient.given" in record.getMessage()]
    assert len(failures) == 1 and "Bea" not in failures[0].getMessage()
