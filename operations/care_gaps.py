"""`Measure/$care-gaps` (Da Vinci DEQM 5.0.0, https://hl7.org/fhir/us/davinci-deqm/OperationDefinition-care-gaps.html)
over the live record: for each patient, which quality measures they have an open, closed, prospective
or not-applicable gap in, as gaps documents.

Input: `periodStart`, `periodEnd` (required); who: `subject` (a Patient or a Group: its members in the
period, ATR lists included), `practitioner` (the patients attributed to them: `operations.measure_subjects`),
`organization` (its patients, likewise; with `practitioner`, the reporting organization only); `status`
(required, repeatable: open-gap, closed-gap, prospective-gap, not-applicable); which measures:
`measureId`, `measureIdentifier` (a token), `measureUrl` (a canonical), each repeatable, together the
union; none of them: every active Measure. The IG's other inputs (topic, subjectGroup, parameters,
organizationResource, measureResource, measure, manifest, isDocument) are refused with a 400 naming them.

`recordTasks=true` (POST only: it writes) also records each open gap as a Task for the patient's care
team, once per patient, measure and period, completed by itself when new data closes the gap
(`operations.gap_tasks`); the caller needs write access to Tasks.

Output: Parameters with one `return` per patient that has at least one gap of an asked status: a
`document` Bundle (gaps-bundle-deqm: identifier, timestamp) whose Composition (LOINC 96315-7, "Gaps in
care report") has a section per measure with the individual MeasureReport as focus and the DetectedIssue
(CAREGAP, with the gapStatus modifier extension) as entry; then the MeasureReports, DetectedIssues, the
Patient and every resource the evaluation used. The organization, when given, is the reports' reporter
and the Composition's author (else the practitioner, else fhirlead itself as a Device). A patient with no
gap of an asked status gets no document. Nothing is stored: GET and POST alike change nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import FhirError, Issue, bad_request
from fhirlead.measure import live
from fhirlead.measure.evaluate import SubjectResult, measurement_period
from fhirlead.measure.gaps import GAPS_SYSTEM, STATUSES, gap_status
from fhirlead.measure.report import build_report
from fhirlead.measure.repository import CompiledMeasure, measures_of
from fhirlead.operations import gap_tasks
from fhirlead.operations.access import admit
from fhirlead.operations.evaluate_measure import authorize, read_period
from fhirlead.operations.measure_subjects import patients_of
from fhirlead.parameters import InputParameters
from fhirlead.plugins import Operation, OperationCall, OperationRegistry

NAME = "care-gaps"
# DEQM's definition with one input more, recordTasks (profiles/lead; DEQM's own is in profiles/deqm)
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "lead"
                             / "OperationDefinition-care-gaps.json").read_bytes())
DEQM = "http://hl7.org/fhir/us/davinci-deqm/StructureDefinition/"
UNSUPPORTED = ("topic", "subjectGroup", "parameters", "organizationResource", "measureResource", "measure",
               "manifest", "isDocument")
DEVICE = {"resourceType": "Device", "id": "fhirlead", "deviceName": [{"name": "fhirlead", "type": "manufacturer-name"}]}


async def care_gaps(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    for name in UNSUPPORTED:
        if name in params.values:
            raise FhirError(400, [Issue("not-supported", f"$care-gaps: '{name}' is not supported by this server",
                                        expression=(name,))])
    period = read_period(params)
    statuses = read_statuses(params)
    record = wants_tasks(call, params)
    if record and "open-gap" not in statuses:
        raise bad_request("recordTasks records open gaps: ask for status open-gap too", "recordTasks")
    measures = await measures_named(call, params)
    named, parameter = who(params)
    patients = await patients_of(call.server, call.request.base_url, named, parameter, period)
    evaluators = [m.evaluator for m in measures]
    data = live.store_data(call.server.store, call.server.search, evaluators, admit(call))
    organization, practitioner = params.one("organization"), params.one("practitioner")
    author = organization or practitioner
    now = datetime.now(UTC)

    def documents_of(batch: list[list[SubjectResult]]) -> tuple[list[bytes], list[tuple[str, CompiledMeasure]]]:
        """A batch's documents as bytes, and its open gaps (in a worker thread: reports are the costly part)."""
        documents, open_gaps = [], []
        for n in range(len(batch[0]) if batch else 0):
            per_measure = [(m, found[n]) for m, found in zip(measures, batch, strict=True)]
            document = gaps_document(call, per_measure, period, statuses, now, author, organization)
            if document is not None:
                documents.append(fhirjson.dumps({"name": "return", "resource": document}))
            if record:
                open_gaps.extend(opened(per_measure, now))
        return documents, open_gaps

    async def answer(batch: list[list[SubjectResult]]) -> list[bytes]:
        documents, open_gaps = await asyncio.to_thread(documents_of, batch)
        if open_gaps:  # recorded batch by batch: a Task is keyed by patient, measure and period, so a call
            await record_tasks(call, open_gaps, period, practitioner, now)  # cut short and repeated adds none twice
        return documents

    batches = live.evaluate_batches(data, evaluators, patients, measurement_period(*period), keep_evaluated=True)
    # the first batch is answered before the status is sent, so a measure that fails on it is a clean error
    first = await answer(batch) if (batch := await anext(batches, None)) is not None else []

    async def stream() -> AsyncIterator[bytes]:
        """The Parameters, a batch's documents at a time: the answer for a whole panel is never held."""
        yield b'{"resourceType":"Parameters","parameter":['
        documents, separator = first, b""
        while True:
            for document in documents:
                yield separator + document
                separator = b","
            batch = await anext(batches, None)
            if batch is None:
                break
            documents = await answer(batch)
        yield b"]}"

    return FhirResponse(200, stream=stream())


def wants_tasks(call: OperationCall, params: InputParameters) -> bool:
    if not params.flag("recordTasks"):
        return False
    if call.request.method != "POST":
        raise FhirError(405, [Issue("not-supported", "recordTasks=true writes Tasks: invoke $care-gaps with POST",
                                    expression=("recordTasks",))])
    if call.request.access is not None:
        call.request.access.require("Task", "c")
        call.request.access.require("Task", "u")
    return True


def opened(per_measure: list[tuple[CompiledMeasure, SubjectResult]], now: datetime
           ) -> list[tuple[str, CompiledMeasure]]:
    """(patient, measure) of each open gap of one patient."""
    today = now.date().isoformat()
    return [(result.subject.reference, compiled) for compiled, result in per_measure
            if "open-gap" in (gap_status(g, result.groups[i], today)
                              for i, g in enumerate(compiled.evaluator.definition.groups))]


async def record_tasks(call: OperationCall, open_gaps: list[tuple[str, CompiledMeasure]],
                       period: tuple[str, str], practitioner: str | None, now: datetime) -> None:
    """Each open gap as a Task (operations.gap_tasks), all in one unit of work."""
    server = call.server
    owners = {patient: await gap_tasks.owner_of(server, patient, practitioner) for patient, _ in open_gaps}
    async with server.store.unit_of_work() as uow:
        for patient, compiled in open_gaps:
            await gap_tasks.record_open_gap(server, uow, patient, compiled, period, owners[patient], now)


def read_statuses(params: InputParameters) -> set[str]:
    statuses = params.values.get("status") or []
    if not statuses:
        raise bad_request("$care-gaps needs 'status' (open-gap, closed-gap, prospective-gap or not-applicable)",
                          "status")
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise bad_request(f"'status' {unknown[0]!r} is not one of {', '.join(STATUSES)}", "status")
    return set(statuses)


def who(params: InputParameters) -> tuple[str | None, str]:
    """The reference naming the patients, and the parameter it came from."""
    subject, practitioner, organization = (params.one(n) for n in ("subject", "practitioner", "organization"))
    if subject and (practitioner or organization):
        raise bad_request("give 'subject', or 'practitioner' and/or 'organization', not both", "subject")
    if subject:
        if not str(subject).startswith(("Patient/", "Group/")) and "/Patient/" not in str(subject) \
                and "/Group/" not in str(subject):
            raise bad_request("'subject' must reference a Patient or a Group", "subject")
        return subject, "subject"
    if practitioner:
        return practitioner, "practitioner"
    if organization:
        return organization, "organization"
    raise bad_request("$care-gaps needs 'subject', 'practitioner' or 'organization'", "subject")


async def measures_named(call: OperationCall, params: InputParameters) -> list[CompiledMeasure]:
    repository = measures_of(call.server)
    found: dict[str, CompiledMeasure] = {}
    for id_ in params.values.get("measureId") or ():
        compiled = await repository.by_id(str(id_))
        found[compiled.version.id] = compiled
    for url in params.values.get("measureUrl") or ():
        compiled = await repository.by_canonical(str(url), "measureUrl")
        found[compiled.version.id] = compiled
    for token in params.values.get("measureIdentifier") or ():
        versions = await repository.find("Measure", [("identifier", str(token))])
        if not versions:
            raise FhirError(404, [Issue("not-found", f"no Measure has the identifier {token}",
                                        expression=("measureIdentifier",))])
        for version in versions:
            found[version.id] = await repository.by_id(version.id)
    if not (params.given("measureId", "measureUrl", "measureIdentifier")):
        for version in await repository.find("Measure", [("status", "active")]):
            found[version.id] = await repository.by_id(version.id)
    if not found:
        raise FhirError(404, [Issue("not-found", "there is no active Measure to evaluate", expression=("measureId",))])
    return [found[key] for key in sorted(found)]


def gaps_document(call: OperationCall, per_measure: list[tuple[CompiledMeasure, SubjectResult]],
                  period: tuple[str, str], statuses: set[str], now: datetime, author: str | None,
                  organization: str | None) -> dict[str, Any] | None:
    """One patient's gaps document, or None when no measure gives them a gap of an asked status."""
    base = call.request.base_url
    patient = per_measure[0][1].subject.reference
    stamp = now.isoformat(timespec="seconds")
    sections, entries, evaluated = [], [], {}
    for compiled, result in per_measure:
        definition = compiled.evaluator.definition
        status = worst(gap_status(g, result.groups[i], now.date().isoformat())
                       for i, g in enumerate(definition.groups))
        if status not in statuses:
            continue
        report = build_report(definition, [result], period, individual=True, now=now)
        report["meta"] = {"profile": [DEQM + "indv-measurereport-deqm"]}
        if organization:
            report["reporter"] = {"reference": organization}
        issue = detected_issue(patient, report["id"], status, stamp)
        title = compiled.resource.get("title") or compiled.resource.get("name") or definition.url or "Measure"
        sections.append({"title": title, "focus": {"reference": f"MeasureReport/{report['id']}"},
                         "entry": [{"reference": f"DetectedIssue/{issue['id']}"}]})
        entries += [report, issue]
        evaluated.update(result.evaluated)
    if not sections:
        return None
    author_entry: list[dict[str, Any]] = []
    if author is None:
        author, author_entry = "Device/fhirlead", [DEVICE]
    composition = {
        "resourceType": "Composition", "id": str(uuid.uuid4()),
        "meta": {"profile": [DEQM + "gaps-composition-deqm"]}, "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "96315-7", "display": "Gaps in care report"}]},
        "subject": {"reference": patient}, "date": stamp, "author": [{"reference": author}],
        "title": f"Care Gap Report for {patient}", "section": sections,
    }
    evaluated.setdefault(patient, per_measure[0][1].subject.patient)
    resources = [composition, *entries, *evaluated.values(), *author_entry]
    return {"resourceType": "Bundle", "meta": {"profile": [DEQM + "gaps-bundle-deqm"]},
            "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
            "type": "document", "timestamp": stamp,
            "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources]}


def detected_issue(patient: str, report_id: str, status: str, stamp: str) -> dict[str, Any]:
    return {
        "resourceType": "DetectedIssue", "id": str(uuid.uuid4()),
        "meta": {"profile": [DEQM + "gaps-detectedissue-deqm"]},
        "modifierExtension": [{"url": DEQM + "extension-gapStatus", "valueCodeableConcept": {
            "coding": [{"system": GAPS_SYSTEM, "code": status}]}}],
        "status": "final",
        "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "CAREGAP",
                             "display": "Care Gaps"}]},
        "patient": {"reference": patient}, "identifiedDateTime": stamp,
        "evidence": [{"detail": [{"reference": f"MeasureReport/{report_id}"}]}],
    }


def worst(statuses: Any) -> str:
    """A measure's status from its groups': open before prospective before closed before not-applicable."""
    found = set(statuses)
    return next(s for s in ("open-gap", "prospective-gap", "closed-gap", "not-applicable") if s in found or
                s == "not-applicable")


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, care_gaps, type_level=True, resource_types=frozenset({"Measure"}),
                           definition=DEFINITION, authorize=authorize))
