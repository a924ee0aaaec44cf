"""`fhirlead export --store URL --out DIR [--type T ...] [--since INSTANT]`: a system-level Bulk Data export
run offline, straight from the store into `DIR/<Type>.ndjson` (no server, no token).

It is the server's export job without the job: the same steps (`fhirlead.bulk.run`: pages of 1,000 stored
versions in the store's keyset order, the snapshot as of the moment the export starts, resources deleted
since then taken from history) run in a loop over a plain context instead of in slices under a lease. Lines
are the stored bytes of each version, as `GET [base]/$export` writes them. Memory: one page at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fhirlead import clock
from fhirlead.bulk.run import ExportBroken, step
from fhirlead.bulk.scope import level_types
from fhirlead.definitions import resource_types
from fhirlead.search.extract import Extractor
from fhirlead.search.parse import parse_search
from fhirlead.search.registry import SearchRegistry
from fhirlead.storage.factory import open_store, sqlite_path
from fhirlead.storage.port import Store

LEVEL = "system"


class ExportError(Exception):
    """Why the export could not start or finish (shown to the user as is)."""


@dataclass
class Offline:
    """What the export steps of `fhirlead.bulk.run` read from a server: the store and the search parameters."""

    store: Store
    search: SearchRegistry
    extractor: Extractor
    settings: Any = None


@dataclass
class Summary:
    """What an export wrote: per type its file, resource count and bytes; how long it took."""

    out: Path
    transaction_time: str
    files: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def resources(self) -> int:
        return sum(file["count"] for file in self.files.values())


def chosen_types(named: list[str] | None) -> list[str]:
    """`--type` values (repeatable, comma-separated) checked against the system level, else all its types."""
    if not named:
        return level_types(LEVEL)
    names = list(dict.fromkeys(n.strip() for value in named for n in value.split(",") if n.strip()))
    if not names:
        raise ExportError("--type names no resource type")
    exported = set(level_types(LEVEL))
    for name in names:
        if name not in resource_types():
            raise ExportError(f"--type {name}: not a FHIR R4 resource type")
        if name not in exported:
            raise ExportError(f"--type {name}: the server's own audit trail is not exported")
    return names


def since_instant(text: str | None) -> str | None:
    """`--since`: an instant with its time zone (e.g. 2026-01-01T00:00:00Z), in the store's instant form."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in text:
        raise ExportError(f"--since {text!r}: give an instant with its time zone, e.g. 2026-01-01T00:00:00Z")
    return clock.instant(moment)


def prepare_out(folder: Path, types: list[str]) -> None:
    """Create `folder` if needed, check it is writable and holds none of the files the export would write."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".fhirlead-export-"):
            pass
    except OSError as error:
        raise ExportError(f"--out {folder}: cannot write there ({error.strerror or error})") from None
    present = [t for t in types if (folder / f"{t}.ndjson").exists()]
    if present:
        raise ExportError(f"--out {folder}: {present[0]}.ndjson is already there; export into an empty folder")


async def open_source(url: str) -> Store:
    """The open store at `url`; a SQLite file must exist (an export never creates an empty store)."""
    try:
        store = open_store(url)
        if url.startswith("sqlite:///") and not Path(sqlite_path(url)).is_file():
            raise ExportError(f"--store {url}: no such database file")
        await store.open()
    except ExportError:
        raise
    except Exception as error:  # an unsupported URL, an unreachable server, a file that is no store
        raise ExportError(f"--store {url}: cannot open it ({error})") from None
    return store


async def count(context: Offline, type_: str, since: str | None) -> int:
    """How many current resources of `type_` (changed at or after `since`): the progress bar's total."""
    params = [("_count", "0")] + ([("_lastUpdated", f"ge{since}")] if since else [])
    query = parse_search(context.search, (type_,), params, default_count=0, max_count=0, strict=True).query
    total = (await context.store.search(replace(query, total="accurate"))).total
    return total or 0


async def export(url: str, out: Path, types: list[str], since: str | None, console: Console | None = None,
                 ) -> Summary:
    """Export `types` of the store at `url` into `out` as of now, with a progress bar on `console`."""
    store = await open_source(url)
    started = time.monotonic()
    try:
        prepare_out(out, types)
        search = SearchRegistry.layered(())
        context = Offline(store, search, Extractor(search))
        moment = clock.instant(clock.now())
        doc: dict[str, Any] = {"level": LEVEL, "types": types, "since": since, "transactionTime": moment,
                               "warnings": [], "state": "running", "files": {},
                               "step": {"index": 0, "phase": "current", "cursor": None}}
        if console is None:
            await scan(context, doc, out, None)
        else:
            with progress_bar(console) as progress:
                await scan(context, doc, out, progress)
    except ExportBroken as error:
        raise ExportError(f"the export stopped: {error}; the files in {out} are incomplete") from None
    except OSError as error:
        raise ExportError(f"writing to {out} failed ({error.strerror or error}); the files there are incomplete"
                          ) from None
    finally:
        await store.close()
    return Summary(out, moment, dict(doc["files"]), time.monotonic() - started)


async def scan(context: Offline, doc: dict[str, Any], out: Path, progress: Progress | None) -> None:
    """Run the export's steps (a page each) until it is done, moving the bar after each page."""
    types = doc["types"]
    task = None
    if progress is not None:
        total = sum([await count(context, t, doc["since"]) for t in types])
        task = progress.add_task("export", total=total, kind=types[0])
    while doc["state"] == "running":
        await step(context, doc, out)
        if progress is not None and task is not None:
            done = sum(file["count"] for file in doc["files"].values())
            progress.update(task, completed=done, kind=types[min(doc["step"]["index"], len(types) - 1)])


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.fields[kind]:<24}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("resources"), TimeElapsedColumn(), console=console, transient=False)


def print_summary(summary: Summary, out: Any) -> None:
    rate = summary.resources / summary.seconds if summary.seconds else 0.0
    print(f"exported {summary.resources:,} resources in {len(summary.files)} files to {summary.out} "
          f"in {summary.seconds:.1f} s ({rate:,.0f} resources/s); snapshot as of {summary.transaction_time}", file=out)
    for type_, file in sorted(summary.files.items()):
        print(f"  {type_}.ndjson  {file['count']:,} resources  {file['bytes']:,} bytes", file=out)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    try:
        types = chosen_types(args.type)
        since = since_instant(args.since)
        out = Path(args.out)
        summary = asyncio.run(export(args.store, out, types, since, console))
    except ExportError as error:
        print(f"fhirlead export: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fhirlead export: interrupted; the files in {args.out} are incomplete", file=sys.stderr)
        return 130
    print_summary(summary, sys.stdout)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export the store's resources as NDJSON files, offline "
                                                  "(Bulk Data system-level $export without a server)")
    parser.add_argument("--store", required=True, help="store URL to read (sqlite:///… or mongodb://…)")
    parser.add_argument("--out", required=True, help="folder to write <Type>.ndjson files to (created if needed)")
    parser.add_argument("--type", action="append", metavar="T",
                        help="resource type(s) to export (repeatable, comma-separated; default: all)")
    parser.add_argument("--since", metavar="INSTANT",
                        help="only resources last updated at or after this instant (with its time zone)")
    parser.set_defaults(run=run)
