"""The export job (DESIGN §7): run by `fhirlead.jobs.JobWorker` in slices of about a second, each slice
appending pages of stored bytes to the type's NDJSON file and then recording its progress (file sizes,
paging cursor) in the STATUS record with compare-and-set. A slice resumed after a stop first cuts each
file back to its recorded size, so a page written but not recorded is written again exactly once.

Snapshot (Bulk Data 2.0.0 §"Response - Complete Status": `transactionTime`): a resource is exported as
its version at `transactionTime`. Each type is scanned once in the store's keyset order; a resource whose
current version is newer is exported as the newest version at or before `transactionTime` (read from its
history), and one created after it is left out. Resources deleted after `transactionTime` but before
their type's scan began are exported from history too (see docs/bulk-export.md for the one gap).

What is kept of each version is decided on that version (`fhirlead.bulk.select`): `_since` (and ATR's
`_until`), the compartments of the export's patients, `_typeFilter` queries and, for `$davinci-data-export`,
the attribution list's resources; `_elements` is the one case where a line is re-serialised.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from fhirlead import clock, fhirjson, subsetting
from fhirlead.bulk import ERROR_FILE, MEMBERS_FILE, RELATED_FILE, STATUS, job_folder, remove_folder, sweep
from fhirlead.bulk.select import filtered
from fhirlead.definitions import patient_compartment
from fhirlead.search.parse import parse_search
from fhirlead.storage.port import ResourceVersion
from fhirlead.storage.records import RecordConflict

PAGE = 1000
SLICE_SECONDS = 1.0


class ExportBroken(Exception):
    """The export cannot go on (its files are gone, its cursor no longer valid): it ends failed."""


async def run_slice(server: Any, job_id: str) -> float | None:
    """One slice of the job: None when it is over (done, failed, cancelled), 0 to run again at once."""
    records = server.store.records
    record = await records.get(STATUS, job_id)
    if record is None or record.doc.get("state") != "running":
        return None
    doc, rev = dict(record.doc), record.rev
    folder = job_folder(server.settings, job_id)
    deadline = time.monotonic() + SLICE_SECONDS
    try:
        _restore(folder, doc)
        while True:  # at least one step per slice
            await step(server, doc, folder)
            rev = (await records.put(STATUS, job_id, doc, expected_rev=rev, expires=_expiry(server))).rev
            if doc["state"] != "running" or time.monotonic() >= deadline:
                break
    except RecordConflict:  # cancelled (DELETE) meanwhile: its files go with it
        remove_folder(server.settings, job_id)
        return None
    except ExportBroken as error:
        _fail(folder, doc, str(error))
        try:
            await records.put(STATUS, job_id, doc, expected_rev=rev, expires=_expiry(server))
        except RecordConflict:
            remove_folder(server.settings, job_id)
        return None
    if doc["state"] != "running":
        await sweep(server)  # a finished export is a good moment to drop the expired ones' files
    return 0 if doc["state"] == "running" else None


def _expiry(server: Any) -> float:
    return time.time() + server.settings.export_expire_seconds


def _restore(folder: Path, doc: dict[str, Any]) -> None:
    """Cut every file back to the size its recorded progress says (a stop may have left a page more)."""
    if doc["files"] and not folder.is_dir():
        raise ExportBroken("the export's files are gone (the export folder was removed)")
    for type_, file in doc["files"].items():
        path = folder / f"{type_}.ndjson"
        size = path.stat().st_size if path.exists() else -1
        if size < file["bytes"]:
            raise ExportBroken(f"the {type_} file is shorter than recorded: it cannot be resumed")
        if size > file["bytes"]:
            os.truncate(path, file["bytes"])


def _fail(folder: Path, doc: dict[str, Any], reason: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "exception", "diagnostics": f"The export failed: {reason}"}]}
    with open(folder / ERROR_FILE, "ab") as out:
        out.write(fhirjson.dumps(outcome) + b"\n")
    doc["state"] = "failed"
    doc["failure"] = reason


async def step(server: Any, doc: dict[str, Any], folder: Path) -> None:
    """One page of the current type's scan, or its changed-since-transactionTime part; then the next type."""
    step = dict(doc["step"])
    types = doc["types"]
    if step["index"] >= len(types):
        _finish(folder, doc)
        return
    type_ = types[step["index"]]
    patients = _patients(folder, doc)
    related = _related(folder, doc, type_)
    elements = (doc.get("elements") or {}).get(type_)
    if step["phase"] == "current":
        step.setdefault("began", clock.instant(clock.now()))
        versions, cursor = await _page(server, doc, type_, step.get("cursor"))
        chosen = [v for v in [await _as_of(server, v, doc["transactionTime"]) for v in versions] if v is not None]
        wanted = [v for v in chosen if _wanted(server, v, doc, patients) and (related is None or v.id in related)]
        _append(folder, doc, type_, await filtered(server, doc, type_, wanted), elements)
        step["cursor"] = cursor
        if cursor is None:
            step["phase"] = "deleted"
    else:
        gone = await _deleted_before_scan(server, type_, doc["transactionTime"], step["began"])
        wanted = [v for v in gone if _wanted(server, v, doc, patients) and (related is None or v.id in related)]
        _append(folder, doc, type_, await filtered(server, doc, type_, wanted), elements)
        step = {"index": step["index"] + 1, "phase": "current", "cursor": None}
    doc["step"] = step


async def _page(server: Any, doc: dict[str, Any], type_: str, cursor: str | None
                ) -> tuple[list[ResourceVersion], str | None]:
    params = [("_count", str(PAGE))]
    if doc.get("since"):
        params.append(("_lastUpdated", f"ge{doc['since']}"))
    query = parse_search(server.search, (type_,), params, default_count=PAGE, max_count=PAGE, strict=True).query
    query = replace(query, total="none", cursor=cursor)
    try:
        page = await server.store.search(query)
    except Exception as error:
        if cursor is None:
            raise
        raise ExportBroken(f"the {type_} scan could not be resumed ({type(error).__name__})") from None
    return page.matches, page.next_cursor


async def _as_of(server: Any, version: ResourceVersion, moment: str) -> ResourceVersion | None:
    """The resource's newest version at or before `moment` (None: it did not exist then, or was deleted)."""
    if version.last_updated <= moment:
        return version
    cursor = None
    while True:
        page = await server.store.history(version.type, version.id, None, 100, cursor)
        for older in page.versions:
            if older.last_updated <= moment:
                return None if older.deleted else older
        if page.next_cursor is None:
            return None
        cursor = page.next_cursor


async def _deleted_before_scan(server: Any, type_: str, moment: str, began: str) -> list[ResourceVersion]:
    """Resources of `type_` deleted after `moment` but before the scan began (the scan could not see them):
    their version at `moment`. History is read from `moment` on: its size is the writes since then."""
    since = clock.micros(clock.parse_instant(moment)) + 1
    oldest: dict[str, ResourceVersion] = {}
    current: dict[str, ResourceVersion] = {}
    cursor = None
    while True:
        page = await server.store.history(type_, None, since, PAGE, cursor)
        for version in page.versions:  # newest first
            current.setdefault(version.id, version)
            oldest[version.id] = version
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    found = []
    for id_, latest in current.items():
        if latest.deleted and latest.last_updated < began and oldest[id_].version > 1:
            before = await server.store.vread(type_, id_, oldest[id_].version - 1)
            if before is not None and not before.deleted and before.last_updated <= moment:
                found.append(before)
    return found


def _patients(folder: Path, doc: dict[str, Any]) -> frozenset[str] | None:
    """The patients whose compartments a Group export, or one limited by `patient`, covers (None: any
    patient's)."""
    if doc["level"] not in ("group", "patient") or not doc.get("limited", doc["level"] == "group"):
        return None
    try:
        return frozenset(fhirjson.loads((folder / MEMBERS_FILE).read_bytes()))
    except (OSError, ValueError):
        raise ExportBroken("the Group's member list is gone") from None


def _related(folder: Path, doc: dict[str, Any], type_: str) -> frozenset[str] | None:
    """For an ATR `$davinci-data-export` (level `atr`): the ids of `type_` the attribution list reaches
    (recorded at kick-off); None for other exports."""
    if doc["level"] != "atr":
        return None
    try:
        return frozenset(fhirjson.loads((folder / RELATED_FILE).read_bytes()).get(type_) or ())
    except (OSError, ValueError, AttributeError):
        raise ExportBroken("the attribution list's resources are gone") from None


def _wanted(server: Any, version: ResourceVersion, doc: dict[str, Any], patients: frozenset[str] | None) -> bool:
    """`_since` (state changed at or after it), ATR's `_until` (at or before it), and for Patient and Group
    level the compartment."""
    if version.body is None or (doc.get("since") and version.last_updated < doc["since"]):
        return False
    if doc.get("until") and version.last_updated > doc["until"]:
        return False
    if doc["level"] in ("system", "atr"):
        return True
    if version.type == "Patient":
        return patients is None or version.id in patients
    params = set(patient_compartment().get(version.type, ()))
    entries = server.extractor.extract(fhirjson.loads(version.body))
    return any(key in params and ref_type == "Patient" and not url and (patients is None or ref_id in patients)
               for key, ref_type, ref_id, url, _version in entries.reference)


def _append(folder: Path, doc: dict[str, Any], type_: str, versions: list[ResourceVersion],
            elements: list[str] | None = None) -> None:
    """Each version's stored bytes, one line each (§"Bulk Data Output File Request": NDJSON); with
    `_elements`, the version limited to those elements and tagged SUBSETTED (§"Query Parameters"), re-serialised."""
    if not versions:
        return
    folder.mkdir(parents=True, exist_ok=True)
    file = dict(doc["files"].get(type_) or {"count": 0, "bytes": 0})
    with open(folder / f"{type_}.ndjson", "ab") as out:
        for version in versions:
            body = version.body or b""
            if elements:
                line = fhirjson.dumps(subsetting.elements(fhirjson.loads(body), elements))
            else:
                line = body if b"\n" not in body else fhirjson.dumps(fhirjson.loads(body))
            out.write(line + b"\n")
            file["count"] += 1
        out.flush()
        os.fsync(out.fileno())
        file["bytes"] = out.tell()
    doc["files"] = {**doc["files"], type_: file}


def _finish(folder: Path, doc: dict[str, Any]) -> None:
    if doc.get("warnings"):
        folder.mkdir(parents=True, exist_ok=True)
        outcome = {"resourceType": "OperationOutcome", "issue": [
            {"severity": "warning", "code": "not-supported", "diagnostics": text} for text in doc["warnings"]]}
        with open(folder / ERROR_FILE, "wb") as out:
            out.write(fhirjson.dumps(outcome) + b"\n")
    doc["state"] = "done"
    doc["finished"] = time.time()
