"""`kill -9` in the middle of everything: a live server under concurrent creates and transactions, and a
`fhirlead load` writing to the same SQLite store, are killed at once. After a restart every write that
was acknowledged is there, exactly once; no transaction Bundle and no loaded Bundle is there in part;
and running the same load again completes it without loading anything twice (the load journal commits
with the resources it lists)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import httpx
import orjson

from tests.clients.live import LiveServer, environment, spawn

SYSTEM = "urn:fhirlead-crash-test"
LOAD_FILES, PER_FILE = 300, 40  # 12,000 Patients: more than two of the loader's commit groups
TRANSACTION_SIZE = 4


def patient(value: str) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": value}]}


def write_load_files(folder: Path) -> None:
    folder.mkdir()
    for number in range(LOAD_FILES):
        entries = [{"resource": patient(f"load-{number}-{k}"), "request": {"method": "POST", "url": "Patient"}}
                   for k in range(PER_FILE)]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        (folder / f"bundle-{number:03}.json").write_bytes(orjson.dumps(bundle))


def journaled(database: Path) -> int:
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as conn:
        try:
            return conn.execute("SELECT count(*) FROM records WHERE kind = 'load-journal'").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not there yet
            return 0


async def keep_writing(client: httpx.AsyncClient, worker: int, acknowledged: set[str], stop: asyncio.Event) -> None:
    """Creates and transaction Bundles until the server is gone; what it answered 201/200 is acknowledged."""
    number = 0
    while not stop.is_set():
        number += 1
        try:
            if number % 2:
                value = f"create-{worker}-{number}"
                answer = await client.post("Patient", json=patient(value))
                if answer.status_code == 201:
                    acknowledged.add(value)
            else:
                values = [f"tx-{worker}-{number}-{k}" for k in range(TRANSACTION_SIZE)]
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"resource": patient(value), "request": {"method": "POST", "url": "Patient"}} for value in values]}
                answer = await client.post("", json=bundle)
                if answer.status_code == 200:
                    acknowledged.update(values)
        except httpx.TransportError:
            return  # killed


def identifiers(server: LiveServer, token: str) -> Counter[str]:
    """How often each identifier value of SYSTEM occurs among the stored Patients."""
    found: Counter[str] = Counter()
    url: str | None = f"{server.fhir}/Patient?identifier={SYSTEM}|&_count=1000&_elements=identifier"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        while url:
            page = client.get(url)
            assert page.status_code == 200, page.text
            body = page.json()
            for entry in body.get("entry", []):
                found.update(i["value"] for i in entry["resource"]["identifier"] if i["system"] == SYSTEM)
            url = next((link["url"] for link in body.get("link", []) if link["relation"] == "next"), None)
    return found


def load(server: LiveServer, folder: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fhirlead.cli", "load", "--store", server.store, str(folder)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment(), text=True)


async def test_kill_9_loses_no_acknowledged_write_and_tears_no_bundle(tmp_path: Path) -> None:
    files = tmp_path / "bundles"
    write_load_files(files)
    database = tmp_path / "live.db"
    process, server = spawn(tmp_path)
    loader: subprocess.Popen | None = None
    acknowledged: set[str] = set()
    try:
        token = server.backend_token("system/*.cruds")
        stop = asyncio.Event()
        async with httpx.AsyncClient(base_url=server.fhir + "/", timeout=30,
                                     headers={"Authorization": f"Bearer {token}"}) as client:
            writers = [asyncio.create_task(keep_writing(client, n, acknowledged, stop)) for n in range(8)]
            loader = load(server, files)
            deadline = time.monotonic() + 120
            while journaled(database) == 0 and loader.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert loader.poll() is None, "the load ended before the kill: the test needs a bigger load"
            assert len(acknowledged) > 0, "no write was acknowledged before the kill"
            process.send_signal(signal.SIGKILL)
            loader.send_signal(signal.SIGKILL)
            process.wait()
            loader.wait()
            stop.set()
            await asyncio.gather(*writers)
    finally:
        for child in (process, loader):
            if child is not None and child.poll() is None:
                child.kill()
                child.wait()

    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    journal_after_kill = journaled(database)
    assert 0 < journal_after_kill < LOAD_FILES

    process, server = spawn(tmp_path)
    try:
        token = server.backend_token("system/*.rs")
        stored = identifiers(server, token)
        assert not [value for value, count in stored.items() if count > 1], "a write was stored twice"
        assert acknowledged <= set(stored), f"acknowledged but lost: {sorted(acknowledged - set(stored))[:10]}"
        bundles = Counter(value.rsplit("-", 1)[0] for value in stored if value.startswith(("tx-", "load-")))
        torn = {bundle: count for bundle, count in bundles.items()
                if count != (TRANSACTION_SIZE if bundle.startswith("tx-") else PER_FILE)}
        assert not torn, f"Bundles stored in part: {torn}"
        loaded = {bundle for bundle in bundles if bundle.startswith("load-")}
        assert len(loaded) == journal_after_kill  # the journal names exactly the Bundles that are in the store

        rerun = load(server, files)
        output, _ = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, output
        assert f"skipped {journal_after_kill:,} Bundle" in output, output  # it says what it skipped
        stored = identifiers(server, token)
        expected = {f"load-{n}-{k}" for n in range(LOAD_FILES) for k in range(PER_FILE)}
        assert expected <= set(stored) and max(stored.values()) == 1
    finally:
        process.terminate()
        process.wait(timeout=30)
