"""What active Subscriptions cost writers: single Observation creates over the in-process HTTP stack (a SMART
backend client, authorization and audit on, delivery worker running) on a store with no Subscription, and
on one with 100 active rest-hook Subscriptions on Observation (R4 criteria, one per patient, and a loopback
receiver answering 200), alternating store by store, best of the rounds.

Two workloads with the 100 Subscriptions: writes for patients none of them watches (the matching cost
every write pays), and writes of which one in `--match-every` is for a watched patient (each recorded as
an event in the write's commit and delivered by the worker in the same process, competing for the CPU).

    .venv/bin/python bench/subscriptions.py [--rounds 3] [--writes 1000] [--match-every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
from ingest import fresh_client  # bench/, beside this script

# The receiver runs in a process of its own (as a real one would: in this process it would take the GIL
# from the server it measures). It answers 200 to every notification and GET /count with how many it got.
RECEIVER = """
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = 0
lock = threading.Lock()
class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            count += 1
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def receiver() -> Iterator[str]:
    """A loopback receiver in another process; its URL."""
    child = subprocess.Popen([sys.executable, "-c", RECEIVER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        yield f"http://127.0.0.1:{child.stdout.readline().strip()}/hook"
    finally:
        child.kill()
        child.wait()


async def received(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(url)).text)

SUBSCRIPTIONS = 100
POLL_SECONDS = 2.0
OBSERVED = {"seconds": 0.0, "calls": 0}  # time spent in the subscriptions' write observer


def time_the_observer() -> None:
    """Wrap the write observer to add up its own time (in-process, so less noisy than throughput)."""
    from fhirlead.subscriptions.events import Subscriptions

    original = Subscriptions.observe

    async def timed(self: Subscriptions, uow: object, written: object) -> None:
        started = time.perf_counter()
        try:
            await original(self, uow, written)
        finally:
            OBSERVED["seconds"] += time.perf_counter() - started
            OBSERVED["calls"] += 1

    Subscriptions.observe = timed  # type: ignore[method-assign]


def observation(number: int, patient: str) -> bytes:
    return orjson.dumps({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
        "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": "2026-11-01",
        "valueQuantity": {"value": 5 + number % 50 / 10, "unit": "%", "system": "http://unitsofmeasure.org",
                          "code": "%"}})


async def one_store(db: Path, subscribed: bool, writes: int, match_every: int | None) -> tuple[float, int]:
    """(creates per second, notifications received) on a new store."""
    with receiver() as hook_url:
        async with fresh_client(db) as (client, headers):
            if subscribed:
                for number in range(SUBSCRIPTIONS):
                    subscription = {"resourceType": "Subscription", "status": "requested", "reason": "bench",
                                    "criteria": f"Observation?patient=Patient/watched-{number}&code=4548-4",
                                    "channel": {"type": "rest-hook", "endpoint": hook_url}}
                    answer = await client.post("Subscription", content=orjson.dumps(subscription), headers=headers)
                    assert answer.status_code == 201, answer.text
                for _ in range(600):  # the worker activates them
                    active = await client.get("Subscription?status=active&_summary=count", headers=headers)
                    if active.json()["total"] == SUBSCRIPTIONS:
                        break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(POLL_SECONDS)  # and every process has rebuilt its set since
            bodies = [observation(n, f"watched-{n % SUBSCRIPTIONS}" if match_every and n % match_every == 0
                                  else f"other-{n}") for n in range(writes)]
            for body in bodies[:50]:  # warm-up
                await client.post("Observation", content=body, headers=headers)
            OBSERVED.update(seconds=0.0, calls=0)
            started = time.perf_counter()
            for body in bodies:
                answer = await client.post("Observation", content=body, headers=headers)
                assert answer.status_code == 201, answer.text[:300]
            elapsed = time.perf_counter() - started
            expected = (writes + 50) // match_every if match_every and subscribed else 0
            for _ in range(600):
                if await received(hook_url) >= expected:
                    break
                await asyncio.sleep(0.1)
            print(f"  {'with' if subscribed else 'without'} Subscriptions (match every {match_every}): "
                  f"{writes / elapsed:,.0f} creates/s, observer {OBSERVED['seconds'] / OBSERVED['calls'] * 1e6:.0f} µs "
                  f"per write")
            return writes / elapsed, await received(hook_url)


async def main(rounds: int, writes: int, match_every: int, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    time_the_observer()
    cases = {"no Subscription": (False, None), "100 Subscriptions, no write matches": (True, None),
             f"100 Subscriptions, 1 write in {match_every} matches": (True, match_every)}
    best = dict.fromkeys(cases, 0.0)
    notified = dict.fromkeys(cases, 0)
    for _ in range(rounds):
        for name, (subscribed, every) in cases.items():
            rate, received = await one_store(folder / "subscriptions.db", subscribed, writes, every)
            best[name] = max(best[name], rate)
            notified[name] = received
    base = best["no Subscription"]
    for name, rate in best.items():
        print(f"{name}: {rate:,.0f} creates/s ({rate / base:.1%} of none; {notified[name]} notifications)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--match-every", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=Path("bench/results"))
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.writes, arguments.match_every, arguments.folder))
