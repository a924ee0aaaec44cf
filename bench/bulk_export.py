"""Bulk Data export throughput and peak memory over a large generated SQLite store (not run in CI).

    .venv/bin/python bench/bulk_export.py [--resources 1000000] [--db PATH] [--paths cli job] [--profile]

The store is generated as `bench/search.py` does (synthetic patients, 20 resources each, written through
the store's own write path with the server's index entries; reused when it already holds enough). Each
path then exports every type of the store in a fresh child process, whose wall time and peak RSS
(VmHWM; and the anonymous part, RssAnon sampled every 20 ms: VmHWM also counts the store file's pages
that SQLite maps, `PRAGMA mmap_size` 1 GiB per connection, which are page cache, not heap) are reported:

- `cli`: `fhirlead export --store URL --out DIR` (`fhirlead.bulk.cli`), progress bar off (no terminal);
- `job`: the server's export job in process: a STATUS record as a system-level kick-off writes it, then
  `fhirlead.bulk.run.run_slice` in a loop, as the worker runs it (slices of about a second, each page
  fsynced and its progress recorded in the store).

Each run checks that the files hold exactly the store's resource count. `--profile` runs the `cli` path
under cProfile in the child and prints where the time goes. Target (issue #18): 50,000 resources/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGET = 50_000


def child(path: str, url: str, out: Path, profile: bool) -> dict:
    """In the child process: one export (timed after the imports); its time and memory (VmHWM: the peak
    RSS of this process alone; `ru_maxrss` would include the parent's, inherited through fork)."""
    from fhirlead.bulk import run  # noqa: F401
    from fhirlead.cli import main
    from fhirlead.server import Server  # noqa: F401

    base_rss = memory("VmRSS")
    peak_anon = [memory("RssAnon")]
    stop = threading.Event()

    def sample() -> None:  # anonymous memory (heap), apart from SQLite's mmap of the file (page cache)
        while not stop.wait(0.02):
            peak_anon[0] = max(peak_anon[0], memory("RssAnon"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    if path == "cli":
        if profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            code = profiler.runcall(main, ["export", "--store", url, "--out", str(out)])
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
            pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(20)
        else:
            code = main(["export", "--store", url, "--out", str(out)])
        if code != 0:
            raise SystemExit(f"fhirlead export exited {code}")
    else:
        asyncio.run(run_job(url, out))
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {"seconds": seconds, "rss_before_kb": base_rss, "peak_rss_kb": memory("VmHWM"),
            "peak_anon_kb": max(peak_anon[0], memory("RssAnon"))}


def memory(field: str) -> int:
    """A /proc/self/status memory figure in kB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


async def run_job(url: str, out: Path) -> None:
    """A system-level export job run by `run_slice`, as the server's worker runs it."""
    from fhirlead import clock
    from fhirlead.bulk import STATUS
    from fhirlead.bulk.run import run_slice
    from fhirlead.bulk.scope import level_types
    from fhirlead.server import Server
    from fhirlead.settings import Settings

    server = await Server.start(Settings(store=url, auth=False, workers=False, export_dir=str(out)))
    try:
        job_id = uuid.uuid4().hex
        doc = {"client": None, "level": "system", "group": None, "types": level_types("system"), "warnings": [],
               "since": None, "transactionTime": clock.instant(clock.now()), "request": "bench", "state": "running",
               "step": {"index": 0, "phase": "current", "cursor": None}, "files": {}, "created": time.time()}
        await server.store.records.put(STATUS, job_id, doc)
        slices = 0
        while await run_slice(server, job_id) is not None:
            slices += 1
        record = await server.store.records.get(STATUS, job_id)
        if record is None or record.doc["state"] != "done":
            raise SystemExit(f"the export job ended {record.doc.get('failure') if record else 'without a record'}")
        print(f"  job: {slices + 1} slices", file=sys.stderr)
    finally:
        await server.stop()


def lines_in(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*.ndjson"):
        with path.open("rb") as source:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda s=source: s.read(1 << 20), b""))
    return total


def measure(path: str, url: str, out: Path, expected: int, profile: bool) -> dict:
    """Run one path in a child process; its time, peak RSS and output checked against `expected`."""
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, __file__, "--child", path, "--db-url", url, "--out", str(out)]
    if profile:
        command.append("--profile")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    _pid, status, _usage = os.wait4(process.pid, 0)
    output = process.stdout.read() if process.stdout else b""
    if status != 0:
        raise SystemExit(f"the {path} run failed (status {status})")
    figures = json.loads(output.decode().strip().splitlines()[-1])
    written = lines_in(out)
    if written != expected:
        raise SystemExit(f"the {path} run wrote {written:,} lines, the store holds {expected:,} resources")
    size = sum(p.stat().st_size for p in out.rglob("*.ndjson"))
    return {**figures, "peak_rss_mb": figures["peak_rss_kb"] / 1024, "resources": written, "bytes": size,
            "rate": written / figures["seconds"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--paths", nargs="+", default=["cli", "job"], choices=["cli", "job"])
    parser.add_argument("--profile", action="store_true", help="cProfile the cli path (slower: not a figure)")
    parser.add_argument("--child", choices=["cli", "job"], help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.db_url, args.out, args.profile)))
        return

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(HERE.parent))
    import search as search_bench  # bench/search.py: the generator of its 1,000,000-resource store

    RESULTS.mkdir(exist_ok=True)
    db = args.db or RESULTS / f"bulk-export-{args.resources}.db"
    seconds = asyncio.run(search_bench.generate(db, args.resources))
    if seconds:
        print(f"generated {args.resources:,} resources in {seconds / 60:.1f} min ({args.resources / seconds:,.0f}/s)")
    expected = asyncio.run(count(db))
    print(f"store: {db} ({db.stat().st_size / 2**30:.2f} GiB, {expected:,} resources)")
    for path in args.paths:
        out = RESULTS / f"bulk-export-out-{path}"
        figures = measure(path, f"sqlite:///{db}", out, expected, args.profile and path == "cli")
        verdict = "meets" if figures["rate"] >= TARGET else "below"
        print(f"{path:>4}: {figures['resources']:,} resources ({figures['bytes'] / 2**20:,.0f} MiB) in "
              f"{figures['seconds']:.1f} s = {figures['rate']:,.0f} resources/s ({verdict} the {TARGET:,}/s target); "
              f"peak RSS {figures['peak_rss_mb']:.0f} MB, of which anonymous (heap) at most "
              f"{figures['peak_anon_kb'] / 1024:.0f} MB, the rest SQLite's mmap of the file "
              f"(after imports: {figures['rss_before_kb'] / 1024:.0f} MB)",
              flush=True)
        shutil.rmtree(out, ignore_errors=True)


async def count(db: Path) -> int:
    from fhirlead.storage.sqlite import SqliteStore

    store = SqliteStore(str(db))
    await store.open()
    try:
        return await store._on_reader(
            lambda conn: conn.execute("SELECT count(*) FROM resources WHERE type != 'AuditEvent'").fetchone()[0])
    finally:
        await store.close()


if __name__ == "__main__":
    main()
