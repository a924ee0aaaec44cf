"""What authorization costs on the read path: wrk against one Patient read, with a bearer token (auth
on) and without (`--auth off`), same store, same machine, alternating runs.

    .venv/bin/python bench/auth.py [--seconds 8] [--connections 32] [--rounds 2]

Needs wrk (Debian package `wrk`). The issue's bar: with a token, at least 90% of the `--auth off` figure.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_token import bench_token
from rest import free_port

# --pin: the server on one core and wrk on the other (on a shared 2-core VM this halves the run-to-run
# spread, but the audit writer process then shares the server's core). Set by main().
PIN_SERVER: list[str] = []
PIN_CLIENT: list[str] = []


def start(store: str, port: int, auth: str, extra_env: dict[str, str]) -> subprocess.Popen:
    server = subprocess.Popen(
        [*PIN_SERVER, sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store", store,
         "--auth", auth],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **extra_env},
    )
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("server did not start")


def wrk(url: str, seconds: int, connections: int, token: str | None) -> float:
    command = [*PIN_CLIENT, "wrk", "-t1" if PIN_CLIENT else "-t2", f"-c{connections}", f"-d{seconds}s", url]
    if token:
        command[-1:-1] = ["-H", f"Authorization: Bearer {token}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise SystemExit(f"wrk saw {non_2xx.group(1)} failed responses:\n{output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def main(args: argparse.Namespace) -> None:
    global PIN_SERVER, PIN_CLIENT
    if args.pin and shutil.which("taskset"):
        PIN_SERVER, PIN_CLIENT = ["taskset", "-c", "0"], ["taskset", "-c", "1"]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    workdir = Path(tempfile.mkdtemp(prefix="fhirlead-bench-auth-"))
    store = f"sqlite:///{workdir / 'bench.db'}"
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    scenarios = {"auth off": ("off", {}), "bearer token": ("on", {})}
    if args.audit_off_too:
        scenarios["token, no audit"] = ("on", {"FHIRLEAD_AUDIT": "off"})
        scenarios["token, audit inline"] = ("on", {"FHIRLEAD_AUDIT_WRITER": "inline"})
    try:
        server = start(store, port, "on", {})
        token = bench_token(store, root, "system/*.cruds")
        created = httpx.post(f"{root}/fhir/Patient", headers={"Authorization": f"Bearer {token}",
                                                               "Content-Type": "application/fhir+json"},
                             content=b'{"resourceType":"Patient","name":[{"family":"Bench"}],"gender":"female"}')
        url = f"{root}/fhir/Patient/{created.json()['id']}"
        server.terminate()
        server.wait()
        figures: dict[str, list[float]] = {name: [] for name in scenarios}
        for _round in range(args.rounds):
            for name, (auth, env) in scenarios.items():
                server = start(store, port, auth, env)
                try:
                    wrk(url, 2, args.connections, token if auth == "on" else None)  # warm-up
                    figures[name].append(wrk(url, args.seconds, args.connections, token if auth == "on" else None))
                finally:
                    server.terminate()
                    server.wait()
        pinned = "server on core 0, wrk on core 1" if PIN_CLIENT else "unpinned"
        print(f"machine: {os.cpu_count()} cores ({pinned}); wrk -c{args.connections} -d{args.seconds}s GET one Patient")
        best_off = max(figures["auth off"])
        for name, values in figures.items():
            shown = ", ".join(f"{v:,.0f}" for v in values)
            median = statistics.median(values) / statistics.median(figures["auth off"])
            print(f"{name:>16}: {shown} req/s   (median {median:.0%}, best {max(values) / best_off:.0%} of auth off)")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--audit-off-too", action="store_true",
                        help="also measure a token without the audit trail, and with the trail written in process")
    parser.add_argument("--pin", action="store_true", help="server on core 0, wrk on core 1 (taskset)")
    main(parser.parse_args())
