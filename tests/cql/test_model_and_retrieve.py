"""The FHIR data model (typed access to JSON, choice types, primitives) and data retrieval
(profiles, code and value set filters, the DataSource protocol)."""

from __future__ import annotations

from decimal import Decimal

from fhirlead.cql.clinical import Code, Concept
from fhirlead.cql.datetime import Date, DateTime
from fhirlead.cql.model import Node, get, is_fhir_type, primitive_value
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.retrieve import InMemoryDataSource, RetrieveRequest
from fhirlead.cql.terminology import Terminology
from tests.cql.elm import FHIR, alias, engine_for, library, lit, op, prop, query, retrieve, run, un

OBS = {
    "resourceType": "Observation",
    "id": "o1",
    "meta": {"profile": ["http://example.org/lab"]},
    "status": "final",
    "_status": {"extension": [{"url": "http://example.org/x", "valueString": "note"}]},
    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}], "text": "HbA1c"},
    "valueQuantity": {"value": 9.1, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
    "effectivePeriod": {"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T11:00:00Z"},
    "component": [{"code": {"text": "a"}, "valueInteger": 3}, {"code": {"text": "b"}, "valueString": "x"}],
}
PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "birthDate": "1960-05-06",
    "extension": [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
            "extension": [{"url": "text", "valueString": "Mixed"}],
        }
    ],
}
VALUESET = {
    "resourceType": "ValueSet",
    "url": "http://example.org/vs/a1c",
    "expansion": {
        "contains": [
            {"system": "http://loinc.org", "code": "4548-4"},
            {"system": "http://loinc.org", "code": "17856-6"},
        ]
    },
}


def test_choice_elements_resolve_by_json_key_and_keep_their_type() -> None:
    value = get(OBS, "value")
    assert isinstance(value, Node) and value.t == "Quantity"
    assert is_fhir_type(value, "Quantity") and is_fhir_type(value, "Element")
    effective = get(OBS, "effective")
    assert effective.t == "Period"
    assert get(OBS, "component")[1].t == "Observation.component"
    assert get(get(OBS, "component")[1], "value").t == "string"


def test_primitive_values_convert_by_fhir_type() -> None:
    assert primitive_value(get(PATIENT, "birthDate"), 0) == Date(1960, 5, 6)
    start = get(get(OBS, "effective"), "start")
    assert primitive_value(start, 0) == DateTime((2026, 3, 1, 10, 0, 0), 0)
    assert primitive_value(get(get(OBS, "value"), "value"), 0) == Decimal("9.1")
    assert primitive_value(get(OBS, "status"), 0) == "final"


def test_primitive_extensions_are_reachable() -> None:
    ext = get(get(OBS, "status"), "extension")
    assert ext[0].t == "Extension"
    assert get(ext[0], "value").raw == "note"


def test_unknown_elements_are_null() -> None:
    assert get(OBS, "nonsense") is None
    assert get(OBS, "bodySite") is None


def test_property_paths_and_fhirhelpers_style_conversion_in_elm() -> None:
    source = retrieve("Observation")
    status = query([("O", source)], ret=prop("status.value", scope="O"))
    assert run(status, [OBS]) == ["final"]
    is_quantity = query(
        [("O", source)], ret={"type": "Is", "operand": prop("value", scope="O"), "isType": FHIR + "Quantity"}
    )
    assert run(is_quantity, [OBS]) == [True]
    as_concept = query(
        [("O", source)],
        ret={"type": "As", "operand": prop("value", scope="O"), "asType": FHIR + "CodeableConcept"},
    )
    assert run(as_concept, [OBS]) == [None]
    birth = prop("birthDate.value", {"type": "SingletonFrom", "operand": retrieve("Patient")})
    assert run(birth, [PATIENT]) == Date(1960, 5, 6)


def test_resource_type_tests() -> None:
    node = query(
        [("O", retrieve("Observation"))],
        ret={"type": "Is", "operand": alias("O"), "isType": FHIR + "Observation"},
    )
    assert run(node, [OBS]) == [True]
    node = query(
        [("O", retrieve("Observation"))],
        ret={"type": "Is", "operand": alias("O"), "isType": FHIR + "Condition"},
    )
    assert run(node, [OBS]) == [False]


def test_in_memory_retrieve_filters_by_profile_codes_and_value_sets() -> None:
    other = dict(OBS, id="o2", meta={}, code={"coding": [{"system": "http://loinc.org", "code": "1-1"}]})
    source = InMemoryDataSource([OBS, other, PATIENT])
    vs = Terminology([VALUESET]).valueset("http://example.org/vs/a1c")
    assert source.retrieve(RetrieveRequest("Observation")) == [OBS, other]
    assert source.retrieve(RetrieveRequest("Observation", "http://example.org/lab")) == [OBS]
    # a base FHIR StructureDefinition means "any resource of the type"
    base = "http://hl7.org/fhir/StructureDefinition/Observation"
    assert source.retrieve(RetrieveRequest("Observation", base)) == [OBS, other]
    assert source.retrieve(RetrieveRequest("Observation", None, "code", vs)) == [OBS]
    codes = (Code("1-1", "http://loinc.org"),)
    assert source.retrieve(RetrieveRequest("Observation", None, "code", codes)) == [other]
    lenient = InMemoryDataSource([OBS, other], require_profile=False)
    assert len(lenient.retrieve(RetrieveRequest("Observation", "http://example.org/lab"))) == 2


def test_choice_code_path_and_date_filter() -> None:
    med = {
        "resourceType": "MedicationRequest",
        "id": "m1",
        "medicationCodeableConcept": {"coding": [{"system": "rx", "code": "123"}]},
        "authoredOn": "2026-02-01",
    }
    source = InMemoryDataSource([med])
    assert source.retrieve(
        RetrieveRequest("MedicationRequest", None, "medication", (Code("123", "rx"),))
    ) == [med]
    from fhirlead.cql.interval import Interval

    year = Interval(DateTime((2026, 1, 1), 0), DateTime((2026, 12, 31), 0))
    assert source.retrieve(RetrieveRequest("MedicationRequest", date_path="authoredOn", date_range=year)) == [
        med
    ]
    later = Interval(DateTime((2027, 1, 1), 0), DateTime((2027, 12, 31), 0))
    assert (
        source.retrieve(RetrieveRequest("MedicationRequest", date_path="authoredOn", date_range=later)) == []
    )


def test_retrieve_with_value_set_in_elm_and_evaluated_resources() -> None:
    lib = library(
        {"Labs": retrieve("Observation", codeProperty="code", codes={"type": "ValueSetRef", "name": "A1c"})},
        valueSets={"def": [{"name": "A1c", "id": "http://example.org/vs/a1c"}]},
    )
    eng = engine_for(lib, valuesets=[VALUESET])
    comp = eng.compiler_for("Test")
    ctx = eng.context(InMemoryDataSource([OBS, PATIENT], require_profile=False))
    assert eng.evaluate(comp, ["Labs"], None, ctx=ctx)["Labs"] == [OBS]
    assert list(ctx.evaluated) == ["Observation/o1"]


def test_in_valueset_and_code_system_membership() -> None:
    lib_sections = {"valueSets": {"def": [{"name": "A1c", "id": "http://example.org/vs/a1c"}]}}
    in_vs = {
        "type": "InValueSet",
        "code": {
            "type": "Instance",
            "classType": "{urn:hl7-org:elm-types:r1}Code",
            "element": [
                {"name": "code", "value": lit("17856-6")},
                {"name": "system", "value": lit("http://loinc.org")},
            ],
        },
        "valueset": {"name": "A1c"},
    }
    assert run(in_vs, valuesets=[VALUESET], **lib_sections) is True
    in_vs_string = dict(in_vs, code=lit("4548-4"))
    assert run(in_vs_string, valuesets=[VALUESET], **lib_sections) is True
    in_vs_null = dict(in_vs, code={"type": "Null"})
    assert run(in_vs_null, valuesets=[VALUESET], **lib_sections) is False


def test_value_set_from_compose_with_exclusions_and_prefix_hierarchy() -> None:
    vs = {
        "resourceType": "ValueSet",
        "url": "http://example.org/vs/payer",
        "compose": {
            "include": [{"system": "https://nahdo.org/sopt"}],
            "exclude": [
                {
                    "system": "https://nahdo.org/sopt",
                    "filter": [{"property": "concept", "op": "=", "value": "111"}],
                },
                {
                    "system": "https://nahdo.org/sopt",
                    "filter": [{"property": "concept", "op": "descendent-of", "value": "32"}],
                },
            ],
        },
    }
    payer = Terminology([vs]).valueset("http://example.org/vs/payer")
    assert payer.contains("https://nahdo.org/sopt", "1")
    assert not payer.contains("https://nahdo.org/sopt", "111")
    assert payer.contains("https://nahdo.org/sopt", "32")  # descendent-of excludes only descendants
    assert not payer.contains("https://nahdo.org/sopt", "321")
    assert not payer.contains("http://other", "1")


def test_value_set_needing_a_terminology_server_raises_when_used() -> None:
    from fhirlead.cql.errors import CqlEvaluationError

    vs = {
        "resourceType": "ValueSet",
        "url": "http://example.org/vs/isa",
        "compose": {
            "include": [
                {
                    "system": "http://snomed.info/sct",
                    "filter": [{"property": "concept", "op": "is-a", "value": "404684003"}],
                }
            ]
        },
    }
    sections = {"valueSets": {"def": [{"name": "V", "id": "http://example.org/vs/isa"}]}}
    node = {"type": "InValueSet", "code": lit("1"), "valueset": {"name": "V"}}
    try:
        run(node, valuesets=[vs], **sections)
    except CqlEvaluationError as exc:
        assert "terminology server" in str(exc)
    else:
        raise AssertionError("expected an error")


def test_to_concept_and_code_conversions() -> None:
    assert run(
        un(
            "ToConcept",
            {
                "type": "Instance",
                "classType": "{urn:hl7-org:elm-types:r1}Code",
                "element": [{"name": "code", "value": lit("x")}],
            },
        )
    ) == Concept([Code("x")])
    assert (
        run(op("Equal", un("ToQuantity", lit("9 '%'")), {"type": "Quantity", "value": 9, "unit": "%"}))
        is True
    )
    assert run(un("ToQuantity", lit("9 '%'"))) == Quantity(9, "%")
