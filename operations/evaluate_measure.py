"""`Measure/[id]/$evaluate-measure` and `Measure/$evaluate-measure?measure=<canonical>` (FHIR R4,
https://hl7.org/fhir/R4/measure-operation-evaluate-measure.html) over the live record.

`periodStart`/`periodEnd` (required) are the measurement period; `subject` a Patient, Group, Practitioner,
PractitionerRole or Organization (`operations.measure_subjects`), or `practitioner` the same as a
provider subject; no subject means every patient. `reportType`:
- `subject` (the default for a Patient subject): an individual MeasureReport with the evaluated resources;
- `population` (the default otherwise): a summary MeasureReport;
- `subject-list`: a summary whose populations reference a contained List of their patients.
`lastReceivedOn` is accepted and does not change the result (the server holds no submission dates).
The report is returned, not stored (GET and POST alike: the operation changes nothing). The caller needs
read access to Measures; the evaluation sees only the data the caller's token may read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import bad_request, not_found
from fhirlead.measure import live
from fhirlead.measure.evaluate import measurement_period
from fhirlead.measure.report import Tally, build_report, report_of
from fhirlead.measure.repository import CompiledMeasure, measures_of
from fhirlead.operations.access import admit, requiring
from fhirlead.operations.measure_subjects import patients_of
from fhirlead.parameters import InputParameters
from fhirlead.plugins import Operation, OperationCall, OperationRegistry

NAME = "evaluate-measure"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "measure"
                             / "OperationDefinition-Measure-evaluate-measure.json").read_bytes())
REPORT_TYPES = ("subject", "subject-list", "population")


async def evaluate_measure(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    period = read_period(params)
    compiled = await measure_of(call, params)
    subject = params.one("subject") or params.one("practitioner")
    if params.one("subject") and params.one("practitioner"):
        raise bad_request("give 'subject' or 'practitioner', not both", "practitioner")
    report_type = params.one("reportType") or ("subject" if str(subject or "").startswith("Patient/") else "population")
    if report_type not in REPORT_TYPES:
        raise bad_request(f"'reportType' must be one of {', '.join(REPORT_TYPES)}", "reportType")
    named = "subject" if params.one("subject") else "practitioner"
    patients = await patients_of(call.server, call.request.base_url, subject, named, period)
    if report_type == "subject" and len(patients) != 1:
        raise bad_request("reportType 'subject' needs a subject that is one Patient", "reportType")
    evaluator = compiled.evaluator
    data = live.store_data(call.server.store, call.server.search, [evaluator], admit(call))
    mp = measurement_period(*period)
    if report_type == "subject":
        [results] = await live.evaluate(data, [evaluator], patients, mp, keep_evaluated=True)
        if not results:
            raise not_found(f"{subject} is not known")
        return FhirResponse(200, build_report(evaluator.definition, results, period, individual=True))
    # a population's report folds each batch into its totals as it comes (bounded memory), off the event loop
    tally = Tally(evaluator.definition, keep_subjects=report_type == "subject-list")
    async for [batch] in live.evaluate_batches(data, [evaluator], patients, mp):
        await asyncio.to_thread(tally.add_all, batch)
    return FhirResponse(200, report_of(tally, period))


def read_period(params: InputParameters) -> tuple[str, str]:
    start, end = params.one("periodStart"), params.one("periodEnd")
    for name, value in (("periodStart", start), ("periodEnd", end)):
        if not isinstance(value, str) or not value:
            raise bad_request(f"'{name}' is required", name)
    try:
        measurement_period(start, end)
    except ValueError as error:
        raise bad_request(f"'periodStart'/'periodEnd': {error}", "periodStart") from None
    return start, end


async def measure_of(call: OperationCall, params: InputParameters) -> CompiledMeasure:
    """The Measure the call names: the instance it is invoked on, or the `measure` canonical."""
    measures = measures_of(call.server)
    if call.id_:
        if params.one("measure"):
            raise bad_request("'measure' is for the type-level call; this one names Measure/" + call.id_, "measure")
        return await measures.by_id(call.id_)
    canonical = params.one("measure")
    if not isinstance(canonical, str) or not canonical:
        raise bad_request("Measure/$evaluate-measure needs 'measure' (the Measure's canonical URL)", "measure")
    return await measures.by_canonical(canonical)


# asking needs a scope that reads Measures (in any context: a patient app may ask about its patient);
# what is evaluated is limited by `admit`
authorize = requiring("Measure")


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, evaluate_measure, type_level=True, instance=True,
                           resource_types=frozenset({"Measure"}), definition=DEFINITION, authorize=authorize))

