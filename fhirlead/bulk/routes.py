"""The status and file URLs of an export (Bulk Data 2.0.0 §"Bulk Data Status Request", §"Bulk Data Delete
Request", §"Bulk Data Output File Request"), under the FHIR base so the SMART bearer token applies:

- `GET [base]/$export-status/[job]`: 202 with `X-Progress` and `Retry-After` while running; 200 with the
  manifest when done; 500 with an OperationOutcome when the export failed.
- `DELETE [base]/$export-status/[job]`: cancels (202) and removes the files.
- `GET [base]/$export-file/[job]/[Type].ndjson`: the file, as written (stored bytes).

A job is seen only by the client (token `client_id`) that started it: to any other it is 404.
"""

from __future__ import annotations

import logging
import re
from email.utils import formatdate
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from fhirlead import fhirjson
from fhirlead.api.messages import FhirRequest
from fhirlead.api.render import error_response
from fhirlead.auth.bearer import policy_for
from fhirlead.bulk import ERROR_FILE, JOBS, STATUS, job_folder, remove_folder
from fhirlead.errors import FhirError, Issue, not_found

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
FILE_NAME = re.compile(r"^[A-Za-z]{1,64}\.ndjson$")
NDJSON = "application/fhir+ndjson"

log = logging.getLogger(__name__)


async def _job(request: Request, seen: dict[str, Any]) -> tuple[Any, Any, str]:
    """The server, the job's STATUS record and the FHIR base, or 401/404 (`seen` keeps the caller's
    FhirRequest for the audit trail)."""
    from fhirlead.api.app import base_url  # the app imports this module

    server = request.app.state.server
    fhir_base = base_url(request, server.settings)
    seen["request"] = FhirRequest(method=request.method, base_url=fhir_base,
                                  path=request.url.path.removeprefix("/fhir/"))
    client = None
    if server.auth is not None:
        seen["request"].access = await policy_for(server, request.headers.get("authorization"), fhir_base)
        client = seen["request"].access.grant.client_id
    job_id = request.path_params["job"]
    record = await server.store.records.get(STATUS, job_id) if JOB_ID.match(job_id) else None
    if record is None or record.doc.get("client") != client:
        raise not_found("No such export (it may have expired, been cancelled, or belong to another client)")
    return server, record, fhir_base


def _audited(request: Request, response: Response, seen: dict[str, Any]) -> Response:
    """Record the exchange as every FHIR request is recorded (`fhirlead.audit`); never fails the answer."""
    audit = getattr(request.app.state.server, "audit", None)
    if audit is not None:
        try:
            audit.rest(method=request.method, segments=[s for s in request.url.path.split("/")[2:] if s],
                       status=response.status_code, request=seen.get("request"), headers=response.headers,
                       address=request.client.host if request.client else None)
        except Exception as error:
            log.error("could not record the audit event of an export request (%s)", type(error).__name__)
    return response


def manifest(record: Any, fhir_base: str) -> dict[str, Any]:
    """§"Response - Complete Status": the manifest; `error` always present."""
    doc, job_id = record.doc, record.key
    files_url = f"{fhir_base}/$export-file/{job_id}"
    output = [{"type": type_, "url": f"{files_url}/{type_}.ndjson", "count": file["count"]}
              for type_, file in doc["files"].items() if file["count"]]
    error = []
    if doc.get("warnings"):  # one OperationOutcome naming what a lenient request had ignored
        error.append({"type": "OperationOutcome", "url": f"{files_url}/{ERROR_FILE}", "count": 1})
    return {"transactionTime": doc["transactionTime"], "request": doc["request"], "requiresAccessToken": True,
            "output": output, "error": error}


async def status(request: Request) -> Response:
    seen: dict[str, Any] = {}
    return _audited(request, await _status(request, seen), seen)


async def _status(request: Request, seen: dict[str, Any]) -> Response:
    try:
        server, record, fhir_base = await _job(request, seen)
        if request.method == "DELETE":
            await server.store.records.delete(STATUS, record.key)
            await server.store.records.delete(JOBS.kind, record.key)
            remove_folder(server.settings, record.key)
            return Response(status_code=202)
        state = record.doc.get("state")
        if state == "running":
            step = record.doc.get("step") or {}
            done, total = step.get("index", 0), len(record.doc.get("types") or ())
            return Response(status_code=202, headers={"X-Progress": f"{done} of {total} types exported",
                                                      "Retry-After": "2"})
        if state == "failed":
            raise FhirError(500, [Issue("exception", f"The export failed: {record.doc.get('failure', '')}")])
        return Response(fhirjson.dumps(manifest(record, fhir_base)), status_code=200,
                        media_type="application/json", headers={"Expires": _expires(record)})
    except FhirError as error:
        return error_response(error)


async def download(request: Request) -> Response:
    seen: dict[str, Any] = {}
    return _audited(request, await _download(request, seen), seen)


async def _download(request: Request, seen: dict[str, Any]) -> Response:
    try:
        server, record, _ = await _job(request, seen)
        name = request.path_params["name"]
        path = job_folder(server.settings, record.key) / name
        if record.doc.get("state") == "running" or not FILE_NAME.match(name) or not path.is_file():
            raise not_found(f"No file {name} in this export")
        return FileResponse(path, media_type=NDJSON)
    except FhirError as error:
        return error_response(error)


def _expires(record: Any) -> str:
    return formatdate(record.expires, usegmt=True) if record.expires else ""
