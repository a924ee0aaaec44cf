"""`fhirlead load`: bulk ingest of Bundle files, NDJSON files and directories of them.

    fhirlead load [--store sqlite:///./fhirlead.db] PATH...

Everything goes through the transaction code the API uses (`fhirlead.bundles.transaction`), so
validation, indexing and reference resolution are exactly the API's. A Bundle is loaded as one
transaction — a `batch` Bundle too, so its `urn:uuid` references are resolved and a failing Bundle
leaves nothing behind. Other Bundles (collection, searchset, …) and NDJSON files are loaded as their
resources: PUT when they carry an id (bulk exports keep ids and `Type/id` references), POST otherwise;
NDJSON in transactions of CHUNK lines, read as it goes (a file of any size is never in memory whole):
a chunk with a bad line is rolled back and reported, the rest loads. Several Bundles/chunks share one
commit (see Loader), which is where most of the speed is; with a second core, a worker process validates
them ahead of the writes (fhirlead/validation/ahead.py: ~2,600-3,000 → ~4,300-5,000 resources/s on 2 cores).

Resuming: every unit (a Bundle file, an NDJSON chunk) that has been committed is journaled in the
store's records (kind "load-journal", key the SHA-256 of the unit's bytes), and a later run skips the
units it finds there, so re-running a load after a crash or a partial failure loads only what is
missing. `--reload` ignores the journal. See Loader for when the journal is written.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import hashlib
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

from fhirlead import fhirjson, heap, sources
from fhirlead.bundles import transaction
from fhirlead.bundles.entries import Entry, entries_of_transaction, read_bundle, read_entry
from fhirlead.errors import FhirError
from fhirlead.interaction.incoming import advice
from fhirlead.server import Server
from fhirlead.settings import Settings
from fhirlead.storage.port import UnitOfWork
from fhirlead.validation import ahead as validation_ahead

CHUNK = 500  # NDJSON lines per transaction
GROUP = 5000  # resources per commit, across Bundles (1,000: 18 % of a 100k load went to commits; 5,000: 10 %)
SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")
JOURNAL = "load-journal"  # records kind: one record per committed unit, keyed by the SHA-256 of its bytes
PROGRESS_EVERY = 5000  # resources (loaded or skipped) per progress line when stderr is not a terminal
AHEAD_BYTES = 16 << 20  # how far ahead of the writes the validation worker is offered units (~2 commits)


class LoadError(Exception):
    """A file that could not be loaded; the message says where and why."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("load", help="load Bundle / NDJSON files into the store")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories (.json, .ndjson, .gz)")
    parser.add_argument("--store", default=Settings().store, help="store URL (FHIRLEAD_STORE)")
    parser.add_argument("--reload", action="store_true",
                        help="load everything again, even Bundles/chunks the load journal says are loaded")
    parser.add_argument("--source", help="the URI of the system the files come from: meta.source of what has none, "
                                         "and a Provenance per Bundle/chunk (docs/sources.md); default: neither")
    parser.add_argument("--organization", help="Organization/ID those Provenance name as agent (with --source)")
    parser.add_argument("--one-process", action="store_true",
                        help="validate in the loading process only (default, with 2+ cores: a worker process "
                             "validates the files ahead of the writes)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    files = list(find_files([Path(path) for path in args.paths]))
    if not files:
        print("fhirlead load: no .json or .ndjson files found", file=sys.stderr)
        return 2
    if args.organization and not args.source:
        print("fhirlead load: --organization needs --source", file=sys.stderr)
        return 2
    source = sources.of_operator(args.source, args.organization) if args.source else None
    ahead = not args.one_process and validation_ahead.available()
    try:
        report = asyncio.run(load_files(Settings(store=args.store), files, Progress(sys.stderr), reload=args.reload,
                                        source=source, own_heap=True, ahead=ahead))
    except KeyboardInterrupt:
        print("\nfhirlead load: interrupted; what was committed stays (the journal lists it): the same command "
              "loads the rest", file=sys.stderr)
        return 130
    report.print_summary(sys.stderr)
    return 1 if report.failures else 0


def find_files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
        else:
            yield path


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # resources loaded all the same (interaction.incoming.advice)
    files: int = 0
    started: float = field(default_factory=time.perf_counter)
    skipped: Counter[str] = field(default_factory=Counter)  # units skipped (already loaded), per kind
    skipped_resources: int = 0
    skipped_files: dict[str, list[int]] = field(default_factory=dict)  # file -> [units, resources] skipped
    validated_ahead: int = 0  # resources the validation worker validated (fhirlead/validation/ahead.py)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def skipped_units(self) -> int:
        return sum(self.skipped.values())

    def skip(self, unit: Unit, resources: int) -> None:
        self.skipped[unit.kind] += 1
        self.skipped_resources += resources
        per_file = self.skipped_files.setdefault(str(unit.path), [0, 0])
        per_file[0] += 1
        per_file[1] += resources

    def rate(self) -> float:
        return self.total / max(time.perf_counter() - self.started, 1e-9)

    def print_summary(self, out: TextIO) -> None:
        elapsed = time.perf_counter() - self.started
        print(f"loaded {self.total:,} resources from {self.files - len(self.failures)} of {self.files} files "
              f"in {elapsed:.1f} s ({self.rate():,.0f} resources/s)", file=out)
        if self.validated_ahead:
            print(f"  validated ahead by a worker process: {self.validated_ahead:,}", file=out)
        for type_, count in sorted(self.counts.items()):
            print(f"  {type_:<32} {count:>10,}", file=out)
        if self.skipped:
            units = " and ".join(f"{n:,} {kind}{'' if n == 1 else 's'}" for kind, n in sorted(self.skipped.items()))
            print(f"skipped {units} ({self.skipped_resources:,} resources) already loaded "
                  f"(--reload loads them again)", file=out)
            for where, (n, resources) in list(self.skipped_files.items())[:SKIPPED_FILES_SHOWN]:
                print(f"  skipped {where}: {n:,} unit{'' if n == 1 else 's'} ({resources:,} resources)", file=out)
            if len(self.skipped_files) > SKIPPED_FILES_SHOWN:
                print(f"  … and {len(self.skipped_files) - SKIPPED_FILES_SHOWN:,} more files", file=out)
        for warning in self.warnings:
            print(f"WARNING {warning}", file=out)
        for failure in self.failures:
            print(f"FAILED {failure}", file=out)


SKIPPED_FILES_SHOWN = 20


class Progress:
    """One status line on stderr: on a terminal redrawn at most twice a second; otherwise (a log file,
    a pipe) a new line each time another PROGRESS_EVERY resources have been loaded or skipped, and at
    the end."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.last = 0.0
        self.next_line = PROGRESS_EVERY

    def update(self, report: Report, current: Path, final: bool = False) -> None:
        done = report.total + report.skipped_resources
        if self.live:
            now = time.perf_counter()
            if not final and now - self.last < 0.5:
                return
            self.last = now
        else:
            if not final and done < self.next_line:
                return
            self.next_line = (done // PROGRESS_EVERY + 1) * PROGRESS_EVERY
        line = f"{report.total:>10,} resources  {report.rate():>8,.0f}/s  file {report.files}: {current.name}"
        if report.skipped_resources:
            line += f"  (skipped {report.skipped_resources:,} already loaded)"
        print(("\r" + line[:120].ljust(120)) if self.live else line, end="" if self.live else "\n", file=self.out)
        if final and self.live:
            print(file=self.out)


async def load_files(settings: Settings, files: list[Path], progress: Progress | None = None, *,
                     reload: bool = False, source: sources.Source | None = None, own_heap: bool = False,
                     ahead: bool = False) -> Report:
    """Load `files`; units the load journal lists are skipped (counted in the Report) unless `reload`.
    With a `source`, what is written gets its meta.source and a Provenance per unit (docs/sources.md).
    `own_heap` (the CLI, a process of its own): the garbage collector runs once per commit (fhirlead/heap.py).
    `ahead`: a worker process validates the units before they are written (fhirlead/validation/ahead.py)."""
    server = await Server.start(settings)
    report = Report()
    if own_heap:  # the collector off, run once per commit on what is left (Loader.flush)
        heap.freeze()
        gc.disable()
    validation = server.ahead = validation_ahead.AheadValidation(server, ordered=True) if ahead else None
    loader = Loader(server, report, reload=reload, source=source, own_heap=own_heap)
    units = read_ahead(planned(files), partial(validation.offer, source=source)) if validation else planned(files)
    try:
        for path, unit in units:
            if unit is None:
                report.files += 1
            elif isinstance(unit, LoadError):
                report.failures.append(str(unit))
            else:
                try:
                    await loader.add(unit)
                except LoadError as error:  # this unit cannot be read: the file's other units still load
                    report.failures.append(str(error))
                if progress:
                    progress.update(report, path)
        await loader.flush()
        report.validated_ahead = validation.skipped if validation else 0
        if progress and files:
            progress.update(report, files[-1], final=True)
    finally:
        if own_heap:
            gc.enable()
        await server.stop()  # the worker too
    return report


Planned = tuple[Path, "Unit | LoadError | None"]  # a file begins (None), one of its units, or why it stops


def planned(files: list[Path]) -> Iterator[Planned]:
    """Each file's units in order: (path, None) as a file begins, then (path, unit) for each unit, or
    (path, LoadError) where the rest of the file cannot be read."""
    for path in files:
        yield path, None
        try:
            for unit in units_of(path):
                yield path, unit
        except LoadError as error:
            yield path, error


def read_ahead(planned: Iterator[Planned], offer: Callable[[Callable[[], list[Entry]], int], int | None],
               window: int = AHEAD_BYTES) -> Iterator[Planned]:
    """`planned` as it comes, each unit offered (to the validation worker) `window` bytes of units earlier."""
    held: deque[Planned] = deque()
    size = 0
    for item in planned:
        unit = item[1]
        if isinstance(unit, Unit):
            unit.seq = offer(unit.build, unit.size)
            size += unit.size
        held.append(item)
        while size > window:
            _, first = held[0]
            size -= first.size if isinstance(first, Unit) else 0
            yield held.popleft()
    yield from held


@dataclass
class Unit:
    """What must land or fail as a whole: one Bundle, or one chunk of an NDJSON file."""

    where: str
    build: Callable[[], list[Entry]]  # fresh entries on every call: a failed attempt has rewritten them
    key: str = ""  # SHA-256 hex of the unit's bytes (the Bundle file's, the NDJSON chunk's lines): journal key
    path: Path = field(default_factory=Path)  # the file it comes from
    kind: str = "Bundle"  # for the summary: "Bundle", "file" (a single resource) or "NDJSON chunk"
    lines: str = ""  # "first-last" line numbers of an NDJSON chunk
    size: int = 0  # bytes
    seq: int | None = None  # its number with the validation worker, once offered (`read_ahead`)


class Loader:
    """Commits several units per unit of work (one durable commit per GROUP resources instead of one
    per Bundle). If a group fails, it is rolled back and its units retried one by one, so only the
    failing ones are left out and reported.

    The load journal: a unit whose key is in the journal is skipped (unless `reload`). A unit's journal
    record is written in the same unit of work as its resources (`UnitOfWork.put_record`), so they
    commit together or not at all: after a crash (`kill -9` included) the journal lists exactly the
    units whose resources are in the store, and a re-run loads the rest without duplicating any. A
    failed unit is not journaled and is tried again by the next run.

    Units with the same bytes share a journal record: once one of them is journaled, later runs skip
    them all (within one run, both are loaded, as before the journal existed).
    """

    def __init__(self, server: Server, report: Report, *, reload: bool = False,
                 source: sources.Source | None = None, own_heap: bool = False) -> None:
        self.server, self.report, self.reload, self.source = server, report, reload, source
        self.own_heap = own_heap
        self.pending: list[tuple[Unit, list[Entry]]] = []
        self.size = 0

    async def add(self, unit: Unit) -> None:
        if not self.reload and unit.key:
            record = await self.server.store.records.get(JOURNAL, unit.key)
            if record is not None:
                self.report.skip(unit, int(record.doc.get("resources", 0)))
                return
        entries = unit.build()
        for entry in entries:
            if isinstance(entry.resource, dict):
                self.report.warnings += [f"{unit.where}: {entry.type_}/{entry.resource.get('id', '')}: "
                                         f"{issue.diagnostics}" for issue in advice(entry.resource, entry.type_)]
        self.pending.append((unit, entries))
        self.size += len(entries)
        if self.size >= GROUP:
            await self.flush()

    async def flush(self) -> None:
        await self._flush()
        if self.own_heap:  # a load allocates far more than it keeps: collect and freeze once per commit,
            heap.freeze()  # the group's resources gone by now (collecting as it went took 15% of a load)

    async def _flush(self) -> None:
        pending, self.pending, self.size = self.pending, [], 0
        if not pending:
            return
        try:
            await self.commit(pending)
        except FhirError:
            for unit, _ in pending:
                await self.alone(unit)

    async def alone(self, unit: Unit) -> None:
        try:
            await self.commit([(unit, unit.build())])
        except FhirError as error:
            self.report.failures.append(f"{unit.where}: {error}")

    async def commit(self, pending: list[tuple[Unit, list[Entry]]]) -> None:
        """Write the units and their journal records in one unit of work; count them once committed."""
        async with sources.unit_of_work(self.server, self.source) as uow:
            for unit, entries in pending:
                await self.write(uow, unit, entries)
                if isinstance(uow, sources.SourcedUnit):
                    await uow.record(self.server)  # this unit's Provenance (a commit holds several)
                if unit.key:
                    where = f"{unit.path}:{unit.lines}" if unit.lines else str(unit.path)
                    await uow.put_record(JOURNAL, unit.key, {"where": where, "resources": len(written(entries))})
        for _, entries in pending:
            self.report.counts.update(written(entries))

    async def write(self, uow: UnitOfWork, unit: Unit, entries: list[Entry]) -> None:
        """One unit's writes; with the worker's verdict on it, its ids and without validating again
        what the worker found valid (fhirlead/validation/ahead.py)."""
        async with validation_ahead.vouched(self.server.ahead, unit.seq) as ids:
            await transaction.write(self.server, uow, entries, "", "minimal", ids)


def written(entries: list[Entry]) -> list[str]:
    """The types of the resources a unit's entries create or update."""
    return [entry.type_ for entry in entries if entry.method in ("POST", "PUT")]


def units_of(path: Path) -> Iterator[Unit]:
    if path.name.endswith((".ndjson", ".ndjson.gz")):
        yield from ndjson_units(path)
        return
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (OSError, EOFError) as error:
        raise LoadError(f"{path}: {error}") from None
    kind = kind_of(raw, str(path))  # a file that is not JSON fails here, before anything is queued
    yield Unit(str(path), partial(file_entries, raw, str(path)), key=digest(raw), path=path, kind=kind, size=len(raw))


def kind_of(raw: bytes, where: str) -> str:
    """"Bundle" or "file" (one resource), from the top-level resourceType alone: nothing else of the file
    is built (a 100,000-member Group is then held once as bytes, for retries, and once parsed, while it is
    written; a Bundle is parsed once, by its unit). Text that is not JSON fails here, with parse's reason."""
    try:
        return "Bundle" if fhirjson.resource_type(raw) == "Bundle" else "file"
    except fhirjson.JsonError as error:
        parse(raw, where)  # raises the LoadError that says why
        raise LoadError(f"{where}: not valid JSON ({error})") from None  # parse took what msgspec refused


def ndjson_units(path: Path) -> Iterator[Unit]:
    """An NDJSON file in chunks of CHUNK lines, read as it is loaded: a file of any size is never in
    memory whole (the Loader holds at most GROUP resources' worth of chunks)."""
    chunk: list[tuple[int, bytes]] = []
    try:
        with gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    chunk.append((number, line.rstrip(b"\r\n")))
                if len(chunk) == CHUNK:
                    yield ndjson_unit(path, chunk)
                    chunk = []
    except (OSError, EOFError) as error:
        raise LoadError(f"{path}: {error}") from None
    if chunk:
        yield ndjson_unit(path, chunk)


def ndjson_unit(path: Path, chunk: list[tuple[int, bytes]]) -> Unit:
    span = f"{chunk[0][0]}-{chunk[-1][0]}"
    where = f"{path} lines {span}"
    key = digest(b"\n".join(line for _, line in chunk))
    return Unit(where, partial(ndjson_entries, path, chunk, where), key=key, path=path, kind="NDJSON chunk",
                lines=span, size=sum(len(line) for _, line in chunk))


def digest(raw: bytes) -> str:
    """The journal key of a unit: SHA-256 hex of its bytes (decompressed, for .gz files)."""
    return hashlib.sha256(raw).hexdigest()


def ndjson_entries(path: Path, chunk: list[tuple[int, bytes]], where: str) -> list[Entry]:
    return as_entries([parse(line, f"{path} line {number}") for number, line in chunk], where)


def file_entries(raw: bytes, where: str) -> list[Entry]:
    body = parse(raw, where)
    if isinstance(body, dict) and body.get("resourceType") == "Bundle" and body.get("type") in ("batch", "transaction"):
        try:
            return entries_of_transaction(read_bundle({**body, "type": "transaction"}, "")[1])
        except FhirError as error:
            raise LoadError(f"{where}: {error}") from None
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        return as_entries([item.get("resource") for item in body.get("entry", [])], where)
    return as_entries([body], where)


def parse(raw: bytes, where: str) -> Any:
    try:
        return fhirjson.loads_untrusted(raw)
    except (fhirjson.TooDeep, fhirjson.DuplicateKey) as error:
        raise LoadError(f"{where}: refused: {error}") from None
    except fhirjson.JsonError as error:
        raise LoadError(f"{where}: not valid JSON ({error})") from None


def as_entries(resources: list[Any], where: str) -> list[Entry]:
    """Plain resources as transaction entries: PUT Type/id when they carry an id, else POST Type."""
    entries = []
    for index, resource in enumerate(resources):
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise LoadError(f"{where}: item {index} is not a FHIR resource")
        type_, id_ = resource["resourceType"], resource.get("id")
        request = {"method": "PUT", "url": f"{type_}/{id_}"} if id_ else {"method": "POST", "url": type_}
        try:
            entries.append(read_entry(index, {"request": request, "resource": resource}, ""))
        except FhirError as error:
            raise LoadError(f"{where}: {error}") from None
    return entries
