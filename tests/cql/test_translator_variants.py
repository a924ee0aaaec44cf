"""ELM shapes that differ between CQL-to-ELM translator versions and options.

The same CQL comes out of translators 1.3 to 3.x in different JSON: type specifiers whose `type`
member is the deprecated list of choices, `signature`s on every call, annotations and locators
everywhere, fluent functions, properties without a scope in expanded retrieves. Each test builds the
shape by hand, as the translator writes it.
"""

from __future__ import annotations

import pytest

from fhirlead.cql.errors import UnsupportedElmError
from fhirlead.cql.retrieve import InMemoryDataSource
from tests.cql.elm import FHIR, SYS, engine_for, library, lit, lst, qty, query, retrieve, run


def named(name: str) -> dict:
    return {"localId": "9", "name": name, "type": "NamedTypeSpecifier"}


def choice_3x(*names: str) -> dict:
    """Translator 3.x: the deprecated `type` list is written empty next to `choice`; no discriminator."""
    return {"localId": "7", "type": [], "choice": [named(n) for n in names]}


def choice_1x(*names: str) -> dict:
    """Translator 1.x: the choices are in `type` (the discriminator lost to the duplicate JSON key)."""
    return {"type": [named(n) for n in names]}


@pytest.mark.parametrize("make", [choice_3x, choice_1x])
def test_choice_type_specifier_without_discriminator_in_is_and_as(make) -> None:
    spec = make(SYS + "String", SYS + "Quantity")
    assert run({"type": "Is", "operand": lit("a"), "isTypeSpecifier": spec}) is True
    assert run({"type": "Is", "operand": lit(1), "isTypeSpecifier": spec}) is False
    assert run({"type": "As", "operand": qty(1, "mg"), "asTypeSpecifier": spec}) is not None
    assert run({"type": "As", "operand": lit(1), "asTypeSpecifier": spec}) is None


def test_list_of_choice_specifier_in_as_and_signature() -> None:
    spec = {"type": "ListTypeSpecifier", "elementType": choice_3x(SYS + "String", SYS + "Integer")}
    assert run({"type": "As", "operand": lst(lit("a"), lit(2)), "asTypeSpecifier": spec}) == ["a", 2]
    assert run({"type": "As", "operand": lst(lit(True)), "asTypeSpecifier": spec}) is None
    # a call whose signature is a list of a choice picks the overload declared with that specifier
    body = {"type": "Count", "source": {"type": "OperandRef", "name": "xs"}}
    other = {"type": "FunctionDef", "name": "N", "expression": lit(-1), "operand": [
        {"name": "xs", "operandTypeSpecifier": {"type": "ListTypeSpecifier", "elementType": named(SYS + "Boolean")}}
    ]}
    lib = library(
        {
            "N": {"type": "FunctionDef", "expression": body, "operand": [{"name": "xs", "operandTypeSpecifier": {
                "type": "ListTypeSpecifier",
                "elementType": choice_1x(SYS + "Integer", SYS + "String"),  # same choice, other spelling
            }}]},
            "R": {"type": "FunctionRef", "name": "N", "operand": [lst(lit("a"), lit(2))], "signature": [spec]},
        }
    )
    lib["library"]["statements"]["def"].append({"context": "Patient", **other})
    eng = engine_for(lib)
    assert eng.evaluate(eng.compiler_for("Test"), ["R"], InMemoryDataSource([]))["R"] == 2


def test_tuple_specifier_with_deprecated_element_type_member() -> None:
    spec = {"type": "TupleTypeSpecifier", "element": [{"name": "a", "type": named(SYS + "Integer")}]}
    tup = {"type": "Tuple", "element": [{"name": "a", "value": lit(1)}]}
    assert run({"type": "Is", "operand": tup, "isTypeSpecifier": spec}) is True


def test_unknown_type_specifier_is_a_clear_compile_error() -> None:
    node = {"type": "Is", "operand": lit(1), "isTypeSpecifier": {"type": "FancySpecifier", "locator": "3:4-3:9"}}
    with pytest.raises(UnsupportedElmError) as info:
        run(node)
    assert "FancySpecifier" in str(info.value) and "Test 1.0.0" in str(info.value)
    assert "3:4-3:9" in str(info.value)


def test_property_without_source_or_scope_is_null() -> None:
    """Translator 3.x expands `[MedicationRequest: "VS"]` into a union with a query over referenced
    Medications whose `code` Property has neither source nor scope; like the reference engines, its
    value is null, so that branch matches nothing."""
    meds = [
        {"resourceType": "Medication", "id": "m1", "code": {"coding": [{"system": "s", "code": "1"}]}},
        {"resourceType": "MedicationRequest", "id": "r1", "medicationReference": {"reference": "Medication/m1"}},
    ]
    in_vs = {
        "type": "InValueSet",
        "code": {"localId": "702", "path": "code", "type": "Property"},
        "valueset": {"name": "VS", "preserve": True},
    }
    with_med = {
        "alias": "M",
        "type": "With",
        "expression": retrieve("Medication"),
        "suchThat": {"type": "And", "operand": [
            {"type": "Equal", "operand": [
                {"type": "Property", "path": "id", "scope": "M"},
                {"type": "Last", "source": {
                    "type": "Split",
                    "stringToSplit": {"type": "Property", "path": "medication.reference", "scope": "MR"},
                    "separator": lit("/"),
                }},
            ]},
            in_vs,
        ]},
    }
    q = query([("MR", retrieve("MedicationRequest"))], relationship=[with_med])
    vs = {"resourceType": "ValueSet", "url": "urn:vs", "expansion": {"contains": [{"system": "s", "code": "1"}]}}
    sections = {"valueSets": {"def": [{"name": "VS", "id": "urn:vs"}]}}
    assert run(q, meds, valuesets=[vs], **sections) == []
    assert run({"type": "Property", "path": "code"}) is None


def test_definitions_carry_annotations_and_result_type_members() -> None:
    """Annotations (with narrative `s` trees), localIds, locators and result types are ignored."""
    expr = {
        "localId": "12",
        "locator": "5:3-5:9",
        "type": "Add",
        "resultTypeName": SYS + "Integer",
        "annotation": [{"type": "Annotation", "s": {"r": "12", "s": [{"value": ["1 + 2"]}]}}],
        "signature": [named(SYS + "Integer"), named(SYS + "Integer")],
        "operand": [lit(1), lit(2)],
    }
    assert run(expr) == 3
    assert FHIR  # the builders' FHIR namespace is the model's


def test_sort_by_an_expression_of_this() -> None:
    """`sort by start of $this` (the translator's IdentifierRef `$this` is the item being sorted)."""
    from tests.cql.elm import interval

    items = lst(interval(lit(5), lit(9)), interval(lit(1), lit(3)), interval(lit(3), lit(4)))
    start_of_this = {"type": "Start", "operand": {"type": "IdentifierRef", "name": "$this"}}
    sort = {"by": [{"type": "ByExpression", "direction": "asc", "expression": start_of_this}]}
    assert [iv.low for iv in run(query([("I", items)], sort=sort))] == [1, 3, 5]
    by_this = {"by": [{"type": "ByColumn", "direction": "desc", "path": "$this"}]}
    assert run(query([("X", lst(lit(2), lit(7), lit(1)))], sort=by_this)) == [7, 2, 1]


def test_multi_source_query_over_singletons_is_a_singleton() -> None:
    """`from First(A) F, Last(B) L let D: F - L return D`: a singleton, null when filtered out or when a
    source is null (as the reference engine evaluates it), so `(... where D >= 3) is not null` works."""
    from tests.cql.elm import alias, op

    def q(first: dict, last: dict) -> dict:
        return query(
            [("F", {"type": "First", "source": first}), ("L", {"type": "Last", "source": last})],
            where=op("GreaterOrEqual", op("Subtract", alias("F"), alias("L")), lit(3)),
            ret=op("Subtract", alias("F"), alias("L")),
        )

    assert run(q(lst(lit(9), lit(1)), lst(lit(5), lit(2)))) == 7
    assert run(q(lst(lit(4)), lst(lit(2)))) is None
    assert run(q(lst(), lst(lit(2)))) is None
    # one list source makes it a list query
    mixed = query([("F", {"type": "First", "source": lst(lit(9))}), ("X", lst(lit(1), lit(2)))],
                  ret=op("Add", alias("F"), alias("X")))
    assert run(mixed) == [10, 11]


def test_to_quantity_of_a_primitive_where_the_profile_promised_a_quantity() -> None:
    """QI-Core BMI retrieves call FHIRHelpers.ToQuantity on `value` directly; test data may carry a
    valueInteger there. The published ToQuantity reads `quantity.value` and finds no comparator, system,
    code or unit: a unitless Quantity, not an internal error."""
    from decimal import Decimal

    from fhirlead.cql.quantity import Quantity

    helpers = library(
        {"ToQuantity": {"type": "FunctionDef", "expression": lit(None), "operand": [
            {"name": "quantity", "operandTypeSpecifier": named(FHIR + "Quantity")}]}},
        name="FHIRHelpers",
        version="4.4.000",
    )
    obs = {"resourceType": "Observation", "id": "o1", "status": "final", "valueInteger": 9}
    only = {"type": "SingletonFrom", "operand": retrieve("Observation")}
    value = {"type": "Property", "path": "value", "source": only}
    main = library(
        {"Q": {"type": "FunctionRef", "libraryName": "FHIRHelpers", "name": "ToQuantity", "operand": [value]}},
        includes={"def": [{"localIdentifier": "FHIRHelpers", "path": "FHIRHelpers", "version": "4.4.000"}]},
    )
    eng = engine_for(main, helpers)
    got = eng.evaluate(eng.compiler_for("Test"), ["Q"], InMemoryDataSource([obs], require_profile=False))["Q"]
    assert got == Quantity(Decimal(9), "1")


def test_query_over_a_null_source_is_null() -> None:
    """`(end of X.abatementInterval()) D return Interval[..., D)` with a null source: no rows, so null
    (not an interval built from a null row), as the reference engine evaluates it; a null list source
    likewise gives null, and a null `with` source matches nothing."""
    from tests.cql.elm import alias, op

    build = op("Add", alias("D"), lit(1))
    assert run(query([("D", {"type": "Null"})], ret=build)) is None
    assert run(query([("D", lit(1))], ret=build)) == 2
    assert run(query([("D", {"type": "Null"}), ("E", lst(lit(1)))], ret=build)) == []
    agg = {"identifier": "R", "starting": lit(0), "expression": op("Add", alias("R"), alias("D"))}
    assert run(query([("D", {"type": "Null"})], aggregate=agg)) == 0


def test_model_info_type_names_in_is_and_as() -> None:
    """Names the translator takes from the FHIR/QI-Core model infos rather than StructureDefinitions:
    backbone types with capitalised segments, bound code types, QI-Core extension value types."""
    from tests.cql.elm import dt

    enc = {"resourceType": "Encounter", "id": "e", "status": "finished",
           "diagnosis": [{"condition": {"reference": "Condition/c"}}]}
    the_enc = {"type": "SingletonFrom", "operand": retrieve("Encounter")}
    diagnosis = {"type": "First", "source": {"type": "Property", "path": "diagnosis", "source": the_enc}}
    status = {"type": "Property", "path": "status", "source": the_enc}

    def is_(operand: dict, name: str) -> dict:
        return {"type": "Is", "operand": operand, "isType": FHIR + name}

    assert run(is_(diagnosis, "Encounter.Diagnosis"), [enc]) is True
    assert run(is_(diagnosis, "Encounter.Location"), [enc]) is False
    assert run(is_(status, "EncounterStatus"), [enc]) is True
    assert run(is_(status, "Encounter"), [enc]) is False
    recorded = {"type": "As", "operand": dt(2026, 11, 1, 7, tz=0), "asType": FHIR + "NotDoneRecorded"}
    assert run(recorded) is not None



def test_includes_without_version_take_the_newest_and_numeric_versions_match() -> None:
    from fhirlead.cql.library import ElmLibrary, LibrarySet

    def lib(version: str) -> ElmLibrary:
        return ElmLibrary(library({"V": lit(version)}, name="Helpers", version=version))

    libs = LibrarySet([lib("1.10.0"), lib("1.9.0"), lib("1.2.000")])
    assert libs.resolve("Helpers", None).version == "1.10.0"
    assert libs.resolve("Helpers", "1.2.0").version == "1.2.000"
    assert libs.resolve("Helpers", "1.9.0").version == "1.9.0"


def test_value_set_membership_across_a_code_systems_uri_and_oid() -> None:
    """VSAC expansions may name a code system by its OID (Source of Payment Typology as
    urn:oid:2.16.840.1.113883.3.221.5) where data uses its URI (https://nahdo.org/sopt), or the reverse."""
    from fhirlead.cql.clinical import Code
    from fhirlead.cql.terminology import Terminology

    vs = {"resourceType": "ValueSet", "url": "urn:medicare", "expansion": {"contains": [
        {"system": "urn:oid:2.16.840.1.113883.3.221.5", "code": "1"},
        {"system": "http://loinc.org", "code": "21112-8"},
    ]}}
    medicare = Terminology([vs]).valueset("urn:medicare")
    assert medicare.contains_code(Code("1", "https://nahdo.org/sopt"))
    assert medicare.contains_code(Code("1", "urn:oid:2.16.840.1.113883.3.221.5"))
    assert medicare.contains_code(Code("21112-8", "urn:oid:2.16.840.1.113883.6.1"))
    assert not medicare.contains_code(Code("2", "https://nahdo.org/sopt"))
    assert not medicare.contains_code(Code("1", "http://snomed.info/sct"))
