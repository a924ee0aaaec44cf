"""Creates over real HTTP from many clients at once: `POST Observation` against a live `fhirlead serve`.

    .venv/bin/python bench/create_rate.py [--seconds 8] [--connections 16] [--rounds 3] [--profile OUT.txt]
                                          [--store-dir DIR]

Starts `fhirlead serve` as in production (SQLite, synchronous=FULL: a 201 is sent after the COMMIT that
holds the write; authorization on, a SMART Backend Services client's `system/` token on every request,
so each create also gets its meta.source and Provenance; the audit trail on with its writer process)
and drives it with `wrk` (Debian package `wrk`; a C client, so the two cores go to the server) posting
one Observation (an HbA1c result of a Patient written first) from `--connections` connections for
`--seconds`, `--rounds` times. Prints creates/s, the median latency, the CPU time per create of the
server and of its audit writer, and at the end how many Observations the store holds (each 201 must be
a stored resource). `--profile` records the server with py-spy (`--gil`: what holds the GIL) during the last round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from bench_token import bench_token
from read_ratio import cpu_seconds, family, free_port, load, machine, py_spy, wait_ready, wrk  # bench/, beside this

OBSERVATION = """{"resourceType":"Observation","status":"final",
"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],
"code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c/Hemoglobin.total in Blood"}]},
"subject":{"reference":"Patient/PATIENT"},"effectiveDateTime":"2026-11-02T09:30:00Z",
"valueQuantity":{"value":9.4,"unit":"%","system":"http://unitsofmeasure.org","code":"%"}}"""
SCRIPT = """wrk.method = "POST"
local file = io.open("BODY", "rb")
wrk.body = file:read("*a")
file:close()
"""


def main(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="fhirlead-creates-", dir=args.store_dir))
    store = f"sqlite:///{workdir / 'creates.db'}"
    port = free_port()
    root = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "fhirlead.cli", "serve", "--port", str(port), "--store", store],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(server, f"{root}/healthz")
        token = bench_token(store, root, scope="system/Patient.cr system/Observation.crs")
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json",
                   "Accept": "application/fhir+json", "Prefer": "return=minimal"}
        patient = httpx.post(f"{root}/fhir/Patient", headers=headers,
                             content=b'{"resourceType":"Patient","name":[{"family":"Bench"}],"gender":"female"}')
        patient.raise_for_status()
        patient_id = patient.headers["location"].split("/Patient/")[1].split("/")[0]
        (workdir / "body.json").write_text(OBSERVATION.replace("PATIENT", patient_id).replace("\n", ""))
        script = workdir / "post.lua"
        script.write_text(SCRIPT.replace("BODY", str(workdir / "body.json")))
        url = f"{root}/fhir/Observation"
        print(f"machine: {machine()}")
        print(f"load before: {load()}")
        print(f"POST Observation, wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} round(s)")
        wrk(url, 2, args.connections, 1, headers, script)  # warm-up
        rates = []
        for round_ in range(args.rounds):
            spy = None
            if args.profile and round_ == args.rounds - 1:
                spy = subprocess.Popen([py_spy(), "record", "-d", str(args.seconds), "-o", args.profile, "--pid",
                                        str(server.pid), "--gil", "--rate", "500", "--format", "raw"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pids = family(server.pid)
            before = cpu_seconds(pids)
            rate, count, p50 = wrk(url, args.seconds, args.connections, 1, headers, script)
            after = cpu_seconds(pids)
            cpu = " + ".join(f"{(after[p] - before[p]) / count * 1e6:.0f}" for p in pids if p in after and p in before)
            print(f"  round {round_ + 1}: {rate:,.0f} creates/s, p50 {p50}; CPU µs per create: server {cpu}")
            rates.append(rate)
            if spy is not None:
                spy.wait()
        print(f"load after: {load()}")
        total = httpx.get(f"{url}?_summary=count", headers=headers).json()["total"]
        print(f"creates/s (median): {statistics.median(rates):,.0f}; Observations stored: {total:,}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", default="", help="collapsed stacks of the server's last round (py-spy)")
    parser.add_argument("--store-dir", default=None, help="where the temporary store goes (default: the system's)")
    main(parser.parse_args())
