"""`fhirlead load`: real Synthea exports and NDJSON files into a store, checked through the API."""

from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhirlead import load
from fhirlead.load import load_files
from fhirlead.settings import Settings
from fhirlead.validation import ahead as validation_ahead
from tests.bundle.helpers import count
from tests.tokens import bearer

SHARED_DATA = Path(os.environ.get("FHIRLEAD_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
SYNTHEA = SHARED_DATA / "synthea"
BASE = "http://testserver/fhir"
NIMBUS = SYNTHEA / "nimbus-covid19-juvenile"
EXM130 = SYNTHEA / "cqframework-exm130"
needs_synthea = pytest.mark.skipif(
    not NIMBUS.is_dir(), reason=f"the shared Synthea data is not at {SYNTHEA} (set FHIRLEAD_SHARED_DATA)"
)


def entries_by_type(*files: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for path in files:
        counts.update(item["resource"]["resourceType"] for item in orjson.loads(path.read_bytes())["entry"])
    return counts


def conditional_targets(bundle_file: Path) -> list[dict[str, Any]]:
    """One resource per conditional reference target (`Type?identifier=system|value`) the Bundle uses."""
    targets = set()
    for line in bundle_file.read_text().splitlines():
        if '"reference": "' in line and "?identifier=" in line:
            reference = line.split('"reference": "')[1].split('"')[0]
            type_, _, criteria = reference.partition("?identifier=")
            targets.add((type_, *criteria.split("|", 1)))
    return [{"resourceType": type_, "identifier": [{"system": system, "value": value}]}
            | ({"name": "synthea target"} if type_ in ("Organization", "Location") else {})
            for type_, system, value in sorted(targets)]


async def totals(settings: Settings, app_factory: Any, types: list[str]) -> dict[str, int]:
    app = app_factory(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver/fhir",
                                     headers=await bearer(app)) as client:
            return {type_: await count(client, type_) for type_ in types}


@needs_synthea
@pytest.mark.parametrize("ahead", [False, pytest.param(True, marks=pytest.mark.skipif(
    not validation_ahead.available(), reason="the validation worker needs Linux and a second core"))])
async def test_loading_every_synthea_file_gives_the_counts_per_type(
        settings: Settings, tmp_path: Path, ahead: bool) -> None:
    from fhirlead.api.app import create_app

    exm130 = next(EXM130.glob("*.json"))
    targets = tmp_path / "targets.ndjson"
    targets.write_bytes(b"\n".join(orjson.dumps(r) for r in conditional_targets(exm130)))
    files = [*sorted(NIMBUS.glob("*.json")), targets, exm130]
    report = await load_files(settings, files, ahead=ahead)
    assert report.failures == []
    nimbus = sum(entries_by_type(*NIMBUS.glob("*.json")).values())  # placeholders only: the worker's to validate
    assert report.validated_ahead >= (nimbus if ahead else 0)
    expected = entries_by_type(*NIMBUS.glob("*.json"), exm130)
    expected.update(r["resourceType"] for r in conditional_targets(exm130))
    assert report.counts == expected
    found = await totals(settings, create_app, sorted(expected))
    assert found == dict(expected)
    # references were rewritten to stored ids: every Encounter's subject resolves to a loaded Patient
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport, base_url=BASE, headers=await bearer(app)
    ) as c:
        with_patient = await c.get("Encounter?_count=1000&_include=Encounter:subject")
        bundle = with_patient.json()
        subjects = {e["resource"]["subject"]["reference"] for e in bundle["entry"]
                    if e["search"]["mode"] == "match"}
        included = {f"Patient/{e['resource']['id']}" for e in bundle["entry"] if e["search"]["mode"] == "include"}
        assert subjects and subjects == included
        # conditional references were resolved to the pre-loaded Practitioners
        npi = next(t for t in conditional_targets(exm130) if t["resourceType"] == "Practitioner")
        by_npi = await c.get("Encounter?participant:Practitioner.identifier=http://hl7.org/fhir/sid/us-npi|"
                             + npi["identifier"][0]["value"] + "&_summary=count")
        assert by_npi.status_code == 200 and by_npi.json()["total"] >= 1


@needs_synthea
def test_a_bundle_with_unresolvable_references_fails_clearly_and_leaves_nothing(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cli.db'}"
    exm130 = next(EXM130.glob("*.json"))
    result = subprocess.run([sys.executable, "-m", "fhirlead.cli", "load", "--store", store, str(exm130)],
                        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "FAILED" in result.stderr and exm130.name in result.stderr
    assert "Practitioner?identifier=" in result.stderr and "matches no resource" in result.stderr
    assert "loaded 0 resources" in result.stderr


async def test_ndjson_loads_in_chunks_and_a_bad_line_is_named(settings: Settings, tmp_path: Path) -> None:
    from fhirlead.api.app import create_app

    good = tmp_path / "patients.ndjson.gz"
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "gender": "female"}) for n in range(1200)]
    good.write_bytes(gzip.compress(b"\n".join(lines)))
    bad = tmp_path / "bad.ndjson"
    bad_lines = [orjson.dumps({"resourceType": "Observation", "id": f"o{n}", "status": "final",
                           "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}) for n in range(10)]
    bad_lines[6] = b'{"resourceType": "Observation", "id": "o6", "status": "nonsense", "code": {"text": "x"}}'
    bad.write_bytes(b"\n".join(bad_lines))
    report = await load_files(settings, [good, bad])
    assert report.counts == {"Patient": 1200}
    assert len(report.failures) == 1 and "bad.ndjson lines 1-10" in report.failures[0]
    assert await totals(settings, create_app, ["Patient", "Observation"]) == {"Patient": 1200, "Observation": 0}


async def test_files_that_are_not_json_or_repeat_a_name_are_named_and_the_others_load(
        settings: Settings, tmp_path: Path) -> None:
    """A file's kind is read from its resourceType alone; a file that is not JSON, nests too deep or
    repeats a property name is refused with the reason, and the rest of the load goes on."""
    patient = {"resourceType": "Patient", "id": "single", "gender": "male"}
    (tmp_path / "a-broken.json").write_bytes(b'{"resourceType": "Bundle", "type": "transaction", "entry": [')
    (tmp_path / "b-repeated.json").write_bytes(b'{"resourceType": "Patient", "id": "x", "id": "y"}')
    (tmp_path / "c-deep.json").write_bytes(b'{"resourceType": "Basic", "x": ' + b"[" * 300 + b"]" * 300 + b"}")
    (tmp_path / "d-single.json").write_bytes(b"\xef\xbb\xbf" + orjson.dumps(patient))
    (tmp_path / "e-bundle.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": {"resourceType": "Patient", "id": f"b{n}"}} for n in range(3)]}))
    report = await load_files(settings, sorted(tmp_path.glob("*.json")))
    assert report.counts == {"Patient": 4}
    assert [failure.split(": ", 1)[0].rsplit("/", 1)[-1] for failure in report.failures] == [
        "a-broken.json", "b-repeated.json", "c-deep.json"]
    assert "not valid JSON" in report.failures[0]
    assert "repeats the property name 'id'" in report.failures[1]
    assert "nests objects and arrays more than" in report.failures[2]


def test_an_interrupted_load_says_how_to_go_on(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(*args: Any, **kwargs: Any) -> load.Report:
        raise KeyboardInterrupt  # as Ctrl-C reaches asyncio.run

    (tmp_path / "b.json").write_bytes(b'{"resourceType": "Patient"}')
    monkeypatch.setattr(load, "load_files", interrupted)
    args = argparse.Namespace(paths=[str(tmp_path / "b.json")], store=f"sqlite:///{tmp_path / 's.db'}",
                              reload=False, source=None, organization=None, one_process=False)
    assert load.run(args) == 130
    assert "interrupted" in capsys.readouterr().err
