"""Ingest throughput into the embedded store: transaction Bundles over HTTP, and `fhirlead load`.

    .venv/bin/pip install carebundle            # the data generator (bench only, not a dependency)
    .venv/bin/python bench/ingest.py [--resources 100000] [--distinct 200] [--store-dir DIR] [--concurrency 4 16]

Data: `--distinct` patients from carebundle (clinically coherent synthetic US Core R4 transaction
Bundles, all five of its profiles, seeded), each Bundle repeated with fresh `urn:uuid` fullUrls until
there are `--resources` resources. Every Bundle is a real transaction: placeholders resolved,
every resource validated against the R4 schema and indexed for every search parameter, one unit of
work per Bundle with a durable commit (synchronous=FULL, the server's setting).

Scenarios, each on a fresh SQLite file:
- `http`: every Bundle POSTed to the real app, built as `fhirlead serve` builds it (its start-up heap
  frozen, the collector's settings; httpx ASGI transport, in process: the HTTP stack without the
  network), one after another;
- `http-cN`: the same from N clients at once (`--concurrency`, default 4 and 16), as an EHR pushing in
  parallel does: concurrent transactions share commits (group commit);
- `load`: `fhirlead load DIR` in a subprocess, as a user runs it.

With authorization on (the server's default; `FHIRLEAD_AUTH=off` for none), the HTTP scenarios post as
a registered Backend Services client with a `system/*.cruds` token, as an EHR integration does: every
Bundle then also gets its sources recorded (meta.source, and a Provenance per transaction:
docs/sources.md) and its AuditEvent. `--scenarios http http-c4` runs a subset.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import re
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson

from fhirlead.api.app import create_app
from fhirlead.auth.registry import Client, hash_secret
from fhirlead.settings import Settings
from fhirlead.validation import ahead

BASE = "http://bench/fhir"
# as `fhirlead serve` (FHIRLEAD_VALIDATION_WORKER=off: none): a worker process validates transactions ahead
VALIDATE_AHEAD = Settings().validation_worker and ahead.available()
URN = re.compile(rb"urn:uuid:[0-9a-f\-]{36}")
PROFILE_NAMES = ("healthy", "type2_diabetes", "hypertension", "ckd_stage3", "anaemia")


def distinct_bundles(count: int) -> list[bytes]:
    from carebundle import generate_bundle, to_json

    bundles = []
    for seed in range(count):
        bundle = generate_bundle(profile=PROFILE_NAMES[seed % len(PROFILE_NAMES)], seed=seed,
                                 sex="F" if seed % 2 else "M", index=seed)
        bundles.append(orjson.dumps(orjson.loads(to_json(bundle, indent=0))))  # decimals stay JSON numbers
    return bundles


def with_fresh_placeholders(bundle: bytes) -> bytes:
    """The same Bundle with every urn:uuid replaced consistently by a new one (a new patient)."""
    fresh: dict[bytes, bytes] = {}
    return URN.sub(lambda found: fresh.setdefault(found[0], f"urn:uuid:{uuid.uuid4()}".encode()), bundle)


def data_set(resources: int, distinct: int, folder: Path) -> list[Path]:
    """Bundle files totalling at least `resources` entries (reused when already generated)."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"complete-{resources}-{distinct}"
    if marker.exists():
        return sorted(folder.glob("bundle-*.json"))
    for old in folder.glob("bundle-*.json"):
        old.unlink()
    started = time.perf_counter()
    templates = distinct_bundles(distinct)
    total, paths = 0, []
    while total < resources:
        template = templates[len(paths) % len(templates)]
        path = folder / f"bundle-{len(paths):05d}.json"
        path.write_bytes(with_fresh_placeholders(template))
        paths.append(path)
        total += template.count(b'"request"')
    marker.touch()
    print(f"generated {len(paths)} Bundles, {total:,} resources in {time.perf_counter() - started:.1f} s")
    return paths


async def over_http(paths: list[Path], db: Path, concurrency: int) -> tuple[int, float]:
    """POST every Bundle but the first (a warm-up) from `concurrency` clients at once."""
    app = create_app(Settings(store=f"sqlite:///{db}"), freeze_heap=True,
                     validate_ahead=VALIDATE_AHEAD)  # as `fhirlead serve` runs
    bodies = [path.read_bytes() for path in paths]
    transport = httpx.ASGITransport(app=app)
    headers = {"Content-Type": "application/fhir+json"}
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        if app.state.server.auth is not None:
            headers["Authorization"] = f"Bearer {await bench_token(app, client)}"
        warm = await client.post("", content=bodies[0], headers=headers)
        assert warm.status_code == 200, warm.text[:500]
        queue = iter(bodies[1:])
        resources = 0

        async def client_loop() -> None:
            nonlocal resources
            for body in queue:
                response = await client.post("", content=body, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"transaction failed: {response.text[:500]}")
                resources += len(response.json()["entry"])

        started = time.perf_counter()
        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        return resources, time.perf_counter() - started


@asynccontextmanager
async def fresh_client(db: Path) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The app in process on a new SQLite store at `db`, an HTTP client to it and the headers a write
    needs (a SMART backend client's token when authorization is on)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    app = create_app(Settings(store=f"sqlite:///{db}"), freeze_heap=True,
                     validate_ahead=VALIDATE_AHEAD)  # as `fhirlead serve` runs
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        headers = {"Content-Type": "application/fhir+json"}
        if app.state.server.auth is not None:
            headers["Authorization"] = f"Bearer {await bench_token(app, client)}"
        yield client, headers


async def bench_token(app: Any, client: httpx.AsyncClient) -> str:
    """A `system/*.cruds` token of a Backend Services client registered for the run (client_secret_basic)."""
    secret = "bench-ingest-secret-" + uuid.uuid4().hex
    await app.state.server.auth.registry.save_client(Client("bench-ingest", "Bench ingest feed", ["system/*.cruds"],
                                                            secret_hash=hash_secret(secret)))
    answer = await client.post(BASE.removesuffix("/fhir") + "/auth/token", auth=("bench-ingest", secret),
                               data={"grant_type": "client_credentials", "scope": "system/*.cruds"})
    answer.raise_for_status()
    return answer.json()["access_token"]


def with_load(folder: Path, db: Path) -> tuple[str, float]:
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "fhirlead.cli", "load", "--store", f"sqlite:///{db}", str(folder)],
        capture_output=True, text=True, check=False,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(result.stderr[-2000:])
    summary = next(line for line in result.stderr.splitlines() if line.startswith("loaded "))
    return summary, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=200)
    parser.add_argument("--store-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[4, 16],
                        help="clients of the concurrent HTTP scenarios")
    parser.add_argument("--scenarios", nargs="+", help="run only these (http, http-cN, load)")
    args = parser.parse_args()
    folder = args.store_dir / "ingest-bundles"
    paths = data_set(args.resources, args.distinct, folder)
    print(f"machine: {platform.machine()}, Python {platform.python_version()}, {len(paths)} Bundles")
    for scenario in ("http", *(f"http-c{clients}" for clients in args.concurrency), "load"):
        if args.scenarios and scenario not in args.scenarios:
            continue
        db = args.store_dir / f"ingest-{scenario}.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        if scenario.startswith("http"):
            concurrency = 1 if scenario == "http" else int(scenario.removeprefix("http-c"))
            resources, elapsed = asyncio.run(over_http(paths, db, concurrency))
            print(f"{scenario}: {resources:,} resources in {elapsed:.1f} s = {resources / elapsed:,.0f} resources/s "
                  f"({elapsed / (len(paths) - 1) * 1000:.1f} ms per Bundle of ~{resources // (len(paths) - 1)})")
        else:
            summary, elapsed = with_load(folder, db)
            print(f"load: {summary} (process wall time {elapsed:.1f} s, including start-up)")

if __name__ == "__main__":
    main()
