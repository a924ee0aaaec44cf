"""ELM XML (`application/elm+xml`), the translator's other output format, read into the JSON shape.

The library below is written by hand as the translator writes XML: `xsi:type` only where the declared
type is abstract, QName attributes with namespace prefixes, repeated elements for lists, annotations.
"""

from __future__ import annotations

import base64
from decimal import Decimal

import pytest

from fhirlead.cql.elmxml import elm_json_from_xml
from fhirlead.cql.engine import Engine
from fhirlead.cql.errors import ElmLoadError
from fhirlead.cql.library import LibrarySet, elm_from_library_resource
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.retrieve import InMemoryDataSource

XML = """<?xml version="1.0" encoding="UTF-8"?>
<library xmlns="urn:hl7-org:elm:r1" xmlns:t="urn:hl7-org:elm-types:r1"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:fhir="http://hl7.org/fhir"
         xmlns:a="urn:hl7-org:cql-annotations:r1">
   <annotation translatorVersion="3.3.2" signatureLevel="None" xsi:type="a:CqlToElmInfo"/>
   <identifier id="X" version="1.0.0"/>
   <schemaIdentifier id="urn:hl7-org:elm" version="r1"/>
   <usings>
      <def localIdentifier="System" uri="urn:hl7-org:elm-types:r1"/>
      <def localIdentifier="FHIR" uri="http://hl7.org/fhir" version="4.0.1"/>
   </usings>
   <codeSystems>
      <def name="LOINC" id="http://loinc.org" accessLevel="Public"/>
   </codeSystems>
   <codes>
      <def name="BMI" id="39156-5" display="BMI" accessLevel="Public">
         <codeSystem name="LOINC"/>
      </def>
   </codes>
   <concepts>
      <def name="Body" display="Body" accessLevel="Public">
         <code name="BMI"/>
      </def>
   </concepts>
   <statements>
      <def name="Patient" context="Patient">
         <expression xsi:type="SingletonFrom">
            <operand dataType="fhir:Patient" xsi:type="Retrieve"/>
         </expression>
      </def>
      <def localId="7" locator="9:1-9:20" name="Numbers" context="Patient" accessLevel="Public">
         <annotation xsi:type="a:Annotation"><a:s r="7"><a:s>define Numbers: ...</a:s></a:s></annotation>
         <expression xsi:type="Query">
            <source alias="N">
               <expression xsi:type="List">
                  <element valueType="t:Integer" value="3" xsi:type="Literal"/>
                  <element valueType="t:Integer" value="1" xsi:type="Literal"/>
                  <element valueType="t:Integer" value="2" xsi:type="Literal"/>
               </expression>
            </source>
            <where xsi:type="Greater">
               <operand name="N" xsi:type="AliasRef"/>
               <operand valueType="t:Integer" value="1" xsi:type="Literal"/>
            </where>
            <return distinct="false">
               <expression name="Double" xsi:type="FunctionRef">
                  <operand name="N" xsi:type="AliasRef"/>
               </expression>
            </return>
            <sort>
               <by direction="asc" xsi:type="ByDirection"/>
            </sort>
         </expression>
      </def>
      <def name="Double" context="Patient" accessLevel="Public" fluent="true" xsi:type="FunctionDef">
         <expression xsi:type="Multiply">
            <operand name="x" xsi:type="OperandRef"/>
            <operand valueType="t:Integer" value="2" xsi:type="Literal"/>
         </expression>
         <operand name="x">
            <operandTypeSpecifier name="t:Integer" xsi:type="NamedTypeSpecifier"/>
         </operand>
      </def>
      <def name="Open" context="Patient">
         <expression lowClosed="true" highClosed="false" xsi:type="Interval">
            <low valueType="t:Integer" value="1" xsi:type="Literal"/>
            <high valueType="t:Integer" value="5" xsi:type="Literal"/>
         </expression>
      </def>
      <def name="IsChoice" context="Patient">
         <expression xsi:type="Is">
            <operand value="9.5" unit="mg" xsi:type="Quantity"/>
            <isTypeSpecifier xsi:type="ChoiceTypeSpecifier">
               <choice name="t:String" xsi:type="NamedTypeSpecifier"/>
               <choice name="t:Quantity" xsi:type="NamedTypeSpecifier"/>
            </isTypeSpecifier>
         </expression>
      </def>
      <def name="Gender" context="Patient">
         <expression path="gender" xsi:type="Property">
            <source name="Patient" xsi:type="ExpressionRef"/>
         </expression>
      </def>
      <def name="Codes" context="Patient">
         <expression name="Body" xsi:type="ConceptRef"/>
      </def>
      <def name="Weight" context="Patient">
         <expression value="9.5" unit="mg" xsi:type="Quantity"/>
      </def>
   </statements>
</library>
"""


def _engine() -> Engine:
    resource = {
        "resourceType": "Library",
        "version": "1.0.0",
        "content": [{"contentType": "application/elm+xml", "data": base64.b64encode(XML.encode()).decode()}],
    }
    lib = elm_from_library_resource(resource)
    assert lib is not None and (lib.name, lib.version) == ("X", "1.0.0")
    return Engine(LibrarySet([lib]))


def test_xml_library_evaluates_like_its_json_form() -> None:
    eng = _engine()
    patient = {"resourceType": "Patient", "id": "p", "gender": "female"}
    names = ["Numbers", "Open", "IsChoice", "Codes", "Weight", "Gender"]
    values = eng.evaluate(eng.compiler_for("X", "1.0.0"), names, InMemoryDataSource([patient], require_profile=False))
    assert values["Numbers"] == [4, 6]
    assert (values["Open"].low, values["Open"].high, values["Open"].high_closed) == (1, 5, False)
    assert values["IsChoice"] is True
    assert [c.code for c in values["Codes"].codes] == ["39156-5"]
    assert values["Weight"] == Quantity(Decimal("9.5"), "mg")
    assert values["Gender"].raw == "female"


def test_xml_shape_matches_the_translators_json() -> None:
    lib = elm_json_from_xml(XML)["library"]
    double = lib["statements"]["def"][2]
    assert double["type"] == "FunctionDef" and double["fluent"] is True
    integer = {"type": "NamedTypeSpecifier", "name": "{urn:hl7-org:elm-types:r1}Integer"}
    assert double["operand"] == [{"name": "x", "operandTypeSpecifier": integer}]
    numbers = lib["statements"]["def"][1]
    assert "annotation" not in numbers and numbers["locator"] == "9:1-9:20"
    assert [s["alias"] for s in numbers["expression"]["source"]] == ["N"]
    assert numbers["expression"]["return"]["distinct"] is False
    assert lib["concepts"]["def"][0]["code"] == [{"name": "BMI"}]  # ConceptDef.code repeats
    assert lib["codes"]["def"][0]["codeSystem"] == {"name": "LOINC"}  # CodeDef.codeSystem does not
    assert lib["statements"]["def"][0]["expression"]["operand"]["dataType"] == "{http://hl7.org/fhir}Patient"


def test_malformed_xml_is_a_load_error() -> None:
    with pytest.raises(ElmLoadError, match="not well-formed"):
        elm_json_from_xml("<library><oops></library>")
    with pytest.raises(ElmLoadError, match="not <library>"):
        elm_json_from_xml('<measure xmlns="urn:hl7-org:elm:r1"/>')
