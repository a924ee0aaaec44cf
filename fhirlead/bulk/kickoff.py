"""The `$export` kick-off request (Bulk Data 2.0.0 §"Bulk Data Kick-off Request"): validate it, record
the job, answer `202 Accepted` with `Content-Location` (the status URL)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from fhirlead import clock
from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.bulk import JOBS, MEMBERS_FILE, STATUS, job_folder, sweep
from fhirlead.bulk.parameters import Leniency, associated, elements, patients, type_filters
from fhirlead.bulk.scope import export_types
from fhirlead.definitions import resource_types
from fhirlead.errors import FhirError, Issue, bad_request, not_found
from fhirlead.parameters import InputParameters
from fhirlead.plugins import OperationCall

FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
SUPPORTED = frozenset({"_outputFormat", "_type", "_since", "_typeFilter", "_elements", "patient",
                       "includeAssociatedData"})
# named by the spec (or ATR) but not done yet: refused, or ignored with `Prefer: handling=lenient`
NOT_YET = frozenset({"_until", "organizeOutputBy", "allowPartialManifests"})
IGNORED = frozenset({"_format", "_pretty"})  # general result parameters, not export parameters
STATUS_PATH = "$export-status"


def read_parameters(request: FhirRequest) -> list[tuple[str, Any]]:
    """(name, value) pairs from the query (GET) or a `Parameters` body (POST, §"Query Parameters")."""
    if request.method != "POST" or not request.body.strip():
        return list(request.params)
    body = request.json_body()
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise bad_request("A POST kick-off takes a Parameters resource")
    pairs: list[tuple[str, Any]] = list(request.params)
    if not isinstance(body.get("parameter") or [], list):
        raise bad_request("Parameters.parameter must be a list")
    for number, parameter in enumerate(body.get("parameter") or ()):
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise bad_request(f"Parameters.parameter[{number}] has no name")
        values = [v for k, v in parameter.items() if k.startswith("value") or k == "resource"]
        if len(values) != 1:
            raise bad_request(f"Parameters.parameter[{number}] ({parameter['name']}) needs one value")
        pairs.append((parameter["name"], values[0]))
    return pairs


def checked(request: FhirRequest, pairs: list[tuple[str, Any]], supported: frozenset[str] = SUPPORTED,
            operation: str = "$export") -> tuple[dict[str, list[Any]], list[str]]:
    """The supported parameters' values, and warnings for what a lenient request had ignored."""
    lenient = request.prefer("handling") == "lenient"
    values: dict[str, list[Any]] = {}
    warnings: list[str] = []
    for name, value in pairs:
        if name in IGNORED:
            continue
        if name not in supported:
            why = "is not supported yet" if name in NOT_YET else f"is not a parameter of {operation}"
            if not lenient:
                raise bad_request(f"'{name}' {why} (send Prefer: handling=lenient to have it ignored)", name)
            warnings.append(f"'{name}' {why}: ignored (Prefer: handling=lenient)")
            continue
        values.setdefault(name, []).append(value)
    return values, warnings


def output_format(values: dict[str, list[Any]]) -> None:
    for value in values.get("_outputFormat") or ():
        if str(value).strip().lower() not in FORMATS:
            raise bad_request(f"'_outputFormat' {value!r} is not supported: use application/fhir+ndjson",
                              "_outputFormat")


def named_types(values: dict[str, list[Any]]) -> list[str] | None:
    if not values.get("_type"):
        return None
    names = list(dict.fromkeys(n.strip() for v in values["_type"] for n in str(v).split(",") if n.strip()))
    unknown = [n for n in names if n not in resource_types()]
    if unknown or not names:
        raise bad_request(f"'_type': {unknown[0] if unknown else '(empty)'} is not a resource type", "_type")
    return names


async def too_many(server: Any) -> None:
    """§"Response - Error": 429 when FHIRLEAD_EXPORT_MAX_RUNNING exports are already running."""
    running = [r for r in await server.store.records.list(STATUS) if r.doc.get("state") == "running"]
    if len(running) >= server.settings.export_max_running:
        raise FhirError(429, [Issue("throttled", f"{len(running)} exports are running: try again later")],
                        {"Retry-After": "30"})


async def _group_members(server: Any, group_id: str, today: str) -> list[str]:
    """The Group's patients at kick-off: members that are Patients, not inactive, and members today
    (for an ATR attribution list: attributed today), as `$evaluate-measure` reads them."""
    from fhirlead.operations.measure_subjects import _members, _patients

    head = await server.store.read_group_head(group_id) if hasattr(server.store, "read_group_head") \
        else await server.store.read("Group", group_id)
    if head is None or head.body is None:
        raise not_found(f"Group/{group_id} is not known")
    return _patients(await _members(server, head), (today, today))


def instant(values: dict[str, list[Any]], name: str) -> str | None:
    """A 0..1 instant parameter (`_since`, ATR's `_until`) in the store's instant form."""
    if len(values.get(name) or ()) > 1:
        raise bad_request(f"'{name}' is given more than once", name)
    moment = InputParameters(values).instant(name) if values.get(name) else None
    return clock.instant(moment) if moment is not None else None


def require_async(request: FhirRequest, operation: str = "$export") -> None:
    if request.prefer("respond-async") is None:
        raise bad_request(f"{operation} is asynchronous: send the header Prefer: respond-async")


def job_doc(request: FhirRequest, level: str, group: str | None, types: list[str], since: str | None,
            transaction_time: str, values: dict[str, list[Any]], warnings: list[str]) -> dict[str, Any]:
    """The STATUS record of a new export (`fhirlead.bulk`): everything its job needs to run and resume."""
    query = urlencode([(k, _shown(v)) for k, vs in values.items() for v in vs])
    return {
        "client": request.access.grant.client_id if request.access is not None else None,
        "level": level, "group": group, "types": types, "warnings": warnings, "since": since,
        "transactionTime": transaction_time, "base": request.base_url,
        "request": f"{request.base_url}/{request.path}" + (f"?{query}" if query else ""),
        "state": "running", "step": {"index": 0, "phase": "current", "cursor": None}, "files": {},
        "created": time.time(),
    }


def _shown(value: Any) -> str:
    return str(value.get("reference")) if isinstance(value, dict) and "reference" in value else str(value)


async def record(server: Any, request: FhirRequest, doc: dict[str, Any], files: dict[str, Any]) -> FhirResponse:
    """Write the job's files (member lists), commit its STATUS and job records together (DESIGN §7), wake
    this process's export worker, and answer 202 with the status URL."""
    job_id = uuid.uuid4().hex
    await sweep(server)
    if files:
        folder = job_folder(server.settings, job_id)
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (folder / name).write_text(json.dumps(content))
    async with server.store.unit_of_work() as uow:
        await uow.put_record(STATUS, job_id, doc)  # its expiry is set by the job's first slice
        await JOBS.enqueue(uow, job_id)
    for worker in getattr(server, "workers", ()):  # this process's export worker starts it now
        if getattr(worker, "jobs", None) is JOBS:
            worker.wake.set()
    location = f"{request.base_url}/{STATUS_PATH}/{job_id}"
    return FhirResponse(202, None, {"Content-Location": location})


async def kick_off(call: OperationCall) -> FhirResponse:
    """Bulk Data 2.0.0 kick-off at system, Patient or Group level: 202 with the status URL."""
    server, request = call.server, call.request
    require_async(request)
    values, warnings = checked(request, read_parameters(request))
    leniency = Leniency(request.prefer("handling") == "lenient", warnings)
    output_format(values)
    since = instant(values, "_since")
    level = "group" if call.id_ else "patient" if call.type_ else "system"
    if level == "system" and values.get("patient"):
        leniency.refuse("'patient' is not a parameter of a system-level export", "patient")
        values.pop("patient")
    types = export_types(request.access, level, named_types(values))
    narrowing = {"filters": type_filters(server.search, values.get("_typeFilter") or [], types, request.base_url,
                                         leniency),
                 "elements": elements(values.get("_elements") or [], types, leniency)}
    associated(values.get("includeAssociatedData") or [], leniency)
    await too_many(server)
    transaction_time = clock.instant(clock.now())
    members = await _group_members(server, str(call.id_), transaction_time[:10]) if level == "group" else None
    chosen = await patients(server, request, values["patient"], members, leniency) if values.get("patient") else None
    doc = job_doc(request, level, call.id_, types, since, transaction_time, values, leniency.warnings) | narrowing
    limited = chosen if chosen is not None else members
    doc["limited"] = limited is not None  # only these patients' compartments (fhirlead.bulk.run._patients)
    return await record(server, request, doc, {MEMBERS_FILE: limited} if limited is not None else {})
