"""What the audit trail costs a read: Patient reads/s with the trail on vs. off, in process.

    .venv/bin/python bench/audit.py [--reads 2000] [--patients 200] [--concurrency 16] [--rounds 3]
                                    [--writer process|inline]

Starts the app in this process (httpx ASGI transport, no sockets) on a temporary SQLite store with
authorization on, creates `--patients` Patients, then times `--reads` reads of them with a
`system/*.cruds` bearer token: once with the audit trail recording every read, once with
`server.audit = None`, alternating for `--rounds` rounds. "on" is timed twice: until the last answer
(what a client sees), and until the trail has also written every queued AuditEvent (the whole cost).
A third timing, "recorded only", builds and queues every event but skips indexing and storing them:
the share of the cost that is on the request path itself. `--writer` chooses where the events are
built and stored (FHIRLEAD_AUDIT_WRITER): a writer process (the server's default) or the server process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from fhirlead.api.app import create_app
from fhirlead.auth.tokens import Authorization
from fhirlead.settings import Settings

ROOT = "http://bench"
BASE = f"{ROOT}/fhir"


def patient(number: int) -> bytes:
    return orjson.dumps({
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": f"MRN-{number}"}],
        "name": [{"family": f"Family{number % 997}", "given": [f"Given{number}"]}],
        "gender": "female" if number % 2 else "male",
        "birthDate": f"19{50 + number % 50}-0{1 + number % 9}-1{number % 10}",
    })


async def drive(client: httpx.AsyncClient, urls: list[str], concurrency: int) -> float:
    queue = list(reversed(urls))

    async def worker() -> None:
        while queue:
            url = queue.pop()
            response = await client.get(url)
            if response.status_code != 200:
                raise SystemExit(f"GET {url} -> {response.status_code}: {response.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fhirlead-bench-audit-"))
    settings = Settings(store=f"sqlite:///{workdir / 'bench.db'}", base_url=BASE, auth=True,
                        audit_writer=args.writer)
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            server = app.state.server
            trail = server.audit
            token = await server.auth.tokens.access_token(
                Authorization(client_id="bench", scope="system/*.cruds", subject="bench"), BASE, BASE)
            headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json",
                       "Content-Type": "application/fhir+json"}
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE,
                                         headers=headers) as client:
                ids = []
                for number in range(args.patients):
                    ids.append((await client.post("Patient", content=patient(number))).json()["id"])
                urls = [f"Patient/{random.choice(ids)}" for _ in range(args.reads)]
                await drive(client, urls[:200], args.concurrency)  # warm up
                await trail.flush()
                on, on_drained, off, recorded = [], [], [], []
                store_all = trail._store_all

                async def skip(events: list) -> None:
                    return None

                for _ in range(args.rounds):
                    server.audit = trail
                    written = trail.written
                    start = time.perf_counter()
                    answered = await drive(client, urls, args.concurrency)
                    await trail.flush()
                    drained = time.perf_counter() - start
                    assert trail.written - written == len(urls), (trail.written - written, len(urls))
                    on.append(len(urls) / answered)
                    on_drained.append(len(urls) / drained)
                    server.audit = None
                    off.append(len(urls) / await drive(client, urls, args.concurrency))
                    server.audit, trail._store_all = trail, skip
                    start = time.perf_counter()
                    await drive(client, urls, args.concurrency)
                    await trail.flush()
                    recorded.append(len(urls) / (time.perf_counter() - start))
                    trail._store_all = store_all
                server.audit = trail  # stopped (flushed) with the server
        print(f"{args.reads} Patient reads x {args.rounds} rounds, concurrency {args.concurrency}, SQLite, in process")
        print(f"  trail off (server.audit = None): {statistics.median(off):>7,.0f} reads/s   "
              f"(rounds: {', '.join(f'{x:,.0f}' for x in off)})")
        print(f"  trail on, until the last answer: {statistics.median(on):>7,.0f} reads/s   "
              f"(rounds: {', '.join(f'{x:,.0f}' for x in on)})")
        print(f"  trail on, until all AuditEvents written: {statistics.median(on_drained):>7,.0f} reads/s   "
              f"(rounds: {', '.join(f'{x:,.0f}' for x in on_drained)})")
        print(f"  recorded only (built and queued, not stored): {statistics.median(recorded):>7,.0f} reads/s   "
              f"(rounds: {', '.join(f'{x:,.0f}' for x in recorded)})")
        print(f"  cost of the trail: {100 * (1 - statistics.median(on) / statistics.median(off)):.1f}% of read "
              f"throughput as clients see it, {100 * (1 - statistics.median(on_drained) / statistics.median(off)):.1f}%"
              " with the writes included")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writer", choices=("process", "inline"), default="process")
    asyncio.run(main(parser.parse_args()))
