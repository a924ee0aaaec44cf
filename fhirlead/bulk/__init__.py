"""FHIR Bulk Data Access 2.0.0 `$export` (https://hl7.org/fhir/uv/bulkdata/STU2/export.html): shared state.

An export is two records (`fhirlead.storage.records`) and one folder:
- STATUS (key: the job id): who asked (the token's client id), what (level, types, `_since`, the request
  URL), `transactionTime`, its state (`running`, `done`, `failed`) and progress; expires
  `FHIRLEAD_EXPORT_EXPIRE_SECONDS` after it finished (then its files are swept).
- JOBS (`fhirlead.jobs`, same key): the durable job a worker runs in slices until the export is done.
- `<export dir>/<job id>/`: one `<Type>.ndjson` file per type, `error.ndjson` (OperationOutcomes),
  `members.json` for a Group export or one limited by `patient` (the patients at kick-off), and
  `related.json` for ATR's `$davinci-data-export` (per type, the ids the attribution list reaches).
  Member lists are files, not in the record: a list of 100,000 patients would strain a store record.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from fhirlead.jobs import Jobs

STATUS = "bulk-export-status"
JOBS = Jobs("bulk-export")
ERROR_FILE = "error.ndjson"
MEMBERS_FILE = "members.json"
RELATED_FILE = "related.json"


def export_root(settings: Any) -> Path:
    """`FHIRLEAD_EXPORT_DIR`, else `exports` beside a SQLite store's file, else `./fhirlead-exports`."""
    if settings.export_dir:
        return Path(settings.export_dir)
    store = str(settings.store)
    if store.startswith("sqlite:///"):
        return Path(store[len("sqlite:///"):]).parent / "exports"
    return Path("fhirlead-exports")


def job_folder(settings: Any, job_id: str) -> Path:
    return export_root(settings) / job_id


def remove_folder(settings: Any, job_id: str) -> None:
    shutil.rmtree(job_folder(settings, job_id), ignore_errors=True)


async def sweep(server: Any) -> None:
    """Remove the folders of exports whose status record is gone (expired `FHIRLEAD_EXPORT_EXPIRE_SECONDS`
    after they finished, or cancelled): §"Output File Request", files expire."""
    root = export_root(server.settings)
    if not root.is_dir():
        return
    for folder in root.iterdir():
        try:
            young = folder.stat().st_mtime > time.time() - 60  # a kick-off may be writing its record
        except OSError:
            continue
        if folder.is_dir() and not young and await server.store.records.get(STATUS, folder.name) is None:
            shutil.rmtree(folder, ignore_errors=True)
