"""Write-time extraction: registry coverage, compiled accessors against fhirpathpy, entry shapes, speed."""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import orjson
import pytest
from fhirpathpy import compile as fhirpath_compile
from fhirpathpy.models import models

from fhirlead.search.extract import Extractor, evaluated_by_fhirpathpy
from fhirlead.search.fhirpath import Unsupported, compile_expression
from fhirlead.search.registry import SearchRegistry
from fhirlead.search.types.date import parse_range
from fhirlead.search.types.quantity import CANONICAL
from fhirlead.storage.sqlite.index import param_id


def _json(value: Any) -> bytes:
    return orjson.dumps(
        value, default=lambda v: float(v) if isinstance(v, Decimal) else str(v), option=orjson.OPT_SORT_KEYS
    )


def test_every_r4_parameter_is_registered_per_type(registry: SearchRegistry) -> None:
    observation = {p.code for p in registry.parameters_for("Observation")}
    assert {
        "code",
        "subject",
        "patient",
        "date",
        "value-quantity",
        "code-value-quantity",
        "component-code-value-quantity",
        "_id",
        "_lastUpdated",
        "_tag",
        "_profile",
        "_security",
        "_source",
    } <= observation
    assert registry.get("Patient", "name").type == "string"
    assert registry.get("Encounter", "_tag").expression == "Resource.meta.tag"
    assert registry.targets("Observation", registry.get("Observation", "subject")) == (
        "Device",
        "Group",
        "Location",
        "Patient",
    )


def test_all_but_a_handful_of_expressions_compile(registry: SearchRegistry) -> None:
    typed, slow = [], []
    for type_ in registry.types():
        for param in registry.parameters_for(type_):
            if param.indexed:
                try:
                    compile_expression(param.expression, type_)
                except Unsupported:
                    typed.append(f"{type_}.{param.code}")
                    if evaluated_by_fhirpathpy(param.expression, type_):
                        slow.append(f"{type_}.{param.code}")
    # the Lead's navigator filters participants by a coding: the validator's FHIRPath compiler takes it
    assert sorted(typed) == ["CareTeam.navigator", "Patient.deceased"]
    assert slow == ["Patient.deceased"]  # `exists() and ... != false`: fhirpathpy evaluates it


def test_index_keys_are_distinct_integers(registry: SearchRegistry) -> None:
    keys = set()
    for type_ in registry.types():
        for param in registry.parameters_for(type_):
            for key in (
                param.code,
                f"{param.code}:text",
                f"{param.code}:of-type",
                f"{param.code}:identifier",
                f"{param.code}#0",
                f"{param.code}#1",
                f"{param.code}#2",
            ):
                keys.add((type_, key))
    assert len({param_id(type_, key) for type_, key in keys}) == len(keys)
    assert all(0 < param_id(t, k) < 2**48 for t, k in list(keys)[:100])


def test_compiled_accessors_reach_what_fhirpathpy_reaches(
    registry: SearchRegistry, examples: list[dict[str, Any]]
) -> None:
    """The compiler's accessors and fhirpathpy agree on every example, for every parameter whose
    expression fhirpathpy can evaluate (it lacks resolve(), so those are left to other tests)."""
    compared: Counter[bool] = Counter()
    compiled: dict[str, Any] = {}
    for resource in examples:
        type_ = resource["resourceType"]
        for param in registry.parameters_for(type_):
            if not param.indexed or "resolve()" in param.expression or param.type == "composite":
                continue
            try:
                accessors = compile_expression(param.expression, type_)
            except Unsupported:
                continue
            # `|` is a set union in FHIRPath; extraction de-duplicates entries the same way
            ours = sorted({_json(v) for accessor in accessors for v in accessor([resource], resource)})
            try:
                expression = re.sub(r"\b(Domain)?Resource\.", f"{type_}.", param.expression)  # no subtyping
                if expression not in compiled:
                    compiled[expression] = fhirpath_compile(expression, models["r4"])
                theirs = sorted({_json(v) for v in compiled[expression](resource)})
            except Exception:
                continue  # there) and lacks hasExtension(); those are covered by the search tests
            assert ours == theirs, f"{type_}.{param.code} on {resource.get('id')}"
            compared[bool(ours)] += 1
    assert compared[True] > 1500  # parameters with values, across the 728 examples


def test_skipping_absent_elements_changes_no_entry(
    registry: SearchRegistry, extractor: Extractor, examples: list[dict[str, Any]]
) -> None:
    """Plans skip a parameter when none of the elements its paths start from is present; without
    that shortcut, every example gives exactly the same entries."""
    exhaustive = Extractor(registry)
    skipped = 0
    for resource in examples:
        type_ = resource["resourceType"]
        plans = extractor.plans(type_)
        exhaustive._plans[type_] = tuple(dataclasses.replace(plan, fields=None) for plan in plans)
        skipped += sum(plan.fields is not None and plan.fields.isdisjoint(resource) for plan in plans)
        assert extractor.extract(resource) == exhaustive.extract(resource), f"{type_}/{resource.get('id')}"
    assert skipped > 5000


def test_observation_entries(extractor: Extractor) -> None:
    entries = extractor.extract(
        {
            "resourceType": "Observation",
            "id": "bp",
            "status": "final",
            "code": {
                "coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure"}],
                "text": "BP",
            },
            "subject": {"reference": "Patient/p1"},
            "effectivePeriod": {"start": "2020-03-01T10:00:00+01:00"},
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                },
            ],
        }
    )
    assert ("code", "http://loinc.org", "85354-9") in entries.token
    assert ("code:text", "bp", "BP") in entries.string and (
        "code:text",
        "blood pressure",
        "Blood pressure",
    ) in entries.string
    assert ("subject", "Patient", "p1", "", "") in entries.reference
    assert ("patient", "Patient", "p1", "", "") in entries.reference
    low, _ = parse_range("2020-03-01T09:00:00Z")
    assert ("date", low, 2**62) in entries.date  # open Period end: "forever"
    pairs = [
        (c[0][1][1], c[1][1][4])
        for key, c in entries.composite
        if key == "component-code-value-quantity" and c[1][1][0] != CANONICAL
    ]
    assert sorted(pairs) == [("8462-4", 80.0), ("8480-6", 120.0)]  # components keep their repetition


def test_patient_entries(extractor: Extractor) -> None:
    entries = extractor.extract(
        {
            "resourceType": "Patient",
            "id": "x",
            "active": True,
            "gender": "female",
            "birthDate": "1961-04",
            "name": [{"family": "Müller", "given": ["Zoë", "Anne"]}],
            "identifier": [
                {
                    "system": "urn:mrn",
                    "value": "42",
                    "type": {
                        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}],
                        "text": "Medical record",
                    },
                }
            ],
            "telecom": [{"system": "email", "value": "zoe@example.org"}],
            "address": [{"line": ["1 Rue"], "city": "Genève", "postalCode": "1201"}],
            "managingOrganization": {"identifier": {"system": "urn:org", "value": "ACO-1"}},
            "meta": {"tag": [{"system": "urn:tags", "code": "vip"}], "profile": ["http://example.org/P"]},
        }
    )
    assert ("name", "muller", "Müller") in entries.string
    assert ("name", "zoe anne muller", "Zoë Anne Müller") in entries.string
    assert ("address-city", "geneve", "Genève") in entries.string
    assert ("active", "", "true") in entries.token and ("gender", "", "female") in entries.token
    assert ("identifier", "urn:mrn", "42") in entries.token
    assert ("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203", "MR|42") in entries.token
    assert ("identifier:text", "medical record", "Medical record") in entries.string
    assert ("email", "email", "zoe@example.org") in entries.token
    assert ("organization:identifier", "urn:org", "ACO-1") in entries.token
    assert ("_tag", "urn:tags", "vip") in entries.token
    assert ("_profile", "", "", "http://example.org/P", "") in entries.reference or (
        "_profile",
        "http://example.org/P",
    ) in entries.uri
    low, high = parse_range("1961-04")
    assert ("birthdate", low, high) in entries.date


def test_custom_search_parameter_needs_no_code() -> None:
    custom = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/SearchParameter/patient-race",
        "code": "race",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.extension('http://example.org/race').value",
    }
    extractor = Extractor(SearchRegistry.default(extra=[custom]))
    entries = extractor.extract(
        {
            "resourceType": "Patient",
            "id": "r",
            "extension": [
                {"url": "http://example.org/race", "valueCoding": {"system": "urn:race", "code": "2106-3"}}
            ],
        }
    )
    assert ("race", "urn:race", "2106-3") in entries.token


@pytest.mark.parametrize("type_", ["Observation", "Patient"])
def test_extraction_is_cheap(extractor: Extractor, examples: list[dict[str, Any]], type_: str) -> None:
    sample = [r for r in examples if r["resourceType"] == type_]
    extractor.plans(type_)
    started = time.perf_counter()
    rounds = 20
    for _ in range(rounds):
        for resource in sample:
            extractor.extract(resource)
    per_resource_ms = (time.perf_counter() - started) * 1000 / (rounds * len(sample))
    assert per_resource_ms < 0.5, f"{type_}: {per_resource_ms:.3f} ms per resource"
