"""What one FHIR HTTP exchange did and touched, as BALP wants it in an AuditEvent.

From the request (method, path segments, query parameters) and the answer (status, `Location`,
`ETag`, body) this decides the R4 restful-interaction (subtype) and action, the resources touched
(`Type/id[/_history/v]`), the patient(s) concerned and the query (BALP Read/Query/Create/Update/Delete
and their Patient* variants, https://profiles.ihe.net/ITI/BALP/).

The patient: the token's patient context when it has one; else the Patient itself for a Patient
resource, the compartment's patient for `Patient/[id]/…`, the `patient`/`subject` values of a search,
or the `patient`/`subject` reference of the resource read or written (its body is parsed only when it
is small). Everything here is cheap: it runs on the request path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fhirlead import fhirjson
from fhirlead.audit import codes
from fhirlead.audit.event import Caller, patient_entity, query_entity, resource_entity, rest_event
from fhirlead.errors import FhirError

PARSE_LIMIT = 64 * 1024  # a resource body is parsed for its patient only below this size
BUNDLE_PARSE_LIMIT = 1024 * 1024  # a batch/transaction response is parsed for its locations below this
MAX_ENTITIES = 500
MAX_PATIENTS = 20
ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
PATIENT_REFERENCE = re.compile(r"(?:^|/)Patient/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$")
VERSIONED = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?/?$")
ETAG = re.compile(r'^(?:W/)?"([^"]+)"$')
# parameters that could carry a credential (RFC 6750 §2.3 allows access_token in the query): never recorded
# (`code` is not among them: on the FHIR API it is the everyday search parameter, never an OAuth code)
SECRET_PARAMS = frozenset({"access_token", "refresh_token", "id_token", "id_token_hint", "client_secret",
                           "client_assertion", "password"})
# search parameters naming the patient: name -> whether a bare id (no "Patient/") is a Patient id
PATIENT_PARAMS = {"patient": True, "patient:Patient": True, "subject:Patient": True, "subject": False}

# dispatch target (fhirlead.api.dispatch) -> R4 restful-interaction and audit action
TARGETS = {
    "read:handle": ("read", codes.READ),
    "vread:handle": ("vread", codes.READ),
    "history:handle_instance": ("history-instance", codes.READ),
    "history:handle_type": ("history-type", codes.READ),
    "history:handle_system": ("history-system", codes.READ),
    "search_type:handle": ("search-type", codes.EXECUTE),
    "search_compartment:handle": ("search-type", codes.EXECUTE),
    "search_system:handle": ("search-system", codes.EXECUTE),
    "create:handle": ("create", codes.CREATE),
    "update:handle": ("update", codes.UPDATE),
    "update:handle_conditional": ("update", codes.UPDATE),
    "patch:handle": ("patch", codes.UPDATE),
    "patch:handle_conditional": ("patch", codes.UPDATE),
    "delete:handle": ("delete", codes.DELETE),
    "delete:handle_conditional": ("delete", codes.DELETE),
    "bundle:handle": ("batch", codes.EXECUTE),
    "operation:handle": ("operation", codes.EXECUTE),
    "capabilities:handle": ("capabilities", codes.READ),
}
# what a path the server could not route most likely asked for, by method
FALLBACK = {"GET": ("read", codes.READ), "HEAD": ("read", codes.READ), "POST": ("create", codes.CREATE),
            "PUT": ("update", codes.UPDATE), "PATCH": ("patch", codes.UPDATE), "DELETE": ("delete", codes.DELETE)}


@dataclass(frozen=True)
class Exchange:
    """One FHIR request and its answer, reduced to what the audit needs (no headers but two)."""

    method: str
    segments: tuple[str, ...]
    status: int
    params: tuple[tuple[str, str], ...] = ()
    location: str | None = None  # the answer's Location header (creates)
    etag: str | None = None  # the answer's ETag header
    body: bytes | None = None  # the answer's body as sent
    bundle_type: str | None = None  # Bundle.type of a POST to the base (batch or transaction)
    token_patient: str | None = None  # the access token's patient context


def classify(method: str, segments: tuple[str, ...]) -> tuple[str, str, str | None]:
    """(restful-interaction, action, dispatch target or None when the path does not route)."""
    from fhirlead.api.dispatch import route_target  # the one table of FHIR URL patterns

    try:
        target, _arguments = route_target(method, list(segments))
    except FhirError:
        interaction, action = FALLBACK.get(method, ("operation", codes.EXECUTE))
        if interaction == "read" and len(segments) < 2:
            interaction, action = ("search-type" if segments else "search-system"), codes.EXECUTE
        return interaction, action, None
    interaction, action = TARGETS.get(target, ("operation", codes.EXECUTE))
    return interaction, action, target


def audit_event(exchange: Exchange, caller: Caller, recorded: str | None = None) -> dict[str, Any]:
    """The AuditEvent for `exchange` made by `caller` (`recorded`: when it happened; default now)."""
    interaction, action, target = classify(exchange.method, exchange.segments)
    if target == "bundle:handle" and exchange.bundle_type == "transaction":
        interaction = "transaction"
    if exchange.status == 201 and action == codes.UPDATE:
        action = codes.CREATE  # update as create
    body = _parsed_body(exchange, target)
    data = _references(exchange, target, body)
    patients = _patients(exchange, target, body, data)
    entities = [resource_entity(reference) for reference in data]
    entities += [patient_entity(patient) for patient in patients]
    if target is not None and (target.startswith(("search_", "history:handle_type", "history:handle_system"))
                               or target == "operation:handle"):
        entities.append(query_entity(query_string(exchange.params), "/".join(exchange.segments) or None))
    operation = _operation_name(exchange.segments) if target == "operation:handle" else None
    return rest_event(interaction=interaction, action=action, status=exchange.status, caller=caller,
                      entities=entities[:MAX_ENTITIES], export=operation == "export", recorded=recorded)


def query_string(params: Iterable[tuple[str, str]]) -> str:
    """The request's parameters as a query string, without any that could carry a credential."""
    return urlencode([(key, value) for key, value in params if key.lower() not in SECRET_PARAMS])


# -- resources touched ------------------------------------------------------------------------

def _references(exchange: Exchange, target: str | None, body: Any) -> list[str]:
    segments = exchange.segments
    if target == "bundle:handle":
        return _bundle_locations(body)
    if target == "vread:handle":
        return _reference(segments[0], segments[1], segments[3])
    if target is None or target == "history:handle_instance" or target == "operation:handle":
        # an unroutable path (e.g. a 404 for an unknown type), an instance's history or operation
        return _reference(segments[0], segments[1]) if len(segments) >= 2 else []
    if target.startswith(("search_", "capabilities", "history:")):
        return []
    # read, create, update, patch, delete (conditional ones too)
    type_ = segments[0]
    id_ = segments[1] if len(segments) > 1 else None
    version = None
    if exchange.location:
        found = VERSIONED.search(exchange.location.split("?")[0])
        if found and found.group(1) == type_:
            id_, version = found.group(2), found.group(3)
    if isinstance(body, dict) and body.get("resourceType") == type_:
        id_ = id_ or _str(body.get("id"))
        meta = body.get("meta")
        version = version or (_str(meta.get("versionId")) if isinstance(meta, dict) else None)
    if version is None and exchange.etag and exchange.status < 300:
        found = ETAG.match(exchange.etag)
        version = found.group(1) if found else None
    return _reference(type_, id_, version) if id_ else []


def _reference(type_: str, id_: str, version: str | None = None) -> list[str]:
    """`Type/id[/_history/version]` when each part has its R4 syntax (a path may hold anything)."""
    if not TYPE.fullmatch(type_) or not ID.fullmatch(id_):
        return []
    if version and ID.fullmatch(version):
        return [f"{type_}/{id_}/_history/{version}"]
    return [f"{type_}/{id_}"]


def _bundle_locations(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        return []
    found = []
    for entry in body["entry"][:MAX_ENTITIES]:
        response = entry.get("response") if isinstance(entry, dict) else None
        location = response.get("location") if isinstance(response, dict) else None
        if isinstance(location, str):
            match = VERSIONED.search(location.split("?")[0])
            if match:
                type_, id_, version = match.groups()
                found.append(f"{type_}/{id_}/_history/{version}" if version else f"{type_}/{id_}")
    return found


# -- the patient ------------------------------------------------------------------------------

def _patients(exchange: Exchange, target: str | None, body: Any, data: list[str]) -> list[str]:
    if exchange.token_patient:
        return [exchange.token_patient] if ID.fullmatch(exchange.token_patient) else []
    segments = exchange.segments
    found: list[str] = []
    if len(segments) >= 2 and segments[0] == "Patient" and ID.fullmatch(segments[1]):
        found.append(segments[1])  # a Patient, its history, versions, operations, or its compartment
    if target is not None and target.startswith("search_"):
        found += _searched_patients(segments, exchange.params)
    found += [reference.split("/")[1] for reference in data if reference.startswith("Patient/")]
    if target == "bundle:handle" and isinstance(body, dict):
        entries = body.get("entry")
        for entry in entries[:MAX_ENTITIES] if isinstance(entries, list) else ():
            if isinstance(entry, dict):
                found += _resource_patients(entry.get("resource"))
    else:
        found += _resource_patients(body)
    unique: list[str] = []
    for patient in found:
        if patient not in unique and ID.fullmatch(patient):
            unique.append(patient)
    return unique[:MAX_PATIENTS]


def _searched_patients(segments: tuple[str, ...], params: Iterable[tuple[str, str]]) -> list[str]:
    found = []
    for key, value in params:
        bare_is_patient = PATIENT_PARAMS.get(key)
        if key == "_id" and segments[:1] == ("Patient",):
            bare_is_patient = True
        if bare_is_patient is None:
            continue
        for item in value.split(","):
            item = item.strip()
            match = PATIENT_REFERENCE.search(item)
            if match:
                found.append(match.group(1))
            elif bare_is_patient and ID.fullmatch(item):
                found.append(item)
    return found


def _resource_patients(resource: Any) -> list[str]:
    """`patient` and `subject` references to a Patient in a resource (R4: Reference or list of them)."""
    if not isinstance(resource, dict) or resource.get("resourceType") in ("OperationOutcome", "Bundle"):
        return []
    found = []
    for name in ("patient", "subject"):
        value = resource.get(name)
        for reference in value if isinstance(value, list) else [value]:
            text = reference.get("reference") if isinstance(reference, dict) else None
            match = PATIENT_REFERENCE.search(text) if isinstance(text, str) else None
            if match:
                found.append(match.group(1))
    return found


# -- helpers ----------------------------------------------------------------------------------

def _parsed_body(exchange: Exchange, target: str | None) -> Any:
    """The answer's JSON when it is worth and cheap to look at: a successful read or write of one
    resource below PARSE_LIMIT, a batch/transaction response below BUNDLE_PARSE_LIMIT."""
    body = exchange.body
    if not body or exchange.status >= 300 or target is None:
        return None
    if target == "bundle:handle":
        limit = BUNDLE_PARSE_LIMIT
    elif target.startswith(("read:", "vread:", "create:", "update:", "patch:")):
        limit = PARSE_LIMIT
    else:
        return None
    if len(body) > limit or body.lstrip()[:1] != b"{":
        return None
    if exchange.segments[:1] == ("Patient",) and len(exchange.segments) >= 2 and exchange.etag:
        return None  # a Patient instance: the path names the patient, the ETag the version

    try:
        return fhirjson.loads(body)
    except fhirjson.JsonError:
        return None


def _operation_name(segments: tuple[str, ...]) -> str | None:
    for segment in segments:
        if segment.startswith("$"):
            return segment[1:]
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
