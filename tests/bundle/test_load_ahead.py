"""`fhirlead load` with its validation worker (fhirlead/validation/ahead.py): the worker validates the units
ahead of the writes, and the load writes exactly what it would write alone — the same ids in the
references, the same refusals — while the worker's verdicts save the loader the validation."""

from __future__ import annotations

import argparse
import asyncio
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhirlead import load
from fhirlead.api.app import create_app
from fhirlead.bundles.entries import Entry
from fhirlead.load import load_files
from fhirlead.server import Server
from fhirlead.settings import Settings
from fhirlead.sources import of_operator
from fhirlead.validation import ahead
from tests.bundle.helpers import bundle, entry
from tests.tokens import bearer
from tests.validation.test_live_definitions import VALUE_SET, patient, profile

pytestmark = pytest.mark.skipif(not ahead.available(), reason="the worker needs Linux and a second core")


def care_bundle(path: Path, number: int) -> Path:
    """A transaction like an EHR's: a new Patient, an Encounter and two Observations naming it by placeholder."""
    patient_url = f"urn:uuid:00000000-0000-4000-8000-{number:012d}"
    encounter_url = f"urn:uuid:{number:08d}-e000-4000-8000-000000000000"
    narrative = f'<div xmlns="http://www.w3.org/1999/xhtml">HbA1c of {patient_url}</div>'
    mrn = {"system": "urn:mrn", "value": f"m{number}"}
    ambulatory = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    subject = {"reference": patient_url}
    entries = [
        entry("POST", "Patient", {"resourceType": "Patient", "identifier": [mrn], "gender": "female",
                                  "birthDate": "1960-05-01"}, full_url=patient_url),
        entry("POST", "Encounter", {"resourceType": "Encounter", "status": "finished", "class": ambulatory,
                                    "subject": subject}, full_url=encounter_url),
        *(entry("POST", "Observation", {
            "resourceType": "Observation", "status": "final", "code": {"text": f"m{number}"}, "subject": subject,
            "encounter": {"reference": encounter_url}, "valueQuantity": {"value": value, "unit": "%"},
            "text": {"status": "generated", "div": narrative},
        }) for value in (7.1, 9.4)),
    ]
    path.write_bytes(orjson.dumps(bundle("transaction", *entries)))
    return path


async def everything(settings: Settings, type_: str) -> list[dict[str, Any]]:
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver/fhir",
            headers=await bearer(app)) as client:
        found = (await client.get(type_, params={"_count": "1000"})).json()
        return [item["resource"] for item in found.get("entry", [])]


async def test_the_worker_validates_every_resource_and_the_references_name_the_ids_written(
        settings: Settings, tmp_path: Path) -> None:
    files = [care_bundle(tmp_path / f"b{number:03d}.json", number) for number in range(40)]
    report = await load_files(settings, files, ahead=True)
    assert not report.failures and report.total == 160
    assert report.validated_ahead == 160  # the worker made each resource exactly as the transaction did
    patients = {item["identifier"][0]["value"]: item["id"] for item in await everything(settings, "Patient")}
    encounters = {item["id"]: item["subject"]["reference"] for item in await everything(settings, "Encounter")}
    observations = await everything(settings, "Observation")
    assert len(patients) == 40 and len(encounters) == 40 and len(observations) == 80
    for observation in observations:
        subject = f"Patient/{patients[observation['code']['text']]}"
        assert observation["subject"]["reference"] == subject
        assert encounters[observation["encounter"]["reference"].removeprefix("Encounter/")] == subject
        assert subject in observation["text"]["div"]  # placeholders in the narrative rewritten as well


async def test_ndjson_resources_with_ids_are_validated_by_the_worker(settings: Settings, tmp_path: Path) -> None:
    ndjson = tmp_path / "patients.ndjson"  # two chunks of PUTs, as a bulk export is loaded
    ndjson.write_bytes(b"\n".join(orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "gender": "female"})
                                  for n in range(700)))
    report = await load_files(settings, [ndjson], source=of_operator("https://ehr.example/fhir", None), ahead=True)
    assert not report.failures and report.total == 700 and report.validated_ahead == 700
    patients = await everything(settings, "Patient")
    assert {item["meta"]["source"] for item in patients} == {"https://ehr.example/fhir"}


async def test_an_invalid_resource_is_refused_as_without_the_worker(settings: Settings, tmp_path: Path) -> None:
    good = [care_bundle(tmp_path / f"b{number}.json", number) for number in range(3)]
    bad_body = orjson.loads(care_bundle(tmp_path / "bad.json", 99).read_bytes())
    del bad_body["entry"][2]["resource"]["status"]  # Observation.status is required
    (tmp_path / "bad.json").write_bytes(orjson.dumps(bad_body))
    report = await load_files(settings, [good[0], tmp_path / "bad.json", *good[1:]], ahead=True)
    assert report.total == 12 and len(report.failures) == 1
    assert "bad.json" in report.failures[0] and "Bundle.entry[2]" in report.failures[0]
    assert "status" in report.failures[0]
    assert len(await everything(settings, "Patient")) == 3  # nothing of the refused Bundle


async def test_conditional_entries_and_references_are_validated_by_the_loader(
        settings: Settings, tmp_path: Path) -> None:
    first = care_bundle(tmp_path / "a.json", 1)
    conditional = tmp_path / "c.json"
    conditional.write_bytes(orjson.dumps(bundle("transaction", entry("POST", "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "m1"},
        "subject": {"reference": "Patient?identifier=urn:mrn|m1"}}))))
    once = tmp_path / "once.json"
    once.write_bytes(orjson.dumps(bundle("transaction", entry(
        "POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "m1"}]},
        ifNoneExist="identifier=urn:mrn|m1"))))
    report = await load_files(settings, [first, conditional, once], ahead=True)
    assert not report.failures and report.validated_ahead == 4  # only the first Bundle's
    patients = await everything(settings, "Patient")
    assert len(patients) == 1  # ifNoneExist matched the first Bundle's Patient
    subjects = {item["subject"]["reference"] for item in await everything(settings, "Observation")}
    assert subjects == {f"Patient/{patients[0]['id']}"}


async def test_a_profile_loaded_on_the_way_holds_what_follows_it(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's validator is the loader's at the start, and definitions committed later reach it in
    order: a verdict made before they did is not used (the loader validates with the new profile), as a
    load without the worker does."""
    monkeypatch.setattr(load, "GROUP", 1)  # a commit per Bundle: the profile is in force for the next
    before = [care_bundle(tmp_path / f"a{number}.json", number) for number in range(3)]
    definitions = tmp_path / "definitions.json"
    definitions.write_bytes(orjson.dumps(bundle("transaction", entry("POST", "StructureDefinition", profile()),
                                                 entry("POST", "ValueSet", VALUE_SET))))
    refused = tmp_path / "z-patient.json"
    refused.write_bytes(orjson.dumps(patient(gender="female")))  # no birthDate: the profile needs one
    report = await load_files(settings, [*before, definitions, refused], ahead=True)
    assert report.validated_ahead == 14  # the Patient was validated by the loader, with the new profile
    assert len(report.failures) == 1 and "z-patient.json" in report.failures[0]
    assert "birthDate" in report.failures[0]


async def test_a_worker_that_is_gone_leaves_the_validation_to_the_loader(settings: Settings, tmp_path: Path) -> None:
    server = await Server.start(settings)
    validation = ahead.AheadValidation(server)
    try:
        first = validation.offer(partial(load.file_entries, care_bundle(tmp_path / "a.json", 1).read_bytes(), "a"), 1)
        assert await asyncio.wait_for(validation.verdict(first), 10) is not None
        second = validation.offer(partial(load.file_entries, care_bundle(tmp_path / "b.json", 2).read_bytes(), "b"), 1)
        validation.process.kill()
        assert await asyncio.wait_for(validation.verdict(second), 10) is None
    finally:
        validation.stop()
        await server.stop()


def unit_entries() -> list[Entry]:
    raise load.LoadError("unreadable")


async def test_a_unit_the_worker_cannot_read_gets_a_verdict_that_vouches_for_nothing(settings: Settings) -> None:
    server = await Server.start(settings)
    validation = ahead.AheadValidation(server)
    try:
        seq = validation.offer(unit_entries, 1)
        verdict = await asyncio.wait_for(validation.verdict(seq), 10)
        assert verdict is not None and verdict.vouched == {} and verdict.ids == []
        assert await validation.verdict(seq) is None  # asked once
    finally:
        validation.stop()
        await server.stop()


def test_the_cli_validates_ahead_unless_told_not_to(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(care_bundle(tmp_path / f"b{number}.json", number)) for number in range(3)]
    for one_process, store in ((False, "ahead.db"), (True, "alone.db")):
        args = argparse.Namespace(paths=files, store=f"sqlite:///{tmp_path / store}", reload=False, source=None,
                                  organization=None, one_process=one_process)
        assert load.run(args) == 0
        said = capsys.readouterr().err
        assert "loaded 12 resources" in said
        assert ("validated ahead by a worker process: 12" in said) is not one_process

