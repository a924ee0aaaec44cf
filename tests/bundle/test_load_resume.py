"""`fhirlead load` resumes: committed Bundles/chunks are journaled by content hash and skipped next time."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirlead import load
from fhirlead.api.app import create_app
from fhirlead.cli import main
from fhirlead.load import JOURNAL, load_files
from fhirlead.server import Server
from fhirlead.settings import Settings
from tests.bundle.helpers import bundle, entry
from tests.bundle.test_load import totals

SYSTEM = "urn:test:resume"


def patient(file: int, n: int, gender: str = "female") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"f{file}-p{n}"}], "gender": gender}


def write_bundles(folder: Path, files: int = 5, per_file: int = 3) -> list[Path]:
    """`files` transaction Bundles of `per_file` Patients (POST, no ids) with distinct identifiers."""
    folder.mkdir(exist_ok=True)
    paths = []
    for f in range(files):
        path = folder / f"bundle-{f}.json"
        body = bundle("transaction", *(entry("POST", "Patient", patient(f, n)) for n in range(per_file)))
        path.write_bytes(orjson.dumps(body))
        paths.append(path)
    return paths


async def patients(settings: Settings) -> int:
    return (await totals(settings, create_app, ["Patient"]))["Patient"]


async def journal(settings: Settings) -> dict[str, dict[str, Any]]:
    server = await Server.start(settings)
    try:
        return {record.key: record.doc for record in await server.store.records.list(JOURNAL)}
    finally:
        await server.stop()


async def test_a_second_load_skips_everything_already_loaded(settings: Settings, tmp_path: Path) -> None:
    files = write_bundles(tmp_path / "in")
    first = await load_files(settings, files)
    assert first.failures == [] and first.counts == {"Patient": 15} and first.skipped_units == 0
    records = await journal(settings)
    assert len(records) == 5
    assert records[hashlib.sha256(files[0].read_bytes()).hexdigest()] == {"where": str(files[0]), "resources": 3}

    second = await load_files(settings, files)
    assert second.failures == [] and second.total == 0
    assert second.skipped == {"Bundle": 5} and second.skipped_resources == 15
    assert set(second.skipped_files) == {str(path) for path in files}
    assert await patients(settings) == 15


async def test_after_a_crash_only_the_missing_bundles_load(settings: Settings, tmp_path: Path) -> None:
    files = write_bundles(tmp_path / "in")
    await load_files(settings, files[:3])  # the run that "crashed" after three Bundles
    report = await load_files(settings, files)
    assert report.counts == {"Patient": 6} and report.skipped == {"Bundle": 3} and report.skipped_resources == 9
    assert await patients(settings) == 15


async def test_a_failing_bundle_is_not_journaled_and_loads_once_fixed(settings: Settings, tmp_path: Path) -> None:
    files = write_bundles(tmp_path / "in")
    good_bytes = files[2].read_bytes()
    files[2].write_bytes(orjson.dumps(bundle("transaction", entry("POST", "Patient", patient(2, 0)),
                                             entry("POST", "Patient", patient(2, 1, gender="nonsense")))))
    first = await load_files(settings, files)
    assert len(first.failures) == 1 and "bundle-2.json" in first.failures[0]
    assert first.counts == {"Patient": 12}
    assert str(files[2]) not in {doc["where"] for doc in (await journal(settings)).values()}
    assert await patients(settings) == 12

    files[2].write_bytes(good_bytes)
    second = await load_files(settings, files)
    assert second.failures == [] and second.counts == {"Patient": 3} and second.skipped == {"Bundle": 4}
    assert set(second.skipped_files) == {str(path) for path in files} - {str(files[2])}
    assert await patients(settings) == 15


async def test_reload_ignores_the_journal(settings: Settings, tmp_path: Path) -> None:
    files = write_bundles(tmp_path / "in")
    await load_files(settings, files)
    report = await load_files(settings, files, reload=True)
    assert report.counts == {"Patient": 15} and report.skipped_units == 0
    assert await patients(settings) == 30


async def test_ndjson_chunks_are_journaled_one_by_one(settings: Settings, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "CHUNK", 4)
    path = tmp_path / "patients.ndjson"
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"p{n}"}) for n in range(10)]
    path.write_bytes(b"\n".join(lines[:8]))  # a partial export: two chunks
    first = await load_files(settings, [path])
    assert first.counts == {"Patient": 8}
    assert sorted(doc["where"] for doc in (await journal(settings)).values()) == [f"{path}:1-4", f"{path}:5-8"]
    path.write_bytes(b"\n".join(lines))  # the complete export: the two chunks again, and a third
    second = await load_files(settings, [path])
    assert second.counts == {"Patient": 2} and second.skipped == {"NDJSON chunk": 2} and second.skipped_resources == 8


def test_without_a_terminal_progress_is_a_line_per_n_resources(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "PROGRESS_EVERY", 6)
    monkeypatch.setattr(load, "GROUP", 3)  # a commit per Bundle, so the counts move Bundle by Bundle
    folder = tmp_path / "in"
    write_bundles(folder)
    store = f"sqlite:///{tmp_path / 'cli.db'}"

    assert main(["load", "--store", store, str(folder)]) == 0
    err = capsys.readouterr().err
    progress = [line.split()[0] for line in err.splitlines() if "resources/s" not in line and "/s " in line]
    assert progress == ["6", "12", "15"]  # every 6 resources, and the final line
    assert "loaded 15 resources from 5 of 5 files" in err and "skipped" not in err

    assert main(["load", "--store", store, str(folder)]) == 0
    err = capsys.readouterr().err
    assert "loaded 0 resources" in err
    assert "skipped 5 Bundles (15 resources) already loaded" in err
    assert f"skipped {folder / 'bundle-0.json'}: 1 unit (3 resources)" in err

    assert main(["load", "--store", store, "--reload", str(folder)]) == 0
    err = capsys.readouterr().err
    assert "loaded 15 resources from 5 of 5 files" in err and "skipped" not in err
