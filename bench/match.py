"""`Patient/$match` over a live server: how fast, and how often it finds the person, at scale.

    .venv/bin/python bench/match.py [--patients 100000] [--queries 300] [--seed 7] [--keep DIR]

1. Generates --patients synthetic Patients (seeded): first names from the `nicknames` dataset's
   canonical names, surnames from a list of common US surnames, birth dates 1930-2010, a street address
   with one of 300 ZIP codes, a phone; one in ten has a Medicare MBI. Loaded by `fhirlead load` into a
   fresh SQLite store (timed); with --keep, into DIR/match.db, which a later run with the same --patients
   and --seed reuses instead of loading again.
2. Against a freshly started `fhirlead serve` with its background workers off (the load queued a
   linking job per Patient, docs/identity.md: they are not what is measured here; system/*.rs token),
   --queries Patients drawn from the store are sent to `$match`, each changed the way another EHR
   would write them, in turn: as is but without id; a nickname or a typo in the given name; a typo in
   the surname; day and month swapped (or one digit off); a new surname with the same address; no
   phone or address, upper case.
3. Prints per kind: latency (median, 95th percentile, client side), how often the original record is
   the first answer, and its grade. The machine shares its cores between client and server.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
from measures_live import serving
from nicknames import NickNamer

_SURNAMES = """smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez
wilson anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis
robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall rivera
campbell mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins reyes stewart
morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly howard ramos kim cox
ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes price alvarez castillo sanders
patel myers long ross foster jimenez powell jenkins perry russell sullivan bell coleman butler henderson barnes
gonzales fisher vasquez simmons romero jordan patterson alexander hamilton graham reynolds griffin wallace moreno
west cole hayes bryant herrera gibson ellis tran medina aguilar stevens murray ford castro marshall owens harrison
fernandez mcdonald woods washington kennedy wells vargas henry chen freeman webb tucker guzman burns crawford olson
simpson porter hunter gordon mendez silva shaw snyder mason dixon munoz hunt hicks holmes palmer wagner black
robertson boyd rose stone salazar fox warren mills meyer rice schmidt garza daniels ferguson nichols stephens soto
weaver ryan gardner payne grant dunn kelley spencer hawkins arnold pierce vazquez hansen peters santos hart bradley
knight elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray delgado berry perkins
hoffman johnston matthews pena richards contreras willis carpenter lawrence sandoval"""
SURNAMES = _SURNAMES.split()
_STREETS = "oak maple pine cedar elm washington lake hill main park church river sunset highland mill"
STREETS = _STREETS.split()
KINDS = ("as is", "given nickname or typo", "surname typo", "birth date swapped or digit", "new surname",
         "bare and upper case")


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:] if rng.random() < 0.5 else word[:i] + word[i + 1:]


def generate(count: int, rng: random.Random) -> list[dict[str, Any]]:
    namer = NickNamer()
    firsts = sorted({name for name in namer._nickname_lookup if len(name) > 2})  # canonical names of the dataset
    zips = [f"{rng.randrange(1000, 99999):05d}" for _ in range(300)]
    out = []
    for n in range(count):
        birth = f"{rng.randrange(1930, 2011)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        patient: dict[str, Any] = {
            "resourceType": "Patient", "id": f"m{n}", "gender": rng.choice(("male", "female")),
            "name": [{"family": rng.choice(SURNAMES).title(), "given": [rng.choice(firsts).title()]}],
            "birthDate": birth,
            "address": [{"line": [f"{rng.randrange(1, 9999)} {rng.choice(STREETS).title()} Street"],
                         "postalCode": rng.choice(zips)}],
            "telecom": [{"system": "phone", "value": f"({rng.randrange(200, 999)}) 555-{rng.randrange(10000):04d}"}]}
        if rng.random() < 0.1:
            patient["identifier"] = [{"system": "http://hl7.org/fhir/sid/us-mbi", "value": f"{n:011d}"}]
        out.append(patient)
    return out


def variant(patient: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    namer = NickNamer()
    out = orjson.loads(orjson.dumps(patient))
    out.pop("id")
    out.pop("identifier", None)
    name = out["name"][0]
    if kind == "given nickname or typo":
        nicknames = sorted(namer.nicknames_of(name["given"][0].lower()))
        name["given"] = [rng.choice(nicknames).title() if nicknames else typo(name["given"][0], rng)]
    elif kind == "surname typo":
        name["family"] = typo(name["family"], rng)
    elif kind == "birth date swapped or digit":
        year, month, day = out["birthDate"].split("-")
        if int(day) <= 12 and day != month:
            out["birthDate"] = f"{year}-{day}-{month}"
        else:  # the day's last digit one off (days are 13 to 28 here: still a real date)
            last = int(day[1])
            out["birthDate"] = f"{year}-{month}-{day[0]}{last - 1 if last > 0 else 1}"
    elif kind == "new surname":
        name["family"] = rng.choice(SURNAMES).title()
        out.pop("telecom")
    elif kind == "bare and upper case":
        name["family"], name["given"] = name["family"].upper(), [g.upper() for g in name["given"]]
        out.pop("telecom")
        out.pop("address")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the store in this folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    patients = generate(args.patients, rng)
    os.environ["FHIRLEAD_WORKERS"] = "off"
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        store = f"sqlite:///{folder}/match.db"
        if (folder / "match.db").exists() and args.keep:
            print(f"reusing {folder}/match.db")
        else:
            data = folder / "patients.ndjson"
            data.write_bytes(b"\n".join(orjson.dumps(p) for p in patients) + b"\n")
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fhirlead.cli", "load", "--store", store, str(data)], check=True,
                           stdout=subprocess.DEVNULL)
            print(f"loaded {args.patients:,} Patients in {time.perf_counter() - started:.1f} s")
        times: dict[str, list[float]] = defaultdict(list)
        outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        with serving(store) as live:
            from bench_token import bench_token
            token = bench_token(store, live.root, "system/Patient.rs")
            with httpx.Client(base_url=f"{live.root}/fhir/", timeout=120,
                              headers={"Authorization": f"Bearer {token}"}) as client:
                for n in range(args.queries):
                    kind = KINDS[n % len(KINDS)]
                    original = rng.choice(patients)
                    body = {"resourceType": "Parameters",
                            "parameter": [{"name": "resource", "resource": variant(original, kind, rng)}]}
                    started = time.perf_counter()
                    answer = client.post("Patient/$match", json=body)
                    times[kind].append(time.perf_counter() - started)
                    answer.raise_for_status()
                    entries = answer.json().get("entry", [])
                    found = {e["resource"]["id"]: e["search"]["extension"][0]["valueCode"] for e in entries}
                    first = entries[0]["resource"]["id"] if entries else None
                    outcomes[kind]["first" if first == original["id"] else "not first"] += 1
                    outcomes[kind][found.get(original["id"], "missed")] += 1
    print(f"{'variant':30} {'median ms':>9} {'p95 ms':>7}  original first / graded")
    for kind in KINDS:
        took = sorted(times[kind])
        p95 = took[max(0, int(len(took) * 0.95) - 1)]
        grades = ", ".join(f"{g} {outcomes[kind][g]}" for g in ("certain", "probable", "possible", "missed")
                           if outcomes[kind][g])
        print(f"{kind:30} {statistics.median(took) * 1000:9.1f} {p95 * 1000:7.1f}  "
              f"{outcomes[kind]['first']}/{len(took)}: {grades}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
