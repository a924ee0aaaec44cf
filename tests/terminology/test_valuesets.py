"""ValueSet membership for binding checks (https://hl7.org/fhir/R4/valueset.html#compositions) over the R4
core terminology, US Core 6.1.0 (profiles/us-core) and resources added at run time."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirlead.terminology import Terminology, default_terminology, profile_resources

CORE_VS = "http://hl7.org/fhir/ValueSet/"
THO_VS = "http://terminology.hl7.org/ValueSet/"
THO_CS = "http://terminology.hl7.org/CodeSystem/"
US_CORE_VS = "http://hl7.org/fhir/us/core/ValueSet/"
US_CORE_CS = "http://hl7.org/fhir/us/core/CodeSystem/"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
GENDER = "http://hl7.org/fhir/administrative-gender"


@pytest.fixture(scope="module")
def terminology() -> Terminology:
    return default_terminology()


# R4 core


def test_administrative_gender_versioned_canonical_as_core_bindings_write_it(terminology: Terminology) -> None:
    vs = CORE_VS + "administrative-gender|4.0.1"
    assert terminology.knows(vs)
    assert terminology.display_name(vs) == "AdministrativeGender"
    assert terminology.contains(vs, GENDER, "female") is True
    assert terminology.contains(vs, GENDER, "Female") is False  # the code system is case-sensitive
    assert terminology.contains(vs, GENDER, "f") is False
    assert terminology.contains(vs, LOINC, "female") is False
    # a version other than the one held is ignored: only one is held
    assert terminology.contains(CORE_VS + "administrative-gender|3.0.2", GENDER, "male") is True


def test_coding_without_system(terminology: Terminology) -> None:
    # fully enumerable: a Coding without system is surely not a member
    assert terminology.contains(CORE_VS + "administrative-gender", None, "male") is False
    assert terminology.contains(US_CORE_VS + "us-core-sexual-orientation", None, "38628009") is False
    # not fully enumerable (LOINC filter): cannot say
    assert terminology.contains(US_CORE_VS + "us-core-laboratory-test-codes", None, "4548-4") is None


def test_whole_code_system_includes_nested_concepts(terminology: Terminology) -> None:
    vs = CORE_VS + "allergyintolerance-clinical"
    system = THO_CS + "allergyintolerance-clinical"
    assert terminology.contains(vs, system, "active") is True
    assert terminology.contains(vs, system, "resolved") is True  # nested under "inactive"
    assert terminology.contains(vs, system, "relapse") is False
    assert terminology.contains(vs, THO_CS + "condition-clinical", "active") is False  # right code, wrong system


def test_observation_category_and_code_elements(terminology: Terminology) -> None:
    vs = CORE_VS + "observation-category"
    assert terminology.contains(vs, THO_CS + "observation-category", "vital-signs") is True
    assert terminology.contains(vs, THO_CS + "observation-category", "vitals") is False
    # elements of type code: the system is implied
    assert terminology.contains_code(CORE_VS + "observation-status", "final") is True
    assert terminology.contains_code(CORE_VS + "observation-status", "done") is False


def test_v3_is_a_filter_with_exclude(terminology: Terminology) -> None:
    vs = THO_VS + "v3-ActEncounterCode"
    act = THO_CS + "v3-ActCode"
    assert terminology.contains(vs, act, "AMB") is True
    assert terminology.contains(vs, act, "ACUTE") is True  # a grandchild: IMP > ACUTE
    assert terminology.contains(vs, act, "_ActEncounterCode") is False  # the filter's root, excluded
    assert terminology.contains(vs, act, "CASH") is False  # elsewhere in ActCode
    assert terminology.contains(vs, act, "amb") is False


def test_v3_hierarchy_through_the_child_property(terminology: Terminology) -> None:
    # TFS is nested under _ActBillingArrangementCode; it is an _ActPharmacySupplyType only through the
    # `child` properties of FF (child FFS) and TF (child TFS).
    vs = THO_VS + "v3-ActPharmacySupplyType"
    act = THO_CS + "v3-ActCode"
    assert terminology.contains(vs, act, "TFS") is True
    assert terminology.contains(vs, act, "FFS") is True
    assert terminology.contains(vs, act, "TF") is True
    assert terminology.contains(vs, act, "AMB") is False


def test_is_not_a_and_unspecified_case(terminology: Terminology) -> None:
    vs = CORE_VS + "patient-contactrelationship"
    system = THO_CS + "v2-0131"
    assert terminology.contains(vs, system, "C") is True
    assert terminology.contains(vs, system, "O") is False  # is-not-a O
    assert terminology.contains(vs, system, "X") is False
    # v2-0131 does not say whether it is case-sensitive: a case variant of a member cannot be decided
    assert terminology.contains(vs, system, "c") is None
    assert terminology.contains(vs, system, "o") is False


def test_concepts_filter_and_whole_system_minus_exclude(terminology: Terminology) -> None:
    vs = CORE_VS + "encounter-participant-type"
    participation = THO_CS + "v3-ParticipationType"
    assert terminology.contains(vs, participation, "ADM") is True  # is-a _ParticipationAncillary
    assert terminology.contains(vs, participation, "_ParticipationAncillary") is False  # excluded
    assert terminology.contains(vs, participation, "PPRF") is True  # listed
    assert terminology.contains(vs, participation, "AUT") is False
    assert terminology.contains(vs, THO_CS + "participant-type", "translator") is True  # whole system


# US Core 6.1.0 (profiles/us-core)


def test_us_core_code_system_plus_core_code_system(terminology: Terminology) -> None:
    vs = US_CORE_VS + "us-core-simple-observation-category"
    assert terminology.display_name(vs) == "US Core Simple Observation Category"
    assert terminology.contains(vs, US_CORE_CS + "us-core-category", "sdoh") is True
    assert terminology.contains(vs, THO_CS + "observation-category", "laboratory") is True
    assert terminology.contains(vs, US_CORE_CS + "us-core-category", "laboratory") is False
    assert terminology.contains(vs, THO_CS + "observation-category", "sdoh") is False


def test_us_core_import_of_a_core_value_set(terminology: Terminology) -> None:
    vs = US_CORE_VS + "us-core-vital-signs"
    assert terminology.contains(vs, LOINC, "8867-4") is True  # heart rate, from the core VitalSigns
    assert terminology.contains(vs, LOINC, "59408-5") is True  # pulse oximetry, listed by US Core itself
    assert terminology.contains(vs, LOINC, "4548-4") is False
    assert terminology.contains(vs, SNOMED, "8867-4") is False


def test_us_core_all_of_loinc_or_a_loinc_filter_cannot_be_decided(terminology: Terminology) -> None:
    assert terminology.contains(US_CORE_VS + "us-core-laboratory-test-codes", LOINC, "4548-4") is None
    assert terminology.contains(US_CORE_VS + "us-core-laboratory-test-codes", SNOMED, "43396009") is False
    procedure = US_CORE_VS + "us-core-procedure-code"
    assert terminology.contains(procedure, LOINC, "4548-4") is None  # all of LOINC
    assert terminology.contains(procedure, "http://example.org/codes", "x") is False


def test_us_core_snomed_filters(terminology: Terminology) -> None:
    vs = US_CORE_VS + "us-core-condition-code"
    assert terminology.contains(vs, SNOMED, "404684003") is True  # the root of an is-a filter
    assert terminology.contains(vs, SNOMED, "44054006") is None  # SNOMED CT is not held
    assert terminology.contains(vs, "http://hl7.org/fhir/sid/icd-10-cm", "E11.9") is None
    assert terminology.contains(vs, LOINC, "4548-4") is False


def test_us_core_imports_not_held(terminology: Terminology) -> None:
    vs = US_CORE_VS + "detailed-race"
    assert terminology.knows(vs)
    assert terminology.contains(vs, "urn:oid:2.16.840.1.113883.6.238", "2106-3") is None
    assert terminology.contains(vs, LOINC, "4548-4") is None  # an unheld import may hold anything


def test_unknown_value_set(terminology: Terminology) -> None:
    canonical = "http://example.org/fhir/ValueSet/nothing|1.0"
    assert terminology.knows(canonical) is False
    assert terminology.contains(canonical, GENDER, "male") is None
    assert terminology.contains_code(canonical, "male") is None
    assert terminology.display_name(canonical) == canonical


# Resources added at run time


def code_system(url: str, concepts: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "url": url,
        "status": "active",
        "content": "complete",
        "concept": concepts,
        "caseSensitive": True,
        **fields,
    }


def value_set(url: str, *include: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "url": url, "status": "active", "compose": {"include": list(include)}, **fields}


CS = "http://example.org/CodeSystem/colours"
VS = "http://example.org/ValueSet/colours"
COLOURS = [
    {
        "code": "red",
        "property": [{"code": "warm", "valueBoolean": True}, {"code": "rgb", "valueString": "f00"}],
        "concept": [{"code": "crimson", "property": [{"code": "warm", "valueBoolean": True}]}, {"code": "scarlet"}],
    },
    {"code": "blue", "property": [{"code": "warm", "valueBoolean": False}, {"code": "rgb", "valueString": "00f"}]},
    {"code": "navy", "property": [{"code": "subsumedBy", "valueCode": "blue"}]},
    {"code": "green"},
]
PROPERTIES = [
    {"code": "warm", "type": "boolean"},
    {"code": "rgb", "type": "string"},
    {"code": "subsumedBy", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"},
]


def colours() -> Terminology:
    return Terminology([code_system(CS, COLOURS, property=PROPERTIES), value_set(VS, {"system": CS})])


def test_add_then_replace_code_system_and_value_set() -> None:
    terminology = colours()
    assert terminology.contains(VS, CS, "navy") is True
    assert terminology.contains(VS, CS, "purple") is False
    # a new version of the code system replaces the old one and the cached membership
    assert terminology.add(code_system(CS, [*COLOURS, {"code": "purple"}], version="2"))
    assert terminology.contains(VS, CS, "purple") is True
    # a new version of the value set replaces the old one
    assert terminology.add(value_set(VS, {"system": CS, "concept": [{"code": "green"}]}, title="Greens"))
    assert terminology.contains(VS, CS, "purple") is False
    assert terminology.contains(VS, CS, "green") is True
    assert terminology.display_name(VS + "|2") == "Greens"


def test_add_refuses_other_types_and_ignores_resources_without_url() -> None:
    terminology = Terminology()
    with pytest.raises(ValueError):
        terminology.add({"resourceType": "Patient"})
    assert terminology.add({"resourceType": "ValueSet", "status": "draft"}) is False
    supplement = code_system("http://example.org/s", [], content="supplement", supplements=CS)
    assert terminology.add(supplement) is False


@pytest.mark.parametrize(
    ("filter_", "members", "non_members"),
    [
        ({"property": "concept", "op": "is-a", "value": "red"}, {"red", "crimson", "scarlet"}, {"blue", "navy"}),
        ({"property": "concept", "op": "descendent-of", "value": "red"}, {"crimson", "scarlet"}, {"red"}),
        ({"property": "concept", "op": "is-not-a", "value": "red"}, {"blue", "navy", "green"}, {"red", "crimson"}),
        ({"property": "concept", "op": "is-a", "value": "blue"}, {"blue", "navy"}, {"red"}),  # subsumedBy
        ({"property": "concept", "op": "in", "value": "red,green,pink"}, {"red", "green"}, {"pink", "blue"}),
        ({"property": "concept", "op": "=", "value": "pink"}, set(), {"pink"}),
        ({"property": "warm", "op": "=", "value": "true"}, {"red", "crimson"}, {"blue", "scarlet"}),
        ({"property": "rgb", "op": "in", "value": "00f, 0f0"}, {"blue"}, {"red"}),
        ({"property": "rgb", "op": "regex", "value": "f.*"}, {"red"}, {"blue"}),
        ({"property": "rgb", "op": "exists", "value": "false"}, {"navy", "green", "crimson"}, {"red", "blue"}),
        ({"property": "code", "op": "regex", "value": "[a-z]{3,4}"}, {"red", "blue", "navy"}, {"green"}),
        ({"property": "parent", "op": "=", "value": "red"}, {"crimson", "scarlet"}, {"red", "navy"}),
    ],
)
def test_filters_over_a_held_code_system(filter_: dict[str, str], members: set[str], non_members: set[str]) -> None:
    terminology = colours()
    terminology.add(value_set(VS, {"system": CS, "filter": [filter_]}))
    assert {code for code in members if terminology.contains(VS, CS, code) is True} == members
    assert {code for code in non_members if terminology.contains(VS, CS, code) is False} == non_members


def test_filters_that_cannot_be_evaluated() -> None:
    terminology = colours()
    undeclared = {"property": "shade", "op": "=", "value": "dark"}
    terminology.add(value_set(VS, {"system": CS, "filter": [undeclared]}))
    assert terminology.contains(VS, CS, "red") is None
    # several filters in one include must all hold
    warm_red = [{"property": "warm", "op": "=", "value": "true"}, {"property": "concept", "op": "is-a", "value": "red"}]
    terminology.add(value_set(VS, {"system": CS, "filter": warm_red}))
    assert terminology.contains(VS, CS, "crimson") is True
    assert terminology.contains(VS, CS, "scarlet") is False


def test_case_insensitive_code_system() -> None:
    terminology = Terminology(
        [
            code_system(CS, [{"code": "Red", "concept": [{"code": "Crimson"}]}], caseSensitive=False),
            value_set(VS, {"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "RED"}]}),
            value_set(VS + "-listed", {"system": CS, "concept": [{"code": "CRIMSON"}]}),
        ]
    )
    assert terminology.contains(VS, CS, "crimson") is True
    assert terminology.contains(VS, CS, "RED") is True
    assert terminology.contains(VS + "-listed", CS, "Crimson") is True
    assert terminology.contains(VS + "-listed", CS, "red") is False


def test_code_system_not_complete() -> None:
    terminology = Terminology(
        [
            code_system(CS, [{"code": "red", "concept": [{"code": "crimson"}]}], content="fragment"),
            value_set(VS, {"system": CS}),
            value_set(VS + "-reds", {"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "red"}]}),
        ]
    )
    assert terminology.contains(VS, CS, "crimson") is True
    assert terminology.contains(VS, CS, "teal") is None
    assert terminology.contains(VS + "-reds", CS, "crimson") is True
    assert terminology.contains(VS + "-reds", CS, "vermilion") is None
    assert terminology.contains(VS, None, "red") is None


def test_value_set_imports_intersect_within_one_include_and_unite_across() -> None:
    a, b = "http://example.org/ValueSet/a", "http://example.org/ValueSet/b"
    terminology = colours()
    terminology.add(value_set(a, {"system": CS, "concept": [{"code": "red"}, {"code": "blue"}]}))
    terminology.add(value_set(b, {"system": CS, "concept": [{"code": "blue"}, {"code": "green"}]}))
    terminology.add(value_set(VS + "-both", {"valueSet": [a, b]}))
    terminology.add(value_set(VS + "-either", {"valueSet": [a]}, {"valueSet": [b + "|1.0"]}))
    terminology.add(
        value_set(
            VS + "-blue-of-a",
            {"system": CS, "filter": [{"property": "concept", "op": "is-a", "value": "blue"}], "valueSet": [a]},
        )
    )
    assert terminology.contains(VS + "-both", CS, "blue") is True
    assert terminology.contains(VS + "-both", CS, "red") is False
    assert terminology.contains(VS + "-either", CS, "red") is True
    assert terminology.contains(VS + "-either", CS, "green") is True
    assert terminology.contains(VS + "-either", CS, "navy") is False
    assert terminology.contains(VS + "-blue-of-a", CS, "blue") is True
    assert terminology.contains(VS + "-blue-of-a", CS, "navy") is False


def test_exclude_of_a_value_set_not_held_leaves_members_undecided() -> None:
    terminology = colours()
    terminology.add(
        {
            **value_set(VS + "-x", {"system": CS}),
            "compose": {
                "include": [{"system": CS}],
                "exclude": [{"valueSet": ["http://example.org/ValueSet/unknown"]}],
            },
        }
    )
    assert terminology.contains(VS + "-x", CS, "red") is None
    assert terminology.contains(VS + "-x", CS, "pink") is False


def test_import_cycle_terminates() -> None:
    a, b = "http://example.org/ValueSet/a", "http://example.org/ValueSet/b"
    terminology = colours()
    terminology.add(value_set(a, {"system": CS, "concept": [{"code": "red"}]}, {"valueSet": [b]}))
    terminology.add(value_set(b, {"system": CS, "concept": [{"code": "blue"}]}, {"valueSet": [a]}))
    assert terminology.contains(a, CS, "red") is True
    assert terminology.contains(a, CS, "blue") is True
    assert terminology.contains(b, CS, "red") is True  # whichever is asked first
    assert terminology.contains(b, CS, "blue") is True
    assert terminology.contains(a, CS, "green") is None  # what the cycle adds cannot be decided
    assert terminology.contains(b, CS, "green") is None


def test_expansion_without_compose() -> None:
    expansion = {
        "contains": [
            {"system": CS, "code": "warm", "abstract": True, "contains": [{"system": CS, "code": "red"}]},
            {"system": LOINC, "code": "4548-4"},
        ]
    }
    terminology = Terminology([{"resourceType": "ValueSet", "url": VS, "expansion": expansion}])
    assert terminology.contains(VS, CS, "red") is True  # nested
    assert terminology.contains(VS, CS, "warm") is False  # abstract: not selectable
    assert terminology.contains(VS, LOINC, "4548-4") is True
    assert terminology.contains(VS, LOINC, "2345-7") is False
    paged = Terminology([{"resourceType": "ValueSet", "url": VS, "expansion": {**expansion, "total": 40}}])
    assert paged.contains(VS, LOINC, "4548-4") is True
    assert paged.contains(VS, LOINC, "2345-7") is None


def test_implicit_value_set_of_a_code_system() -> None:
    terminology = Terminology([code_system(CS, COLOURS, valueSet=VS + "-all", title="Colours")])
    assert terminology.knows(VS + "-all")
    assert terminology.display_name(VS + "-all") == "Colours"
    assert terminology.contains(VS + "-all", CS, "crimson") is True
    assert terminology.contains(VS + "-all", CS, "pink") is False


def test_concurrent_lookups_while_adding() -> None:
    terminology = colours()
    answers: list[bool | None] = []
    errors: list[BaseException] = []

    def look() -> None:
        try:
            for _ in range(2000):
                answers.append(terminology.contains(VS, CS, "red"))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=look) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(50):
        terminology.add(code_system(CS, COLOURS, property=PROPERTIES))
    for thread in threads:
        thread.join()
    assert not errors
    assert set(answers) == {True}


# The default instance and its sources


def test_profile_resources_reads_bundles_and_skips_examples(tmp_path: Path) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "ig" / "examples").mkdir(parents=True)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": value_set(VS, {"system": CS})}]}
    (tmp_path / "ig" / "bundle.json").write_bytes(orjson.dumps(bundle))
    (tmp_path / "ig" / "CodeSystem-colours.json").write_bytes(orjson.dumps(code_system(CS, COLOURS)))
    (tmp_path / "examples" / "ValueSet-x.json").write_bytes(orjson.dumps(value_set(VS + "-x", {"system": CS})))
    (tmp_path / "ig" / "examples" / "ValueSet-y.json").write_bytes(orjson.dumps(value_set(VS + "-y", {"system": CS})))
    (tmp_path / "ig" / "broken.json").write_bytes(b'{"resourceType": "ValueSet", ')
    found = sorted(resource["url"] for resource in profile_resources(tmp_path))
    assert found == [CS, VS]


def test_default_terminology_holds_core_and_profiles(terminology: Terminology) -> None:
    assert terminology is default_terminology()
    assert terminology.knows(THO_VS + "v3-ActEncounterCode")
    assert terminology.knows("http://hl7.org/fhir/us/davinci-atr/ValueSet/atr-changetype")
    assert terminology.contains(
        "http://hl7.org/fhir/us/davinci-atr/ValueSet/atr-changetype",
        "http://hl7.org/fhir/us/davinci-atr/CodeSystem/atr-changetype",
        "nochange",
    )


def test_lookup_after_warm_up_is_fast(terminology: Terminology) -> None:
    vs = US_CORE_VS + "us-core-simple-observation-category"
    system = THO_CS + "observation-category"
    assert terminology.contains(vs, system, "laboratory") is True
    rounds = 100_000
    start = time.perf_counter()
    for _ in range(rounds):
        terminology.contains(vs, system, "laboratory")
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 10e-6, f"{per_call * 1e6:.2f} µs per lookup"
