"""The batch-response / transaction-response Bundle (https://hl7.org/fhir/R4/bundle.html#transaction).

One response entry per request entry, in the request's order, each with `response.status` (code and
reason phrase), `location`, `etag` and `lastModified` for writes, and the resource or an
OperationOutcome as the client's `Prefer: return=` asks (minimal by default: bulk ingest should not
get every resource echoed back).
"""

from __future__ import annotations

import uuid
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any

from fhirlead import bundle_json, clock
from fhirlead.api.messages import FhirResponse
from fhirlead.errors import FhirError
from fhirlead.interaction.outcome import Outcome, location


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def write_entry(outcome: Outcome, base_url: str, preference: str | None) -> bytes:
    """The response entry of a create/update/patch/delete."""
    response: dict[str, Any] = {"status": status_line(outcome.status)}
    version = outcome.version
    resource: bytes | None = None
    if version is not None and not version.deleted:
        response["location"] = location(base_url, version)
        response["etag"] = version.etag
        response["lastModified"] = version.last_updated
        if preference == "representation":
            resource = version.body
    if preference == "operationoutcome" or (outcome.issues and preference != "minimal"):
        response["outcome"] = outcome.outcome_body()
    return bundle_json.entry({}, resource, {"response": response})


def read_entry(answer: FhirResponse) -> bytes:
    """The response entry of a GET/HEAD (or of any entry answered through the HTTP path)."""
    response: dict[str, Any] = {"status": status_line(answer.status)}
    if "Location" in answer.headers:
        response["location"] = answer.headers["Location"]
    if "ETag" in answer.headers:
        response["etag"] = answer.headers["ETag"]
    if "Last-Modified" in answer.headers:
        response["lastModified"] = clock.instant(parsedate_to_datetime(answer.headers["Last-Modified"]))
    body = answer.body
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        response["outcome"] = body
        body = None
    resource = bundle_json.to_bytes(body) if body is not None else None
    return bundle_json.entry({}, resource, {"response": response})


def error_entry(error: FhirError) -> bytes:
    """A failed batch entry: its status and the OperationOutcome that explains it."""
    return bundle_json.entry({}, None, {"response": {"status": status_line(error.status), "outcome": error.outcome()}})


def response_bundle(kind: str, entries: list[bytes]) -> bytes:
    header = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": f"{kind}-response"}
    return bundle_json.bundle(header, entries)
