"""Care gaps that become work: an open gap found by `$care-gaps` (asked with `recordTasks=true`) is a
`Task` for the patient's care team, and the Task completes by itself when new data closes the gap.

**The Task.** One per patient, measure and measurement period: its id is derived from the three
(`gap-<sha256>`), and its identifier (system GAP_SYSTEM) spells them, so repeated calls find it instead of
creating another. `status` requested, `intent` plan, `code` CAREGAP, `focus` the Measure, `for` the
patient, `restriction.period` the measurement period, `input` the measure's canonical URL; `owner` the
`practitioner` the call named, else the patient's active CareTeam, else their first generalPractitioner.
A completed or cancelled Task whose gap is open again is set back to requested (a new version).

**Re-evaluation after new data** (DESIGN §7: a durable job, recorded in the same commit as its cause).
- While a patient has open gap Tasks, a record (kind OPEN, key the patient id) says so.
- A write observer (`fhirlead.storage.observed`) looks, in every unit of work that wrote resources of
  the Patient compartment, at the patients they belong to; for each that has an OPEN record it writes a
  job record (kind JOB, key the patient id, `pending` true) in the same unit of work: whatever path the
  data came by (REST, transaction, `fhirlead load`), the job commits with it or not at all.
- The worker (`fhirlead.jobs.JobWorker`, in every `fhirlead serve`) takes pending jobs under a lease (a
  job whose holder died is taken by another process), re-evaluates the patient's measures
  that have open gap Tasks, and completes each Task whose gap closed (`status` completed, `businessStatus`
  closed-gap, or not-applicable when the patient left the denominator, e.g. an exclusion was recorded;
  `output` the resources the evaluation used as evidence), in one unit of work with the OPEN
  record's update. The job is done unless new data arrived meanwhile (then it runs again). A stop at any
  point leaves the job pending: it runs again, and a Task already completed is left as it is, so
  nothing is lost or counted twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import patient_compartment
from fhirlead.errors import FhirError
from fhirlead.jobs import Jobs, JobWorker
from fhirlead.measure import live
from fhirlead.measure.evaluate import measurement_period
from fhirlead.measure.gaps import gap_status
from fhirlead.measure.repository import CompiledMeasure, measures_of
from fhirlead.search.collect import all_matches
from fhirlead.server import Server
from fhirlead.storage.observed import Written
from fhirlead.storage.port import UnitOfWork, VersionConflict

log = logging.getLogger(__name__)

GAP_SYSTEM = "http://fhirlead.org/fhir/care-gap"  # Task.identifier: "<patient>|<measure url>|<start>/<end>"
CAREGAP = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CAREGAP", "display": "Care Gaps"}
OPEN = "care-gap-open"  # records: patient id -> {"tasks": n} while the patient has open gap Tasks
JOB = "care-gap-recheck"  # durable jobs (fhirlead.jobs): patient id -> {"pending": bool}
JOBS = Jobs(JOB)
NOT_EVIDENCE = ("AuditEvent", "Provenance", "Task")  # what the server writes about the record, not clinical data
OPEN_STATUSES = ("requested", "received", "accepted", "ready", "in-progress", "on-hold")


def task_id(patient: str, measure_url: str, period: tuple[str, str]) -> str:
    digest = hashlib.sha256(f"{patient}|{measure_url}|{period[0]}/{period[1]}".encode()).hexdigest()
    return f"gap-{digest[:40]}"


async def record_open_gap(server: Server, uow: UnitOfWork, patient: str, compiled: CompiledMeasure,
                          period: tuple[str, str], owner: str | None, now: datetime) -> str:
    """The patient's Task for this open gap, created or reopened; its `Task/id`."""
    url = str(compiled.resource.get("url") or f"Measure/{compiled.version.id}")
    id_ = task_id(patient, url, period)
    current = await uow.read("Task", id_)
    stamp = now.isoformat(timespec="seconds")
    if current is not None and current.body is not None:
        task = fhirjson.loads(current.body)
        if task.get("status") in OPEN_STATUSES:
            return f"Task/{id_}"
        task.update(status="requested", businessStatus={"text": "open-gap"}, lastModified=stamp)
        task.pop("output", None)
    else:
        title = compiled.resource.get("title") or compiled.resource.get("name") or url
        task = {
            "resourceType": "Task", "id": id_,
            "identifier": [{"system": GAP_SYSTEM, "value": f"{patient}|{url}|{period[0]}/{period[1]}"}],
            "status": "requested", "businessStatus": {"text": "open-gap"}, "intent": "plan", "priority": "routine",
            "code": {"coding": [CAREGAP], "text": f"Close care gap: {title}"},
            "description": f"{title}: open care gap for the period {period[0]} to {period[1]}",
            "focus": {"reference": f"Measure/{compiled.version.id}"}, "for": {"reference": patient},
            "authoredOn": stamp, "lastModified": stamp,
            "restriction": {"period": {"start": period[0], "end": period[1]}},
            "input": [{"type": {"text": "measure"}, "valueCanonical": url}],
        }
        if owner:
            task["owner"] = {"reference": owner}
    await uow.write("Task", id_, task, server.extractor.extract(task), "PUT",
                    expected_version=0 if current is None else current.version)
    await uow.put_record(OPEN, patient.partition("/")[2], {"open": True})
    return f"Task/{id_}"


async def owner_of(server: Server, patient: str, practitioner: str | None) -> str | None:
    """Who a gap Task goes to: the practitioner asked for, else the patient's active CareTeam, else their
    first generalPractitioner."""
    if practitioner:
        return practitioner
    teams = await all_matches(server.store, server.search, "CareTeam", [("subject", patient), ("status", "active")])
    if teams:
        return teams[0].reference
    version = await server.store.read("Patient", patient.partition("/")[2])
    body = fhirjson.loads(version.body) if version is not None and version.body else {}
    first = next(iter(body.get("generalPractitioner") or ()), None)
    return first.get("reference") if isinstance(first, dict) else None


# -- the write observer ------------------------------------------------------------------------------

def observer(server: Server) -> Any:
    compartment = patient_compartment()

    async def note_new_evidence(uow: UnitOfWork, written: Sequence[Written]) -> None:
        patients: set[str] = set()
        for write in written:
            params = compartment.get(write.type_)
            if write.entries is None or not params or write.type_ in NOT_EVIDENCE:
                continue
            patients |= {id_ for key, type_, id_, url, _ in write.entries.reference
                         if key in params and type_ == "Patient" and not url}
        for patient in sorted(patients):
            record = await uow.get_record(OPEN, patient)  # in the transaction: no wait on another connection
            if record is not None and record.doc.get("open"):
                await JOBS.enqueue(uow, patient)

    return note_new_evidence


# -- the worker ------------------------------------------------------------------------------------

def worker(server: Server) -> JobWorker:
    """Runs the re-evaluation jobs (`fhirlead.jobs`): woken by commits that wrote clinical data."""
    compartment = patient_compartment()
    return JobWorker(server, JOBS, recheck, lambda written: any(
        w.type_ in compartment and w.type_ not in NOT_EVIDENCE for w in written))


async def recheck(server: Server, patient_id: str) -> None:
    """Re-evaluate the patient's open gap Tasks' measures; complete the Tasks whose gap closed."""
    patient = f"Patient/{patient_id}"
    tasks = [fhirjson.loads(v.body or b"{}") for v in await all_matches(
        server.store, server.search, "Task", [("subject", patient), ("identifier", f"{GAP_SYSTEM}|")])]
    tasks = [t for t in tasks if t.get("status") in OPEN_STATUSES]
    closed: list[tuple[dict[str, Any], str, list[str]]] = []  # (task, its gap's status now, evidence)
    for task in tasks:
        period = (task["restriction"]["period"]["start"], task["restriction"]["period"]["end"])
        try:
            compiled = await measures_of(server).by_id(task["focus"]["reference"].partition("/")[2])
            data = live.store_data(server.store, server.search, [compiled.evaluator])
            [results] = await live.evaluate(data, [compiled.evaluator], [patient_id], measurement_period(*period),
                                            keep_evaluated=True)
        except FhirError:
            continue  # the Measure is gone or cannot be evaluated: the Task stays for a person to decide
        if not results:
            continue
        result = results[0]
        groups = compiled.evaluator.definition.groups
        today = datetime.now(UTC).date().isoformat()
        statuses = {gap_status(g, result.groups[i], today) for i, g in enumerate(groups)}
        if statuses <= {"closed-gap", "not-applicable"}:
            status = "closed-gap" if "closed-gap" in statuses else "not-applicable"
            closed.append((task, status, [key for key in result.evaluated if key != patient]))
    remaining = len(tasks) - len(closed)
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    async with server.store.unit_of_work() as uow:
        for task, status, evidence in closed:
            current = await uow.read("Task", task["id"])
            if current is None or current.body is None:
                continue
            task = fhirjson.loads(current.body)
            if task.get("status") not in OPEN_STATUSES:
                continue
            task.update(status="completed", businessStatus={"text": status}, lastModified=stamp,
                        output=[{"type": {"text": "evidence"}, "valueReference": {"reference": key}}
                                for key in evidence] or [{"type": {"text": "evidence"}, "valueString": "none"}])
            try:
                await uow.write("Task", task["id"], task, server.extractor.extract(task), "PUT",
                                expected_version=current.version)
            except VersionConflict:
                continue  # someone changed the Task meanwhile: the next run sees it
        if not remaining:
            await uow.put_record(OPEN, patient_id, {"open": False})


def register(registry: Any) -> None:
    registry.add_write_observer(observer)
    registry.add_worker(worker)
