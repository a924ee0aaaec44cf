"""Outcome: what a write interaction did, and its rendering as an HTTP response.

The `Prefer: return=` header (https://hl7.org/fhir/R4/http.html#ops) chooses the body: the resource
(`representation`, the default), nothing (`minimal`) or an OperationOutcome (`OperationOutcome`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.clock import http_date
from fhirlead.errors import Issue, operation_outcome
from fhirlead.storage.port import ResourceVersion

REASONS = {200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 410: "Gone"}


@dataclass
class Outcome:
    status: int
    version: ResourceVersion | None = None
    created: bool = False  # a new resource: answer with Location
    issues: list[Issue] = field(default_factory=list)

    def outcome_body(self) -> dict[str, Any]:
        issues = self.issues or [Issue("informational", f"{REASONS.get(self.status, '')}".strip() or "Done",
                                       severity="information")]
        return operation_outcome(issues)


def version_headers(version: ResourceVersion) -> dict[str, str]:
    return {"ETag": version.etag, "Last-Modified": http_date(version.last_updated)}


def location(base_url: str, version: ResourceVersion) -> str:
    return f"{base_url}/{version.type}/{version.id}/_history/{version.version}"


def respond(request: FhirRequest, outcome: Outcome) -> FhirResponse:
    headers: dict[str, str] = {}
    version = outcome.version
    if version is not None:
        headers.update(version_headers(version))
        if outcome.created:
            headers["Location"] = location(request.base_url, version)
    preference = request.prefer("return")
    if preference == "minimal":
        return FhirResponse(outcome.status, None, headers)
    if preference == "operationoutcome" or version is None or version.deleted:
        return FhirResponse(outcome.status, outcome.outcome_body(), headers)
    return FhirResponse(outcome.status, version.body, headers)
