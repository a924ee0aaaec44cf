"""tools/fhir_xml.py: FHIR XML to FHIR JSON with the R4 element definitions deciding arrays, primitives,
`_name` companions and choice types; checked against the ATR resources converted independently in
../shared/data (skipped without it) and on a small sample that exercises each rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhirlead import fhirjson
from tools.fhir_xml import ConversionError, convert

PROFILES = Path(__file__).resolve().parents[2] / "profiles" / "atr"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "atr-2.1.0" / "resources"

SAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<Group xmlns="http://hl7.org/fhir">
  <id value="g1"/>
  <text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>A &amp; B</p></div></text>
  <extension url="http://example.org/ext-status"><valueCode value="open"/></extension>
  <identifier><system value="http://hl7.org/fhir/sid/us-npi"/><value value="123"/></identifier>
  <type value="person"/>
  <actual value="true"/>
  <quantity value="2"/>
  <characteristic>
    <code><text value="weight"/></code>
    <valueQuantity><value value="1.50"/><unit value="kg"/></valueQuantity>
    <exclude value="false"/>
  </characteristic>
  <member id="m1">
    <entity><reference value="Patient/1"/></entity>
    <inactive value="false"><extension url="http://example.org/why"><valueString value="x"/></extension></inactive>
  </member>
  <member><entity><reference value="Patient/2"/></entity></member>
</Group>"""


def test_each_rule_of_the_json_format() -> None:
    group = convert(SAMPLE)
    assert fhirjson.dumps(group) == fhirjson.dumps({
        "resourceType": "Group", "id": "g1",
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>A &amp; B</p></div>'},
        "extension": [{"url": "http://example.org/ext-status", "valueCode": "open"}],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "123"}],
        "type": "person", "actual": True, "quantity": 2,
        "characteristic": [{"code": {"text": "weight"}, "valueQuantity": {"value": fhirjson.loads(b"1.50"),
                                                                         "unit": "kg"}, "exclude": False}],
        "member": [
            {"id": "m1", "entity": {"reference": "Patient/1"}, "inactive": False,
             "_inactive": {"extension": [{"url": "http://example.org/why", "valueString": "x"}]}},
            {"entity": {"reference": "Patient/2"}},
        ],
    })
    assert b'"value":1.50' in fhirjson.dumps(group)


def test_an_element_r4_does_not_have_is_refused() -> None:
    with pytest.raises(ConversionError, match=r"Group\.colour"):
        convert(b'<Group xmlns="http://hl7.org/fhir"><colour value="red"/></Group>')


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data (ATR resources converted independently) is absent")
def test_the_committed_atr_resources_match_an_independent_conversion() -> None:
    for name in ("StructureDefinition-atr-group", "OperationDefinition-member-add", "OperationDefinition-member-remove",
                 "OperationDefinition-confirm-attribution-list", "OperationDefinition-attribution-status"):
        ours = fhirjson.loads((PROFILES / f"{name}.json").read_bytes())
        theirs = fhirjson.loads((SHARED / f"{name}.json").read_bytes())
        assert fhirjson.dumps_sorted(ours) == fhirjson.dumps_sorted(theirs), name
