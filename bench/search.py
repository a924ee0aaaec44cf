"""Search latency over a large generated SQLite store (not run in CI).

    .venv/bin/python bench/search.py [--resources 1000000] [--db bench/results/search.db] [--runs 300]
                                     [--plans-only] [--store mongodb://host/bench?replicaSet=rs0]

Generation writes synthetic patients, each with encounters, conditions and observations (20 resources
per patient), through the store's own write path: `SqliteUnitOfWork.write` with index entries from the
server's Extractor, 2,000 writes per unit of work and `synchronous=OFF` (the only shortcut: one fsync
per batch instead of per resource). The rows are therefore exactly what the server writes. An
existing database with the right resource count is reused.

Queries are measured two ways, sequentially, after a warm-up: `store` = parse + SQL + loading the
page's resource bytes (what `store.search` costs), and `http` = the full in-process ASGI round trip
through the real app (routing, Bundle assembly, httpx client). Reported: p50 / p95 / max in ms.
Before measuring, the EXPLAIN QUERY PLAN of the queries shown in docs/search.md is printed
(`--plans-only`: only that).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from fhirlead.api.app import create_app
from fhirlead.copy import CopyError, Progress, copy_urls
from fhirlead.search.extract import Extractor
from fhirlead.search.parse import parse_search
from fhirlead.search.registry import SearchRegistry
from fhirlead.settings import Settings
from fhirlead.storage.factory import open_store
from fhirlead.storage.sqlite import SqliteStore, schema
from fhirlead.storage.sqlite import search as sqlite_search
from fhirlead.storage.sqlite.search_sql import Compiler, Sql

PER_PATIENT = 20  # 1 patient + 4 encounters + 3 conditions + 12 observations
BATCH = 2000
FAMILIES = [
    f"{a}{b}"
    for a in (
        "Smith",
        "Garcia",
        "Nguyen",
        "Okafor",
        "Kowalski",
        "Haddad",
        "Lindqvist",
        "Moreau",
        "Tanaka",
        "Oliveira",
    )
    for b in ("son", "er", "ez", "ov", "ini", "ard", "berg", "well", "ton", "ley")
]
GIVENS = ["Maria", "John", "Aisha", "Wei", "Olga", "Pedro", "Fatima", "Liam", "Yuki", "Noah", "Emma", "Ravi"]
LOINC = [
    ("8867-4", "Heart rate", "/min", 50, 110),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 170),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 105),
    ("8310-5", "Body temperature", "Cel", 36, 39),
    ("29463-7", "Body weight", "kg", 45, 120),
    ("8302-2", "Body height", "cm", 150, 195),
    ("2339-0", "Glucose", "mg/dL", 70, 250),
    ("4548-4", "Hemoglobin A1c", "%", 4, 12),
    ("2093-3", "Cholesterol", "mg/dL", 120, 300),
    ("39156-5", "BMI", "kg/m2", 17, 40),
    ("9279-1", "Respiratory rate", "/min", 10, 25),
    ("59408-5", "Oxygen saturation", "%", 88, 100),
]
SNOMED = [
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertension"),
    ("195967001", "Asthma"),
    ("13645005", "COPD"),
    ("35489007", "Depression"),
    ("55822004", "Hyperlipidemia"),
]


def when(rng: random.Random) -> str:
    return (
        f"{rng.randint(2015, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00Z"
    )


def patient_resources(number: int, rng: random.Random) -> list[dict[str, Any]]:
    pid = f"p{number}"
    family = f"{FAMILIES[number % len(FAMILIES)]}{number % 50}"
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"system": "http://example.org/mrn", "value": f"MRN{number:08d}"}],
            "name": [{"family": family, "given": [rng.choice(GIVENS)]}],
            "gender": rng.choice(("male", "female")),
            "birthDate": f"{rng.randint(1930, 2015)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            "address": [
                {"line": [f"{number} Main St"], "city": "Springfield", "state": "IL", "postalCode": "62701"}
            ],
            "telecom": [{"system": "phone", "value": f"555-{number:07d}"}],
        }
    ]
    subject = {"reference": f"Patient/{pid}"}
    for e in range(4):
        start = when(rng)
        out.append(
            {
                "resourceType": "Encounter",
                "id": f"{pid}-e{e}",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [
                    {
                        "coding": [
                            {
                                "system": "http://snomed.info/sct",
                                "code": "185349003",
                                "display": "Encounter for check up",
                            }
                        ]
                    }
                ],
                "subject": subject,
                "period": {"start": start, "end": start[:11] + "23:59:00Z"},
            }
        )
    for c in range(3):
        code, display = rng.choice(SNOMED)
        out.append(
            {
                "resourceType": "Condition",
                "id": f"{pid}-c{c}",
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                "subject": subject,
                "encounter": {"reference": f"Encounter/{pid}-e{c}"},
                "onsetDateTime": when(rng),
            }
        )
    for o in range(12):
        code, display, unit, low, high = LOINC[(number + o) % len(LOINC)]
        out.append(
            {
                "resourceType": "Observation",
                "id": f"{pid}-o{o}",
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "vital-signs",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                "subject": subject,
                "encounter": {"reference": f"Encounter/{pid}-e{o % 4}"},
                "effectiveDateTime": when(rng),
                "valueQuantity": {
                    "value": round(rng.uniform(low, high), 1),
                    "unit": unit,
                    "system": "http://unitsofmeasure.org",
                    "code": unit,
                },
            }
        )
    return out


async def count_resources(store: SqliteStore) -> int:
    return await store._on_reader(lambda conn: conn.execute("SELECT count(*) FROM resources").fetchone()[0])


async def generate(path: Path, total: int) -> float:
    store = SqliteStore(str(path), synchronous="OFF")
    await store.open()
    try:
        existing = await count_resources(store)
        if existing >= total:
            print(f"reusing {path} ({existing:,} resources)")
            return 0.0
        if existing:
            raise SystemExit(f"{path} holds {existing:,} resources; delete it or pass another --db")
        extractor = Extractor(SearchRegistry.default())
        rng = random.Random(42)
        started = time.perf_counter()
        patients = total // PER_PATIENT
        pending: list[dict[str, Any]] = []
        written = 0
        for number in range(patients):
            pending += patient_resources(number, rng)
            if len(pending) >= BATCH or number == patients - 1:
                async with store.unit_of_work() as uow:
                    for resource in pending:
                        await uow.write(
                            resource["resourceType"],
                            resource["id"],
                            resource,
                            extractor.extract(resource),
                            "PUT",
                        )
                written += len(pending)
                pending = []
                if written % 100_000 < BATCH:
                    rate = written / (time.perf_counter() - started)
                    print(f"  {written:,} resources, {rate:,.0f}/s", flush=True)
        await store._on_writer(lambda conn: conn.execute("ANALYZE"))
        return time.perf_counter() - started
    finally:
        await store.close()


def queries(rng: random.Random, patients: int) -> dict[str, list[str]]:
    def pid() -> str:
        return f"p{rng.randrange(patients)}"

    def family() -> str:
        number = rng.randrange(patients)
        return f"{FAMILIES[number % len(FAMILIES)]}{number % 50}"

    return {
        "subject+code+date": [
            f"Observation?subject=Patient/{pid()}&code=http://loinc.org|{rng.choice(LOINC)[0]}&date=ge2020"
            for _ in range(1000)
        ],
        # every family name is shared by 1/100 of the patients (500 at 1M resources): a common surname
        "chain subject:Patient.name": [
            f"Observation?subject:Patient.name={family()}&code=http://loinc.org|{rng.choice(LOINC)[0]}"
            for _ in range(1000)
        ],
        "chain subject:Patient.identifier": [
            f"Observation?subject:Patient.identifier=http://example.org/mrn|MRN{rng.randrange(patients):08d}"
            for _ in range(1000)
        ],
        "_revinclude": [f"Patient?_id={pid()}&_revinclude=Observation:subject" for _ in range(1000)],
    }


def split(url: str) -> tuple[str, list[tuple[str, str]]]:
    type_, _, query = url.partition("?")
    return type_, [tuple(part.split("=", 1)) for part in query.split("&")]  # type: ignore[misc]


def report(name: str, samples: list[float], results: list[int]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(
        f"  {name:32s} p50 {statistics.median(ms):7.2f}  p95 {p95:7.2f}  max {ms[-1]:7.2f} ms"
        f"   (mean matches {statistics.mean(results):.1f})"
    )


PLAN_QUERIES = {
    "chain": "Observation?subject:Patient.name=Smithson0&code=http://loinc.org|8867-4",
    "include": "Observation?_include=Observation:subject",
    "revinclude": "Patient?_id=p1&_revinclude=Observation:subject",
    "first": "Observation?subject=Patient/p1&code=http://loinc.org|8867-4&date=ge2020",
}


def explain(conn: sqlite3.Connection, sql: Sql) -> list[str]:
    """EXPLAIN QUERY PLAN as the indented tree the sqlite3 shell prints."""
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql.text, sql.params).fetchall()
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def plans(path: Path) -> dict[str, list[str]]:
    """The query plans shown in docs/search.md: the page query of the chain and of the first query
    (driver chosen by the same race the server runs), the include step for the first page of
    Observations and the revinclude step for one Patient."""
    registry = SearchRegistry.default()
    conn = schema.connect(str(path), synchronous="OFF", read_only=True)
    out: dict[str, list[str]] = {}
    try:
        for name, url in PLAN_QUERIES.items():
            type_, params = split(url)
            query = parse_search(registry, (type_,), params, base_url="http://bench/fhir").query
            compiler = Compiler(query.base_url, conn)
            page = sqlite_search.page_sql(
                query, compiler.filter(query.types, query.where, "r", walk_if_broad=not query.sort), None
            )
            if name in ("chain", "first"):
                out[name] = explain(conn, page)
                continue
            pks = [row[0] for row in conn.execute(page.text, page.params)][: query.count]
            matches = sqlite_search.matches_of(conn, pks)
            include = query.include[0]
            if include.reverse:
                targets = [id_ for _, t, id_ in matches if t == type_]
                out[name] = explain(conn, sqlite_search.reverse_include_sql(compiler, include, type_, targets))
            else:
                out[name] = explain(conn, sqlite_search.forward_include_sql(compiler, include, pks))
    finally:
        conn.close()
    return out


async def measure_store(url: str, plan: dict[str, list[str]], runs: int) -> None:
    store = open_store(url)
    await store.open()
    registry = SearchRegistry.default()
    try:
        print("store (parse + SQL + page bytes):")
        for name, urls in plan.items():
            samples, results = [], []
            for index, url in enumerate(urls[: runs + 20]):
                type_, params = split(url)
                started = time.perf_counter()
                parsed = parse_search(registry, (type_,), params, base_url="http://bench/fhir")
                page = await store.search(parsed.query)
                elapsed = time.perf_counter() - started
                if index >= 20:
                    samples.append(elapsed)
                    results.append(len(page.matches) + len(page.includes))
            report(name, samples, results)
    finally:
        await store.close()


async def measure_http(url: str, plan: dict[str, list[str]], runs: int) -> None:
    app = create_app(Settings(store=url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench/fhir") as client:
            print("http (in-process ASGI, full Bundle):")
            for name, urls in plan.items():
                samples, results = [], []
                for index, url in enumerate(urls[: runs + 20]):
                    started = time.perf_counter()
                    response = await client.get(url)
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200:
                        raise SystemExit(f"{url} -> {response.status_code} {response.text[:300]}")
                    if index >= 20:
                        samples.append(elapsed)
                        results.append(len(response.json().get("entry", [])))
                report(name, samples, results)


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=Path("bench/results/search.db"))
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--plans-only", action="store_true", help="print the query plans and stop")
    parser.add_argument("--store", help="measure this store (e.g. mongodb://host/bench?replicaSet=rs0) instead "
                        "of the SQLite file; the generated data is copied into it first when it is empty")
    args = parser.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    seconds = await generate(args.db, args.resources)
    if seconds:
        print(
            f"generated {args.resources:,} resources in {seconds / 60:.1f} min "
            f"({args.resources / seconds:,.0f}/s)"
        )
    size = sum(os.path.getsize(p) for p in (args.db, Path(f"{args.db}-wal")) if p.exists())
    print(f"database size {size / 2**30:.2f} GiB ({args.db})")
    for name, lines in plans(args.db).items():
        print(f"plan {name}: {PLAN_QUERIES[name]}")
        print("\n".join(f"    {line}" for line in lines))
    if args.plans_only:
        return
    plan = queries(random.Random(7), args.resources // PER_PATIENT)
    url = args.store or f"sqlite:///{args.db}"
    if args.store:
        try:
            await copy_urls(f"sqlite:///{args.db}", args.store, Progress(sys.stderr))
        except CopyError:
            print(f"reusing {args.store} (not empty)")
    await measure_store(url, plan, args.runs)
    await measure_http(url, plan, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
