"""ATR attribution lists at 100 and at 100,000 members, against a live `fhirlead serve` on loopback.

    .venv/bin/python bench/attribution.py [--sizes 100,100000] [--ops 200]

Per size, on a fresh SQLite store: a Group of that many members (written through the store, as a PUT or a
load would), then over HTTP with a system token: `$member-add` of `--ops` new patients one after the
other (p50/p95), the same number of `$member-remove` (the list is open: removed), `Group?member=` for one
member, the whole list (`GET Group/[id]`) and `_summary=true`; and how much the database grows per
`$member-add` (file size after a WAL checkpoint, divided by the number of adds). MongoDB is not measured:
no MongoDB runs here (mongomock scans every document per query and would measure nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx
from bench_token import bench_token
from rest import free_port

from fhirlead.search.extract import Extractor
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.factory import open_store

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
JSON = {"Content-Type": "application/fhir+json"}


def member(n: int) -> dict:
    return {"extension": [{"url": ATR + "ext-changeType", "valueCode": "nochange"},
                          {"url": ATR + "ext-attributedProvider",
                           "valueReference": {"reference": f"Practitioner/pr-{n % 500}"}}],
            "entity": {"reference": f"Patient/p-{n}"}, "period": {"start": "2026-01-01"}}


async def prepare(store_url: str, size: int, ops: int) -> float:
    """The list and the patients the operations name; seconds the list's write took."""
    store = open_store(store_url)
    await store.open()
    extractor = Extractor(SearchRegistry.default())
    group = {"resourceType": "Group", "id": "list", "type": "person", "actual": True,
             "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "open"}],
             "member": [member(n) for n in range(size)]}
    started = time.perf_counter()
    async with store.unit_of_work() as uow:
        await uow.write("Group", "list", group, extractor.extract(group), "PUT")
    took = time.perf_counter() - started
    async with store.unit_of_work() as uow:
        for resource in [{"resourceType": "Patient", "id": f"new-{n}"} for n in range(ops)] + [
                {"resourceType": "Practitioner", "id": "pr-1"}]:
            await uow.write(resource["resourceType"], resource["id"], resource, extractor.extract(resource), "PUT")
    await store.close()
    return took


def size_on_disk(path: Path) -> int:
    with closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path.stat().st_size


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"p50 {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


def timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    answer = client.request(method, url, **kwargs)
    took = time.perf_counter() - started
    if answer.status_code != 200:
        raise SystemExit(f"{method} {url} -> {answer.status_code}: {answer.text[:300]}")
    return took, answer


def run(size: int, ops: int, folder: Path) -> None:
    database = folder / f"list-{size}.db"
    store_url = f"sqlite:///{database}"
    write_seconds = asyncio.run(prepare(store_url, size, ops))
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store",
                               store_url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "FHIRLEAD_LOG_LEVEL": "warning"})
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{root}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        token = bench_token(store_url, root)
        with httpx.Client(base_url=f"{root}/fhir/", timeout=120,
                          headers={"Authorization": f"Bearer {token}", **JSON}) as client:
            before = size_on_disk(database)
            adds = [timed(client, "POST", "Group/list/$member-add", json={"resourceType": "Parameters", "parameter": [
                {"name": "patientReference", "valueReference": {"reference": f"Patient/new-{n}"}},
                {"name": "providerReference", "valueReference": {"reference": "Practitioner/pr-1"}}]})[0]
                for n in range(ops)]
            growth = (size_on_disk(database) - before) / ops
            removes = [timed(client, "POST", "Group/list/$member-remove", json={
                "resourceType": "Parameters", "parameter": [
                    {"name": "patientReference", "valueReference": {"reference": f"Patient/new-{n}"}}]})[0]
                for n in range(ops)]
            search = [timed(client, "GET", f"Group?member=Patient/p-{size // 2}&_summary=true")[0] for _ in range(20)]
            summary = [timed(client, "GET", "Group/list?_summary=true")[0] for _ in range(20)]
            whole = [timed(client, "GET", "Group/list")[0] for _ in range(3)]
        print(f"{size:>7,} members: list written in {write_seconds:.2f} s")
        print(f"  $member-add     {percentiles(adds)}   (database +{growth:,.0f} bytes per add)")
        print(f"  $member-remove  {percentiles(removes)}")
        print(f"  Group?member=   {percentiles(search)}")
        print(f"  GET _summary    {percentiles(summary)}")
        print(f"  GET whole list  best {min(whole):.2f} s of {len(whole)}")
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,100000")
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="fhirlead-attribution-"))
    try:
        print(f"machine: {os.cpu_count()} cores; SQLite store, live server, one client")
        for size in (int(s) for s in args.sizes.split(",")):
            run(size, args.ops, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
