"""The base R4 invariants (fhirlead/validation/invariants.py): each rule on a resource that breaks it, with
its key and the FHIRPath location of the element at fault, and the same resource made valid.

Real published resources (../shared/data: Synthea bundles, the ATR and DEQM examples, the eCQM test
patients) must produce no error; skipped when that folder is absent."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from fhirlead import fhirjson
from fhirlead.definitions import constraints, resource_types
from fhirlead.validation.invariants import NATIVE, NOT_CHECKED, Invariants, compare_dates

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"


@pytest.fixture(scope="module")
def invariants() -> Invariants:
    return Invariants()


def found(invariants: Invariants, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, location, severity) of every issue."""
    issues = invariants.check(resource)
    for issue in issues:
        assert issue.code == "invariant"
        key = issue.diagnostics.split(":", 1)[0]
        assert issue.diagnostics.endswith(")") and f"({issue.expression[0]}" in issue.diagnostics
        assert key in issue.diagnostics and len(issue.diagnostics) > len(key) + 20  # the rule in words
    return [(issue.diagnostics.split(":", 1)[0], issue.expression[0], issue.severity) for issue in issues]


CODE = {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}


def observation(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": CODE, **elements}


def test_obs_6_data_absent_reason_with_a_value(invariants: Invariants) -> None:
    absent = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}]}
    bad = observation(valueString="37", dataAbsentReason=absent)
    assert found(invariants, bad) == [("obs-6", "Observation", "error")]
    assert found(invariants, observation(dataAbsentReason=absent)) == []
    assert found(invariants, observation(valueString="37")) == []


def test_obs_7_component_repeating_the_code_with_a_value(invariants: Invariants) -> None:
    bad = observation(valueString="x", component=[{"code": {"text": "other"}}, {"code": CODE, "valueString": "y"}])
    assert found(invariants, bad) == [("obs-7", "Observation", "error")]
    del bad["valueString"]
    assert found(invariants, bad) == []


def test_per_1_period_ending_before_it_starts(invariants: Invariants) -> None:
    bad = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "period": {"start": "2021-03-04T10:00:00+01:00", "end": "2021-03-04T09:30:00+01:00"}}
    assert found(invariants, bad) == [("per-1", "Encounter.period", "error")]
    bad["period"]["end"] = "2021-03-04T09:30:00Z"  # 10:30 in +01:00: after the start
    assert found(invariants, bad) == []
    nested = {"resourceType": "Patient",
              "name": [{"family": "A"}, {"family": "B", "period": {"start": "2020-02", "end": "2020-01"}}]}
    assert found(invariants, nested) == [("per-1", "Patient.name[1].period", "error")]
    nested["name"][1]["period"]["end"] = "2020"  # different precisions, same year: unknown, not a violation
    assert found(invariants, nested) == []


def test_compare_dates_follows_fhirpath_precision_rules() -> None:
    assert compare_dates("2020-01-01", "2020-01-02") == -1
    assert compare_dates("2021", "2020-12-31") == 1
    assert compare_dates("2020", "2020-05") is None
    assert compare_dates("2020-05-01T10:00:00Z", "2020-05-01T12:00:00+02:00") == 0
    assert compare_dates("2020-05-01T10:00:00.5Z", "2020-05-01T10:00:00Z") == 1
    assert compare_dates("2020-05-01T01:00:00+05:00", "2020-05-01") is None  # the same day, one finer
    assert compare_dates("2020-05-02T01:00:00+05:00", "2020-05-01") == 1


def test_qty_3_code_without_system(invariants: Invariants) -> None:
    bad = observation(valueQuantity={"value": 37.2, "unit": "Cel", "code": "Cel"})
    assert found(invariants, bad) == [("qty-3", "Observation.value.ofType(Quantity)", "error")]
    bad["valueQuantity"]["system"] = "http://unitsofmeasure.org"
    assert found(invariants, bad) == []


def test_quantity_rules_reach_components_and_datatype_profiles(invariants: Invariants) -> None:
    bad = observation(component=[
        {"code": {"text": "a"}, "valueString": "x"},
        {"code": {"text": "b"}, "valueQuantity": {"value": 1, "code": "mg"}},
    ], referenceRange=[{"low": {"value": 1, "comparator": "<", "system": "http://unitsofmeasure.org", "code": "mg"}}])
    assert sorted(found(invariants, bad)) == [
        ("qty-3", "Observation.component[1].value.ofType(Quantity)", "error"),
        ("sqty-1", "Observation.referenceRange[0].low", "error"),  # SimpleQuantity: no comparator
    ]


def test_dom_3_contained_resource_nobody_references(invariants: Invariants) -> None:
    organization = {"resourceType": "Organization", "id": "org1", "name": "Clinic"}
    bad = {"resourceType": "Patient", "contained": [organization]}
    assert found(invariants, bad) == [("dom-3", "Patient.contained[0]", "error")]
    assert found(invariants, {**bad, "managingOrganization": {"reference": "#org1"}}) == []
    # a contained resource may instead refer to its container
    back = {"resourceType": "Provenance", "id": "p", "target": [{"reference": "#"}], "recorded": "2020-01-01T00:00:00Z",
            "agent": [{"who": {"display": "x"}}]}
    assert found(invariants, {"resourceType": "Patient", "contained": [back]}) == []


def test_dom_3_never_prints(invariants: Invariants, capsys: pytest.CaptureFixture[str]) -> None:
    """R4's dom-3 holds a trace() call, which fhirpathpy prints to stdout unless given a callback."""
    organization = {"resourceType": "Organization", "id": "o", "name": "x"}
    invariants.check({"resourceType": "Patient", "contained": [organization]})
    structure_definition = fhirjson.loads(b'{"resourceType":"StructureDefinition","url":"http://x/sd","name":"X",'
                                          b'"status":"draft","kind":"logical","abstract":true,"type":"X",'
                                          b'"differential":{"element":[{"id":"X","path":"X"}]}}')
    invariants.check(structure_definition)  # sdf-9: children(), evaluated by fhirpathpy
    assert capsys.readouterr().out == ""


def test_dom_2_nested_contained(invariants: Invariants) -> None:
    inner = {"resourceType": "Organization", "id": "inner", "name": "Inner"}
    outer = {"resourceType": "Organization", "id": "outer", "name": "Outer", "contained": [inner],
             "partOf": {"reference": "#inner"}}
    bad = {"resourceType": "Patient", "contained": [outer], "managingOrganization": {"reference": "#outer"}}
    assert ("dom-2", "Patient.contained[0]", "error") in found(invariants, bad)
    del outer["contained"], outer["partOf"]
    assert found(invariants, bad) == []


def test_dom_4_contained_with_version_id(invariants: Invariants) -> None:
    organization = {"resourceType": "Organization", "id": "o", "name": "x", "meta": {"versionId": "3"}}
    bad = {"resourceType": "Patient", "contained": [organization], "managingOrganization": {"reference": "#o"}}
    assert found(invariants, bad) == [("dom-4", "Patient.contained[0]", "error")]
    restricted = {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
    organization["meta"] = {"security": [restricted]}
    assert found(invariants, bad) == [("dom-5", "Patient.contained[0]", "error")]
    organization["meta"] = {"profile": ["http://example.org/p"]}
    assert found(invariants, bad) == []


def test_ref_1_local_reference_without_contained_resource(invariants: Invariants) -> None:
    bad = {"resourceType": "Patient", "generalPractitioner": [{"reference": "Practitioner/1"}, {"reference": "#gp"}]}
    assert found(invariants, bad) == [("ref-1", "Patient.generalPractitioner[1]", "error")]
    bad["contained"] = [{"resourceType": "Practitioner", "id": "gp"}]
    assert found(invariants, bad) == []


def test_ext_1_extension_with_value_and_extensions(invariants: Invariants) -> None:
    both = {"url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}
    bad = {"resourceType": "Patient", "extension": [{"url": "http://example.org/ok", "valueBoolean": True}, both]}
    assert found(invariants, bad) == [("ext-1", "Patient.extension[1]", "error")]
    del both["valueString"]
    assert found(invariants, bad) == []
    # on a primitive's extensions, and with neither
    bad = {"resourceType": "Patient", "birthDate": "1970", "_birthDate": {"extension": [{"url": "http://example.org/e"}]}}
    assert found(invariants, bad) == [("ext-1", "Patient.birthDate.extension[0]", "error")]


def test_complex_extension_values_are_checked(invariants: Invariants) -> None:
    bad = {"resourceType": "Patient", "extension": [
        {"url": "http://example.org/p", "valuePeriod": {"start": "2021", "end": "2020"}}]}
    assert found(invariants, bad) == [("per-1", "Patient.extension[0].value.ofType(Period)", "error")]


def test_bdl_7_repeated_full_url(invariants: Invariants) -> None:
    def entry(full_url: str, version: str | None = None) -> dict[str, Any]:
        patient: dict[str, Any] = {"resourceType": "Patient"}
        if version:
            patient["meta"] = {"versionId": version}
        return {"fullUrl": full_url, "resource": patient}

    bad = {"resourceType": "Bundle", "type": "collection",
           "entry": [entry("urn:uuid:1"), entry("urn:uuid:2"), entry("urn:uuid:1")]}
    assert found(invariants, bad) == [("bdl-7", "Bundle.entry[2]", "error")]
    bad["entry"][2] = entry("urn:uuid:3")
    assert found(invariants, bad) == []
    versions = {"resourceType": "Bundle", "type": "collection",
                "entry": [entry("urn:uuid:1", "1"), entry("urn:uuid:1", "2")]}
    assert found(invariants, versions) == []


def test_bundle_entries_and_their_resources(invariants: Invariants) -> None:
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Patient", "contact": [{"gender": "male"}]}},
    ]}
    assert found(invariants, bad) == [
        ("bdl-3", "Bundle.entry[1]", "error"),  # a transaction entry without a request
        ("pat-1", "Bundle.entry[1].resource.contact[0]", "error"),
    ]


def test_pat_1_contact_without_details(invariants: Invariants) -> None:
    bad = {"resourceType": "Patient", "contact": [{"name": {"family": "Doe"}}, {"gender": "female"}]}
    assert found(invariants, bad) == [("pat-1", "Patient.contact[1]", "error")]
    bad["contact"][1]["telecom"] = [{"system": "phone", "value": "+1 555 0100"}]
    assert found(invariants, bad) == []


def test_contained_resources_are_checked_as_resources(invariants: Invariants) -> None:
    organization = {"resourceType": "Organization", "id": "o"}  # org-1: no name nor identifier
    bad = {"resourceType": "Patient", "contained": [organization], "managingOrganization": {"reference": "#o"}}
    assert found(invariants, bad) == [("org-1", "Patient.contained[0]", "error")]


def test_choice_type_tests(invariants: Invariants) -> None:
    question = {"linkId": "1", "type": "string", "enableBehavior": "all", "enableWhen": [
        {"question": "0", "operator": "exists", "answerBoolean": True},
        {"question": "0", "operator": "exists", "answerString": "yes"},
    ]}
    bad = {"resourceType": "Questionnaire", "status": "draft", "item": [question]}
    assert found(invariants, bad) == [("que-7", "Questionnaire.item[0].enableWhen[1]", "error")]


def test_warnings_and_best_practice() -> None:
    value_set = {"resourceType": "ValueSet", "status": "draft", "name": "not an identifier"}
    assert found(Invariants(), value_set) == [("vsd-0", "ValueSet", "warning")]
    value_set["name"] = "GoodName"
    assert found(Invariants(), value_set) == []
    patient = {"resourceType": "Patient"}
    assert found(Invariants(), patient) == []  # dom-6 (no narrative) is best practice: off by default
    assert found(Invariants(best_practice=True), patient) == [("dom-6", "Patient", "warning")]


def test_the_resource_is_not_changed(invariants: Invariants) -> None:
    resource = observation(valueQuantity={"value": 1, "code": "mg"}, contained=[{"resourceType": "Patient", "id": "p"}],
                           subject={"reference": "#p"}, extension=[{"url": "u", "valuePeriod": {"start": "2020"}}])
    before = copy.deepcopy(resource)
    invariants.check(resource)
    assert resource == before


def test_keys_named_in_the_module_exist() -> None:
    keys = {c["key"] for by_path in constraints()["types"].values() for found in by_path.values() for c in found}
    assert set(NATIVE) <= keys and set(NOT_CHECKED) <= keys


def test_every_expression_compiles_but_the_documented_ones() -> None:
    """fhirpathpy (~30 us a call) is left for expressions using children(), replaceMatches() and con-3's
    CodeableConcept-to-string comparison; everything else runs by hand or as compiled Python."""
    how = Invariants(best_practice=True).compile_all()
    assert {key for key, way in how.items() if way == "fhirpathpy"} == {"con-3", "sdf-8a", "sdf-9"}
    assert {key for key, way in how.items() if way == "by hand"} == set(NATIVE)
    every = {c["key"] for by_path in constraints()["types"].values() for found in by_path.values() for c in found}
    assert set(how) == every - set(NOT_CHECKED)


def _published() -> list[Path]:
    folders = ("synthea", "atr-2.1.0/examples", "deqm-5.0.0", "ecqm-2025/CMS165FHIRControllingHighBloodPressure")
    return sorted(path for folder in folders for path in (SHARED / folder).rglob("*.json")) if SHARED.is_dir() else []


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (Synthea, ATR, DEQM and eCQM resources) is absent")
def test_published_resources_have_no_errors(invariants: Invariants) -> None:
    checked = 0
    for path in _published():
        resource = fhirjson.loads(path.read_bytes())
        if not isinstance(resource, dict) or resource.get("resourceType") not in resource_types():
            continue
        errors = [issue for issue in invariants.check(resource) if issue.severity == "error"]
        assert errors == [], path
        checked += 1
    assert checked > 100


@pytest.mark.parametrize("node", [
    {"value": 6.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    {"value": 6.1, "system": "urn:other"},
    {"value": 7, "comparator": "<"},
])
@pytest.mark.parametrize("expression", [
    # US Core 6.1.0 us-core-3 / us-core-4, declared on Observation.value[x] but written from the resource:
    # on the value itself `value.ofType(...)` is always empty, so both always hold (fhirpathpy agrees).
    "value.ofType(Quantity).system.empty() or value.ofType(Quantity).system = 'http://unitsofmeasure.org'",
    "value.ofType(CodeableConcept).coding.system.empty() or "
    "value.ofType(CodeableConcept).coding.system = 'http://snomed.info/sct'",
    "value.ofType(Quantity).system != 'x'",
])
def test_a_cast_that_can_never_match_compiles_and_agrees_with_fhirpathpy(expression: str, node: dict[str, Any]) -> None:
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    from fhirlead.validation.fhirpath_compiler import Env, compile_expression

    static = ("pos", "Quantity", "")
    resource = {"resourceType": "Observation", "valueQuantity": node}
    compiled = compile_expression(expression, ("res", "Observation"), static)  # no Unsupported: not fhirpathpy
    env = Env(resource=resource, root=resource)
    env.context = node
    expected = evaluate(node, expression, {}, models["r4"])
    assert compiled([node], env) == expected
