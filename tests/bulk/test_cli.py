"""`fhirlead export`: the offline export of a store filled over HTTP, checked against what the API answers
(on SQLite, and on MongoDB over mongomock when FHIRLEAD_TEST_BACKEND=mongomock)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from fhirlead.cli import main
from fhirlead.settings import Settings
from tests.bulk.data import RECORD, load, observation, stored


async def export(*args: str) -> int:
    """The command as a user runs it (its own event loop, in a thread: the test's loop is busy)."""
    return await asyncio.to_thread(main, ["export", *args])


def written(out: Path) -> dict[str, list[bytes]]:
    return {path.stem: path.read_bytes().splitlines() for path in sorted(out.glob("*.ndjson"))}


async def search_ids(client: httpx.AsyncClient, type_: str) -> list[str]:
    answer = await client.get(type_, params={"_count": "1000", "_elements": "id"})
    assert answer.status_code == 200, answer.text
    return sorted(entry["resource"]["id"] for entry in answer.json().get("entry", []))


async def test_export_writes_every_resource_as_stored(settings: Settings, idle_client: httpx.AsyncClient,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await load(idle_client)
    out = tmp_path / "out"
    assert await export("--store", settings.store, "--out", str(out)) == 0
    files = written(out)
    ours = {r["resourceType"] for r in RECORD}
    assert ours <= set(files) and "AuditEvent" not in files  # the trail is not exported, as by $export
    for type_, lines in files.items():
        assert sorted(orjson.loads(line)["id"] for line in lines) == await search_ids(idle_client, type_)
        for line in lines:  # each line is the resource exactly as a read answers it
            assert line == await stored(idle_client, type_, orjson.loads(line)["id"])
    summary = capsys.readouterr().out
    total = sum(len(lines) for lines in files.values())
    assert f"exported {total:,} resources in {len(files)} files" in summary
    assert "Observation.ndjson  4 resources" in summary


async def test_type_and_since(settings: Settings, idle_client: httpx.AsyncClient, tmp_path: Path) -> None:
    await load(idle_client)
    await load(idle_client, [observation("o5", "ann"), observation("o1", "ann", value=9.9)])
    since = (await idle_client.get("Observation/o5")).json()["meta"]["lastUpdated"]  # the first later write
    out = tmp_path / "some"
    assert await export("--store", settings.store, "--out", str(out), "--type", "Observation,Condition",
                        "--type", "Patient") == 0
    assert {t: len(lines) for t, lines in written(out).items()} == {"Observation": 5, "Condition": 1, "Patient": 3}
    later = tmp_path / "later"
    assert await export("--store", settings.store, "--out", str(later), "--type", "Observation",
                        "--since", since) == 0
    lines = written(later)["Observation"]
    assert sorted(orjson.loads(line)["id"] for line in lines) == ["o1", "o5"]
    assert next(orjson.loads(line) for line in lines if b'"o1"' in line)["valueQuantity"]["value"] == 9.9


async def test_an_empty_store_writes_no_file(settings: Settings, idle_client: httpx.AsyncClient,
                                             tmp_path: Path) -> None:
    out = tmp_path / "none"
    assert await export("--store", settings.store, "--out", str(out), "--type", "Observation") == 0
    assert written(out) == {}


async def test_bad_input_is_refused_with_a_message(settings: Settings, idle_client: httpx.AsyncClient,
                                                   tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    await load(idle_client, RECORD[:1])
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "Patient.ndjson").write_text("{}\n")
    store, out = settings.store, str(tmp_path / "out")
    cases = {
        "no such database file": ["--store", f"sqlite:///{tmp_path / 'missing.db'}", "--out", out],
        "Unsupported store URL": ["--store", "postgres://db/fhir", "--out", out],
        "not a FHIR R4 resource type": ["--store", store, "--out", out, "--type", "Patient,Nonsense"],
        "audit trail is not exported": ["--store", store, "--out", out, "--type", "AuditEvent"],
        "names no resource type": ["--store", store, "--out", out, "--type", ","],
        "give an instant with its time zone": ["--store", store, "--out", out, "--since", "2026-01-01"],
        "cannot write there": ["--store", store, "--out", str(blocker / "sub")],
        "Patient.ndjson is already there": ["--store", store, "--out", str(taken)],
    }
    for message, args in cases.items():
        assert await export(*args) == 1, args
        error = capsys.readouterr().err
        assert error.startswith("fhirlead export: ") and message in error, (args, error)
        assert "Traceback" not in error
    assert not (tmp_path / "missing.db").exists()  # the export never creates a store
    assert (taken / "Patient.ndjson").read_text() == "{}\n"


def test_command_line_in_a_process(tmp_path: Path) -> None:
    """The installed command (a subprocess, SQLite): usage errors from argparse, exit codes, the summary."""
    missing = subprocess.run([sys.executable, "-m", "fhirlead.cli", "export", "--out", str(tmp_path)],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "--store" in missing.stderr
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    from fhirlead.storage.factory import open_store

    async def create() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    asyncio.run(create())
    done = subprocess.run([sys.executable, "-m", "fhirlead.cli", "export", "--store", url, "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("exported 0 resources in 0 files")
