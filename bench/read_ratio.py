"""Reads against the framework's limit: fhirlead's `GET Patient/[id]` beside a bare FastAPI route, one run.

    .venv/bin/python bench/read_ratio.py [--seconds 8] [--connections 32] [--threads 1] [--rounds 1]
                                         [--profile OUT.svg|OUT.txt] [--source DIR]

Starts (a) `fhirlead serve` on a fresh SQLite store as in production (authorization on, a SMART
Backend Services client's `system/` token on every request, the audit trail on with its writer process)
holding one Patient, and (b) a bare FastAPI app under the same uvicorn settings (one worker, no access
log, the same concurrency limit and keep-alive) with one route answering the very bytes fhirlead
answered, with the same content type. `wrk` (Debian package `wrk`) then reads each for `--seconds` with
`--connections` connections, the two alternating round by round, and the script prints req/s of both
and fhirlead's share of the bare framework's. `--profile` records both servers with py-spy during the
last round (a flame graph, or collapsed stacks for a name ending in .txt; the bare app's beside it). The machine's load
(`uptime`) is printed before and after: other work on the same cores moves both figures. Each run also
prints the CPU time per request of each server process (fhirlead's audit writer apart) and of wrk.
`--source` runs fhirlead from another checkout (with `auth/` and `operations/` linked under `fhirlead/`,
as bench/compare.py does) for a before/after in one session.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from bench_token import bench_token

PATIENT = (b'{"resourceType":"Patient","identifier":[{"system":"http://example.org/mrn","value":"MRN-1"}],'
           b'"name":[{"family":"Family1","given":["Given1"]}],"gender":"female","birthDate":"1951-02-11",'
           b'"address":[{"line":["1 Main Street"],"city":"Springfield","state":"IL"}]}')
SETTLE = 1.5  # seconds after a run for the audit writer to store what is still queued
# The bare app: the same uvicorn settings as `fhirlead serve` (fhirlead/serve.py).
BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI
from fastapi.responses import Response
from fhirlead.settings import Settings

body = open(sys.argv[2], "rb").read()
media_type = sys.argv[3]
app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.get("/fhir/Patient/{id_}")
async def read(id_: str) -> Response:
    return Response(body, media_type=media_type)


settings = Settings()
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False,
            limit_concurrency=settings.max_connections, timeout_keep_alive=settings.keep_alive_seconds)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen[bytes], url: str, headers: dict[str, str] | None = None) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"{url}: the server exited with {process.returncode} before it was ready")
        try:
            if httpx.get(url, headers=headers).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url}: not ready after 60 s")


def machine() -> str:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}, {platform.platform()}"


def bare_profile(path: str) -> str:
    """Where the bare app's profile goes: beside fhirlead's, `-bare` before the suffix."""
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}-bare.{suffix}" if dot else f"{path}-bare"


def py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else "py-spy"


def family(pid: int) -> list[int]:
    """`pid` and its child processes (the audit writer of `fhirlead serve`)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / ticks
    return used


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def wrk(url: str, seconds: int, connections: int, threads: int, headers: dict[str, str],
        script: Path | None = None) -> tuple[float, int, str]:
    """(req/s, requests, p50 latency) of one wrk run (`script`: a wrk Lua script); every answer must be
    a 2xx."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    for header, value in headers.items():
        command += ["-H", f"{header}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"wrk saw errors against {url}:\n{output}")
    rate = re.search(r"Requests/sec:\s*([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    if rate is None or count is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{output}")
    latency = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    return float(rate.group(1)), int(count.group(1)), latency.group(1) if latency else "?"


def measured(name: str, pid: int, url: str, args: argparse.Namespace, headers: dict[str, str]) -> float:
    """One wrk run against `url`, printed with the CPU time per request of the server's processes
    (the audit writer's included, measured until it has caught up) and of wrk."""
    pids = family(pid)
    before, wrk_before = cpu_seconds(pids), resource.getrusage(resource.RUSAGE_CHILDREN)
    rate, count, p50 = wrk(url, args.seconds, args.connections, args.threads, headers)
    wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(SETTLE)
    after = cpu_seconds(pids)
    server = " + ".join(f"{(after[p] - before[p]) / count * 1e6:.0f}" for p in pids if p in after and p in before)
    client = (wrk_after.ru_utime + wrk_after.ru_stime - wrk_before.ru_utime - wrk_before.ru_stime) / count * 1e6
    print(f"    {name:>8}: {rate:,.0f} req/s, p50 {p50}; CPU µs per request: server {server}, wrk {client:.0f}")
    return rate


def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="fhirlead-read-ratio-"))
    store = f"sqlite:///{workdir / 'read.db'}"
    port, bare_port = free_port(), free_port()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    env = {**os.environ, "FHIRLEAD_AUTH": "on", "FHIRLEAD_AUDIT": "on"}
    server = subprocess.Popen([sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store", store],
                              env=env, cwd=args.source or None, **quiet)
    bare: subprocess.Popen[bytes] | None = None
    try:
        wait_ready(server, f"http://127.0.0.1:{port}/healthz")
        token = bench_token(store, f"http://127.0.0.1:{port}", scope="system/Patient.cr")
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        created = httpx.post(f"http://127.0.0.1:{port}/fhir/Patient", content=PATIENT,
                             headers={**headers, "Content-Type": "application/fhir+json"})
        created.raise_for_status()
        path = "/fhir/Patient/" + created.headers["location"].split("/Patient/")[1].split("/")[0]
        answer = httpx.get(f"http://127.0.0.1:{port}{path}", headers=headers)
        answer.raise_for_status()
        (workdir / "body").write_bytes(answer.content)
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), str(workdir / "body"),
                                 answer.headers["content-type"]], env=env, **quiet)
        wait_ready(bare, f"http://127.0.0.1:{bare_port}{path}")
        bare_answer = httpx.get(f"http://127.0.0.1:{bare_port}{path}")
        assert bare_answer.content == answer.content
        assert bare_answer.headers["content-type"] == answer.headers["content-type"]
        print(f"machine: {machine()}")
        print(f"load before: {load()}")
        print(f"GET {path} ({len(answer.content)} bytes, {answer.headers['content-type']}), wrk -t{args.threads} "
              f"-c{args.connections} -d{args.seconds}s, {args.rounds} round(s)")
        targets = {"fhirlead": f"http://127.0.0.1:{port}{path}", "bare": f"http://127.0.0.1:{bare_port}{path}"}
        for url in targets.values():  # warm-up: connections, caches, the first audit batch
            wrk(url, 2, args.connections, args.threads, headers)
        figures: dict[str, list[float]] = {name: [] for name in targets}
        for round_ in range(args.rounds):
            print(f"  round {round_ + 1}")
            for name, url in targets.items():
                spy = None
                pid = server.pid if name == "fhirlead" else bare.pid
                if args.profile and round_ == args.rounds - 1:
                    output = args.profile if name == "fhirlead" else bare_profile(args.profile)
                    spy = subprocess.Popen([py_spy(), "record", "-d", str(args.seconds), "-o", output,
                                            "--pid", str(pid), "--nonblocking", "--rate", "1000",
                                            "--format", "raw" if args.profile.endswith(".txt") else "flamegraph"],
                                           **quiet)
                figures[name].append(measured(name, pid, url, args, headers))
                if spy is not None:
                    spy.wait()
        print(f"load after: {load()}")
        ours, framework = statistics.median(figures["fhirlead"]), statistics.median(figures["bare"])
        print(f"fhirlead {ours:,.0f} req/s, bare FastAPI {framework:,.0f} req/s: ratio {ours / framework:.2f}"
              + (" (medians)" if args.rounds > 1 else ""))
    finally:
        for process in (server, bare):
            if process is not None:
                process.terminate()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (the cores are shared with the servers)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--source", default="", help="a checkout to run fhirlead from (as bench/compare.py makes)")
    parser.add_argument("--profile", default="",
                        help="py-spy profiles of the last round: a flame graph (.svg) or collapsed stacks (.txt) of "
                        "fhirlead (its audit writer included), and of the bare app beside it (`-bare` added)")
    main(parser.parse_args())
