"""Profiles over HTTP: the published US Core 6.1.0 and ATR 2.1.0 examples validate clean against their
profiles; copies broken the way integrators break them (a required element dropped, a fixed or pattern
value changed, a required slice missing, a profile invariant broken, a reference to the wrong type) fail
with the location and the rule; a write claiming a profile in `meta.profile` is held to it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhirlead.validation.profile_model import NOTHING, build
from fhirlead.validation.profiles import Profiles

ROOT = Path(__file__).resolve().parents[2]
US_CORE = ROOT / "profiles" / "us-core" / "examples"
ATR = ROOT.parent / "shared" / "data" / "atr-2.1.0" / "examples"
US = "http://hl7.org/fhir/us/core/StructureDefinition/"
DAVINCI = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"

# Published examples that break the base R4 definitions themselves (not the profile): what the refusal
# names, and why.
BASE_DEFECTS = {
    "DiagnosticReport-cbc.json": ("div", "Narrative.div 1..1: its text has a status and no div"),
    # R4 Bundle.entry.fullUrl: a RESTful fullUrl "SHALL end with the Resource.id"
    "Bundle-66c8856b-ba11-4876-8aa8-467aad8c11a2.json": ("fullUrl", ".../Endpoint/Endpoint-71 holds Endpoint 71"),
    "Bundle-docref-example-2.json": ("fullUrl", ".../discharge-summary789 holds the DocumentReference discharge"),
}


def examples() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, orjson.loads(path.read_bytes())) for path in sorted(US_CORE.glob("*.json"))]


async def validate(client: httpx.AsyncClient, resource: dict[str, Any], profile: str | None = None) -> list[dict]:
    query = f"?profile={profile}" if profile else ""
    answer = await client.post(f"{resource['resourceType']}/$validate{query}", json=resource)
    assert answer.status_code == 200, answer.text
    return answer.json()["issue"]


def errors(issues: list[dict]) -> list[dict]:
    return [issue for issue in issues if issue["severity"] in ("error", "fatal")]


async def test_every_us_core_example_validates_clean(client: httpx.AsyncClient) -> None:
    checked = 0
    for name, resource in examples():
        found = errors(await validate(client, resource))
        if name in BASE_DEFECTS:
            assert found and BASE_DEFECTS[name][0] in found[0]["diagnostics"], (name, found)
            continue
        assert found == [], (name, found)
        checked += bool(resource.get("meta", {}).get("profile"))
    assert checked >= 170  # the examples that claim a US Core profile were checked against it


ATR_PROFILES = {
    "patient": "atr-patient", "coverage": "atr-coverage", "group-fullexample": "atr-group",
    "davinci-patient-list-example": "davinci-patient-list", "location": "atr-location",
    "organization": "atr-organization", "practitioner-": "atr-practitioner",
    "practitionerrole": "atr-practitionerrole", "relatedperson": "atr-relatedperson",
}


@pytest.mark.skipif(not ATR.is_dir(), reason="../shared/data (the ATR 2.1.0 examples) is absent")
async def test_atr_examples_validate_against_their_profiles(client: httpx.AsyncClient) -> None:
    checked = set()
    for path in sorted(ATR.glob("*.json")):
        profile = next((DAVINCI + name for prefix, name in ATR_PROFILES.items() if path.name.startswith(prefix)), None)
        if profile is None:
            continue
        issues = await validate(client, orjson.loads(path.read_bytes()), profile)
        assert errors(issues) == [], (path.name, issues)
        checked.add(profile)
    assert len(checked) == len(ATR_PROFILES)
    # ATR 2.1.0 builds on US Core 7.0.0; the server holds 6.1.0 and says which version it used
    patient = await validate(client, orjson.loads((ATR / "patient-1.json").read_bytes()), DAVINCI + "atr-patient")
    assert any("7.0.0" in issue["diagnostics"] and issue["severity"] == "information" for issue in patient)


def required_elements(resource: dict[str, Any], profiles: Profiles) -> list[str]:
    """The root elements the resource's profiles require (min >= 1) that it has (not choice elements)."""
    names = []
    for canonical in resource.get("meta", {}).get("profile", []):
        compiled = profiles.compiled(canonical)
        if compiled:
            names += [rule.name for rule in compiled.root.children.values()
                      if rule.min >= 1 and not rule.name.endswith("[x]") and rule.name in resource]
    return sorted(set(names))


async def test_a_copy_without_a_required_element_fails_there(client: httpx.AsyncClient) -> None:
    profiles, mutated = Profiles(), 0
    for name, resource in examples():
        if name in BASE_DEFECTS or resource["resourceType"] == "Bundle":
            continue
        for element in required_elements(resource, profiles):
            broken = {key: value for key, value in resource.items() if key not in (element, f"_{element}")}
            found = errors(await validate(client, broken))
            where = f"{resource['resourceType']}.{element}"
            assert any(where in issue.get("expression", []) for issue in found), (name, element, found)
            mutated += 1
    assert mutated > 300


async def test_a_copy_with_a_wrong_fixed_or_pattern_value_fails_there(client: httpx.AsyncClient) -> None:
    profiles, mutated = Profiles(), 0
    for name, resource in examples():
        if name in BASE_DEFECTS:
            continue
        for canonical in resource.get("meta", {}).get("profile", []):
            compiled = profiles.compiled(canonical)
            for rule in compiled.root.children.values() if compiled else ():
                wanted = rule.pattern if rule.pattern is not NOTHING else rule.fixed
                if wanted is NOTHING or not isinstance(resource.get(rule.name), dict):
                    continue
                broken = copy.deepcopy(resource)
                broken[rule.name] = {"coding": [{"system": "http://example.org/other", "code": "other"}]}
                found = errors(await validate(client, broken))
                where = f"{resource['resourceType']}.{rule.name}"
                assert any(where in issue.get("expression", []) and "pattern" in issue["diagnostics"]
                           for issue in found), (name, rule.id, found)
                mutated += 1
    assert mutated >= 15  # the vital signs, smoking status, ... codes


def example(name: str) -> dict[str, Any]:
    return orjson.loads((US_CORE / name).read_bytes())


async def test_a_missing_required_slice_is_named(client: httpx.AsyncClient) -> None:
    pressure = example("Observation-blood-pressure.json")
    pressure["component"] = [c for c in pressure["component"] if c["code"]["coding"][0]["code"] != "8480-6"]
    found = errors(await validate(client, pressure))
    assert any(issue["expression"] == ["Observation.component"] and "component:systolic" in issue["diagnostics"]
               and "at least 1" in issue["diagnostics"] for issue in found), found
    no_category = example("Observation-blood-pressure.json")
    no_category["category"][0]["coding"][0]["code"] = "laboratory"
    found = errors(await validate(client, no_category))
    assert any("category:VSCat" in issue["diagnostics"] for issue in found), found


async def test_fixed_values_inside_a_slice(client: httpx.AsyncClient) -> None:
    pressure = example("Observation-blood-pressure.json")
    systolic = next(c for c in pressure["component"] if c["code"]["coding"][0]["code"] == "8480-6")
    systolic["valueQuantity"]["code"] = "kPa"
    found = errors(await validate(client, pressure))
    position = pressure["component"].index(systolic)
    assert [issue["expression"] for issue in found] == [[f"Observation.component[{position}].valueQuantity.code"]]
    assert "'mm[Hg]'" in found[0]["diagnostics"]


async def test_profile_invariants(client: httpx.AsyncClient) -> None:
    procedure = example("Procedure-rehab.json")
    assert procedure["status"] == "completed"
    procedure = {key: value for key, value in procedure.items() if not key.startswith("performed")}
    found = errors(await validate(client, procedure))
    assert [(issue["expression"], issue["diagnostics"].split(":")[1].strip()) for issue in found] == [
        (["Procedure"], "us-core-7")]
    organization = example("Organization-example-organization-2.json")
    npi = next(i for i in organization["identifier"] if i.get("system") == "http://hl7.org/fhir/sid/us-npi")
    npi["value"] = "123456789"  # nine digits: us-core-16
    found = errors(await validate(client, organization))
    assert any("us-core-16" in issue["diagnostics"] for issue in found), found


async def test_a_reference_to_a_type_the_profile_does_not_allow(client: httpx.AsyncClient) -> None:
    condition = example("Condition-condition-duodenal-ulcer.json")
    condition["subject"] = {"reference": "Device/pump"}
    found = errors(await validate(client, condition))
    assert any(issue["expression"] == ["Condition.subject"] and "Device" in issue["diagnostics"] for issue in found)


async def test_extensions_are_checked_against_their_definitions(client: httpx.AsyncClient) -> None:
    patient = example("Patient-example.json")
    race = next(e for e in patient["extension"] if e["url"].endswith("us-core-race"))
    race["extension"] = [e for e in race["extension"] if e["url"] != "text"]  # us-core-race: text 1..1
    found = errors(await validate(client, patient))
    position = patient["extension"].index(race)
    assert any(issue["expression"] == [f"Patient.extension[{position}].extension"] and "US Core Race" in
               issue["diagnostics"] for issue in found), found


async def test_writes_are_held_to_the_profiles_they_claim(client: httpx.AsyncClient) -> None:
    patient = example("Patient-example.json")
    del patient["id"]
    no_identifier = {key: value for key, value in patient.items() if key != "identifier"}
    refused = await client.post("Patient", json=no_identifier)
    assert refused.status_code == 400
    assert refused.json()["issue"][0]["expression"] == ["Patient.identifier"]
    unclaimed = {**no_identifier, "meta": {}}
    del unclaimed["meta"]
    assert (await client.post("Patient", json=unclaimed)).status_code == 201
    assert (await client.post("Patient", json=patient)).status_code == 201
    unknown = {**patient, "meta": {"profile": ["http://example.org/fhir/StructureDefinition/not-held"]}}
    assert (await client.post("Patient", json=unknown)).status_code == 201  # unknown profiles are not checked


async def test_explicit_profile_of_another_type_or_unknown(client: httpx.AsyncClient) -> None:
    patient = example("Patient-example.json")
    wrong = await client.post(f"Patient/$validate?profile={US}us-core-condition-problems-health-concerns", json=patient)
    assert wrong.status_code == 400
    unknown = await client.post("Patient/$validate?profile=http://example.org/none", json=patient)
    assert unknown.status_code == 400 and unknown.json()["issue"][0]["code"] == "not-supported"


def test_closed_and_ordered_slicing() -> None:
    """US Core and ATR slice only openly: a profile of this test's own closes and orders Patient.identifier."""
    from fhirlead.validation.conformance import Conformance

    system = "http://example.org/{}"
    sliced = {"resourceType": "StructureDefinition", "url": "http://example.org/closed", "type": "Patient",
              "derivation": "constraint", "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
              "differential": {"element": [
                  {"id": "Patient.identifier", "path": "Patient.identifier", "slicing": {
                      "discriminator": [{"type": "value", "path": "system"}], "rules": "closed", "ordered": True}},
                  *({"id": f"Patient.identifier:{n}", "path": "Patient.identifier", "sliceName": n,
                     "min": 0, "max": "1"} for n in ("mrn", "ssn")),
                  *({"id": f"Patient.identifier:{n}.system", "path": "Patient.identifier.system",
                     "fixedUri": system.format(n)} for n in ("mrn", "ssn"))]}}
    profiles = Profiles(Conformance([sliced]))
    assert build(profiles.conformance, "http://example.org/closed") is not None

    def issues(*systems: str) -> list[str]:
        identifiers = [{"system": system.format(s), "value": "1"} for s in systems]
        patient = {"resourceType": "Patient", "identifier": identifiers}
        return [i.diagnostics for i in profiles.check(patient, ["http://example.org/closed"])]

    assert issues("mrn", "ssn") == []
    assert issues("mrn", "fax")[0].startswith("Patient.identifier[1]: matches none of the slices")
    assert "out of order" in issues("ssn", "mrn")[0]
    assert "at most 1" in issues("mrn", "mrn")[0]


def constraint_profile(url: str, type_: str, elements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "StructureDefinition", "url": url, "type": type_, "derivation": "constraint",
            "baseDefinition": f"http://hl7.org/fhir/StructureDefinition/{type_}", "differential": {"element": elements}}


def test_bundle_entries_sliced_by_resource_type_in_an_id_less_differential() -> None:
    """profiling.html#discriminator `type` at `resource`, and a differential without element ids (the
    elements after a slice belong to it), as the reference validator's type-slicing-multiple case has."""
    from fhirlead.validation.conformance import Conformance

    url = "http://example.org/bundle-of-people"
    sliced = constraint_profile(url, "Bundle", [
        {"path": "Bundle.entry",
         "slicing": {"discriminator": [{"type": "type", "path": "resource"}], "rules": "closed"}},
        {"path": "Bundle.entry", "sliceName": "patient", "max": "1"},
        {"path": "Bundle.entry.resource", "type": [{"code": "Patient"}]},
        {"path": "Bundle.entry", "sliceName": "carer", "min": 1},
        {"path": "Bundle.entry.resource", "type": [{"code": "Practitioner"}, {"code": "PractitionerRole"}]},
    ])
    profiles = Profiles(Conformance([sliced]))

    def errors_of(*types: str) -> list[str]:
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"fullUrl": f"urn:uuid:{n}", "resource": {"resourceType": t}} for n, t in enumerate(types)]}
        return [i.diagnostics for i in profiles.check(bundle, [url]) if i.severity == "error"]

    assert errors_of("Patient", "Practitioner", "PractitionerRole") == []
    assert ["at least 1" in e for e in errors_of("Patient")] == [True]
    assert ["matches none of the slices" in e for e in errors_of("Practitioner", "Observation")] == [True]


def test_a_required_type_slice_and_a_resource_of_the_wrong_type() -> None:
    from fhirlead.validation.conformance import Conformance

    quantity = constraint_profile("http://example.org/measured", "Observation", [
        {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity", "min": 1}])
    manifest = constraint_profile("http://example.org/manifest-bundle", "Bundle", [
        {"path": "Bundle.entry.resource", "type": [
            {"code": "Resource", "profile": ["http://hl7.org/fhir/StructureDefinition/DocumentManifest"]}]}])
    profiles = Profiles(Conformance([quantity, manifest]))
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}}
    assert [i.expression for i in profiles.check(observation, ["http://example.org/measured"])] == [
        ("Observation.valueQuantity",)]
    assert profiles.check({**observation, "valueQuantity": {"value": 70}}, ["http://example.org/measured"]) == []
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Patient"}}]}
    found = profiles.check(bundle, ["http://example.org/manifest-bundle"])
    assert [(i.expression, "must be a DocumentManifest" in i.diagnostics) for i in found] == [
        (("Bundle.entry[0].resource",), True)]


def test_value_bounds_and_lengths() -> None:
    """minValue[x]/maxValue[x], maxLength and the minLength extension (elementdefinition.html)."""
    from fhirlead.validation.conformance import Conformance

    url = "http://example.org/bounded"
    bounded = constraint_profile(url, "Observation", [
        {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity",
         "minValueQuantity": {"value": 0, "system": "http://unitsofmeasure.org", "code": "kg"},
         "maxValueQuantity": {"value": 300, "system": "http://unitsofmeasure.org", "code": "kg"}},
        {"id": "Observation.issued", "path": "Observation.issued", "maxValueInstant": "2030-01-01T00:00:00Z"},
        {"id": "Observation.id", "path": "Observation.id", "maxLength": 8,
         "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/minLength", "valueInteger": 3}]}])
    profiles = Profiles(Conformance([bounded]))

    def problems(**elements: Any) -> list[str]:
        observation = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, **elements}
        return [i.expression[0] for i in profiles.check(observation, [url]) if i.severity == "error"]

    kg = {"system": "http://unitsofmeasure.org", "code": "kg"}
    assert problems(id="abcd", valueQuantity={"value": 70, **kg}, issued="2026-12-05T10:00:00Z") == []
    assert problems(valueQuantity={"value": -1, **kg}) == ["Observation.valueQuantity"]
    assert problems(valueQuantity={"value": 301.5, **kg}) == ["Observation.valueQuantity"]
    assert problems(issued="2031-06-01T00:00:00Z") == ["Observation.issued"]
    assert problems(id="ab") == problems(id="abcdefghi") == ["Observation.id"]


def test_a_rule_deep_under_elements_that_only_ask_must_support() -> None:
    """Elements a profile only flags mustSupport ask nothing of an instance and are not walked; a rule
    below them (Patient.contact.name.family 1..1, the ancestors mustSupport only) still is."""
    from fhirlead.validation.conformance import Conformance

    url = "http://example.org/contact-family"
    deep = constraint_profile(url, "Patient", [
        {"id": "Patient.contact", "path": "Patient.contact", "mustSupport": True},
        {"id": "Patient.contact.name", "path": "Patient.contact.name", "mustSupport": True},
        {"id": "Patient.contact.name.family", "path": "Patient.contact.name.family", "min": 1},
        {"id": "Patient.contact.telecom", "path": "Patient.contact.telecom", "mustSupport": True},
        {"id": "Patient.contact.telecom.use", "path": "Patient.contact.telecom.use", "mustSupport": True}])
    profiles = Profiles(Conformance([deep]))
    root = profiles.compiled(url).root  # type: ignore[union-attr]
    contact = root.children["contact"]
    assert root.live_children == [contact] and contact.live_children == [contact.children["name"]]
    assert not contact.children["telecom"].live

    def problems(*contacts: dict[str, Any]) -> list[str]:
        return [i.expression[0] for i in profiles.check({"resourceType": "Patient", "contact": list(contacts)}, [url])
                if i.severity == "error"]

    phone = {"system": "phone", "value": "1", "use": "home"}
    assert problems({"name": {"family": "Chalmers"}, "telecom": [phone]}) == []
    assert problems({"name": {"family": "Chalmers"}}, {"name": {"given": ["J"]}}) == ["Patient.contact[1].name.family"]
