"""REST throughput over real HTTP: create and read against a live `fhirlead serve` on loopback.

    .venv/bin/python bench/rest.py [--creates 5000] [--reads 20000] [--concurrency 16] [--store URL]
                                   [--source DIR]

`--source` runs the server from another checkout of the repository (see bench/compare.py), with this
virtual environment's libraries.

Starts the server in a subprocess (its own core), drives it from this process with httpx over
keep-alive connections, and prints resources/s and latency percentiles. The load generator is Python
too, so the figures are a floor for the server: a faster client (wrk) would show more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from bench_token import bench_token

HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def patient(number: int) -> bytes:
    return orjson.dumps({
        "resourceType": "Patient",
        "identifier": [{"system": "http://example.org/mrn", "value": f"MRN-{number}"}],
        "name": [{"family": f"Family{number % 997}", "given": [f"Given{number}"]}],
        "gender": "female" if number % 2 else "male",
        "birthDate": f"19{50 + number % 50}-0{1 + number % 9}-1{number % 10}",
        "address": [{"line": [f"{number} Main Street"], "city": "Springfield", "state": "IL"}],
    })


async def timed(client: httpx.AsyncClient, method: str, url: str, body: bytes | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    response = await client.request(method, url, content=body, headers=HEADERS)
    if response.status_code not in (200, 201):
        raise SystemExit(f"{method} {url} -> {response.status_code}: {response.text[:200]}")
    location = response.headers.get("location", "")
    return time.perf_counter() - start, location


Job = tuple[str, str, bytes | None]


async def drive(
    jobs: list[Job], base: str, concurrency: int, headers: dict[str, str]
) -> tuple[float, list[float], list[str]]:
    queue = list(reversed(jobs))
    latencies: list[float] = []
    locations: list[str] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60, headers=headers) as client:
        async def worker() -> None:
            while queue:
                method, url, body = queue.pop()
                latency, location = await timed(client, method, url, body)
                latencies.append(latency)
                locations.append(location)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, locations


def report(name: str, count: int, elapsed: float, latencies: list[float]) -> None:
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(f"{name:>7}: {count} in {elapsed:.2f}s = {count / elapsed:,.0f}/s   p50 {p50:.2f} ms   p95 {p95:.2f} ms")


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="fhirlead-bench-"))
    store = args.store or f"sqlite:///{workdir / 'bench.db'}"
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store", store],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=args.source or None,
        env={**os.environ, "FHIRLEAD_LOG_LEVEL": "warning"},
    )
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"server exited with {server.returncode} before it was ready")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("server not ready after 30 s")
        print(f"machine: {os.cpu_count()} cores; store {store}; concurrency {args.concurrency}")
        headers = {"Authorization": f"Bearer {bench_token(store, f'http://127.0.0.1:{port}')}"}
        creates = [("POST", "Patient", patient(n)) for n in range(args.creates)]
        elapsed, latencies, locations = await drive(creates, base, args.concurrency, headers)
        report("create", len(creates), elapsed, latencies)
        ids = [location.split("/fhir/")[1].split("/_history")[0] for location in locations]
        reads = [("GET", random.choice(ids), None) for _ in range(args.reads)]
        elapsed, latencies, _ = await drive(reads, base, args.concurrency, headers)
        report("read", len(reads), elapsed, latencies)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--creates", type=int, default=5000)
    parser.add_argument("--reads", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--store", default="")
    parser.add_argument("--source", default="", help="a checkout to run the server from (bench/compare.py)")
    asyncio.run(main(parser.parse_args()))
