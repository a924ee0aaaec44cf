"""`$export` (FHIR Bulk Data Access 2.0.0, https://hl7.org/fhir/uv/bulkdata/STU2/export.html) at the
system (`[base]/$export`), Patient (`[base]/Patient/$export`) and Group (`[base]/Group/[id]/$export`)
levels: the kick-off is `fhirlead.bulk.kickoff`, the durable job `fhirlead.bulk.run`, the status and
file URLs `fhirlead.bulk.routes`; docs/bulk-export.md.
"""

from __future__ import annotations

from typing import Any

from fhirlead.bulk import JOBS
from fhirlead.bulk.kickoff import kick_off
from fhirlead.bulk.run import SLICE_SECONDS, run_slice
from fhirlead.jobs import JobWorker
from fhirlead.plugins import Operation, OperationCall, OperationRegistry

NAME = "export"


async def authorize(policy: Any, call: OperationCall) -> None:
    """Asking is open to any token; what is exported is narrowed by its grant at kick-off
    (`fhirlead.bulk.scope.export_types`, 403 when it reaches nothing)."""


def worker(server: Any) -> JobWorker:
    """Runs the export jobs; woken by the kick-off's commit of its job record (it writes no resources, so
    the loop also polls: `fhirlead.jobs.POLL_SECONDS`)."""
    # a slice takes about SLICE_SECONDS: a server killed during one leaves the job to others soon after
    return JobWorker(server, JOBS, run_slice, lambda written: False, lease_seconds=15 * SLICE_SECONDS)


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, kick_off, system=True, authorize=authorize))
    registry.add(Operation(NAME, kick_off, type_level=True, resource_types=frozenset({"Patient"}), authorize=authorize))
    registry.add(Operation(NAME, kick_off, instance=True, resource_types=frozenset({"Group"}), authorize=authorize))
    registry.add_worker(worker)
