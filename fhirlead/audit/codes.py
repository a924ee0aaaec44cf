"""The code systems and codings an AuditEvent is made of (R4 AuditEvent, IHE BALP).

R4 AuditEvent: https://hl7.org/fhir/R4/auditevent.html. IHE Basic Audit Log Patterns (BALP):
https://profiles.ihe.net/ITI/BALP/ — the RESTful patterns (Create, Read, Update, Delete, Query, and
their Patient* variants) and the authorization patterns (OAuth access-token use, login).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

# event type and subtype
AUDIT_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
AUTHORIZATION_EVENT = "http://fhirlead.org/CodeSystem/authorization-event"  # fhirlead's own: token events

# agents
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CLIENT_ID = "urn:ietf:params:oauth:client-id"  # RFC 7591/8693 URN naming an OAuth client id
IP_ADDRESS = "2"  # R4 network-type: "IP Address" (AuditEvent.agent.network.type is a code)

# source
SECURITY_SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
OBSERVER = "fhirlead"

# entities
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"

# R4 audit-event-outcome
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"

# R4 audit-event-action
CREATE, READ, UPDATE, DELETE, EXECUTE = "C", "R", "U", "D", "E"


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    found = {"system": system, "code": code}
    if display:
        found["display"] = display
    return found


REST = coding(AUDIT_EVENT_TYPE, "rest", "RESTful Operation")
USER_AUTHENTICATION = coding(DCM, "110114", "User Authentication")
EXPORT = coding(DCM, "110106", "Export")

# the authorization events `AuditTrail.authorization(kind=…)` records: kind -> subtype coding
AUTHORIZATION_SUBTYPES = {
    "login": coding(DCM, "110122", "Login"),
    "logout": coding(DCM, "110123", "Logout"),
    "token-issued": coding(AUTHORIZATION_EVENT, "token-issued", "Access token issued"),
    "token-refused": coding(AUTHORIZATION_EVENT, "token-refused", "Access token refused"),
    "token-revoked": coding(AUTHORIZATION_EVENT, "token-revoked", "Token revoked"),
}

# R4 restful-interaction displays
INTERACTIONS = {
    "read": "read", "vread": "vread", "update": "update", "patch": "patch", "delete": "delete",
    "history": "history", "history-instance": "history-instance", "history-type": "history-type",
    "history-system": "history-system", "create": "create", "search": "search", "search-type": "search-type",
    "search-system": "search-system", "capabilities": "capabilities", "transaction": "transaction",
    "batch": "batch", "operation": "operation",
}

# agent types. The client application is the DICOM "Source Role ID" (BALP: the requesting side) and a
# v3-ParticipationType DEV "device" (the software through which the act was done); the user is the
# information recipient of reads and searches (BALP UserAgentTypes: IRCP) and the author (AUT) of writes.
# These codings, like the entities' type and role, go without `display`: the codes are fixed and well
# known, and every display would be one more string index row per AuditEvent (the type and subtype,
# which a reader scans, keep theirs).
SOURCE_ROLE = coding(DCM, "110153")  # Source Role ID
DEVICE = coding(PARTICIPATION_TYPE, "DEV")  # device
RECIPIENT = coding(PARTICIPATION_TYPE, "IRCP")  # information recipient
AUTHOR = coding(PARTICIPATION_TYPE, "AUT")  # author (originator)

APPLICATION_SERVER = coding(SECURITY_SOURCE_TYPE, "4")  # Application Server

PERSON = coding(ENTITY_TYPE, "1")  # Person
SYSTEM_OBJECT = coding(ENTITY_TYPE, "2")  # System Object
PATIENT_ROLE = coding(OBJECT_ROLE, "1")  # Patient
DOMAIN_RESOURCE = coding(OBJECT_ROLE, "4")  # Domain Resource
QUERY_ROLE = coding(OBJECT_ROLE, "24")  # Query


def outcome_of(status: int) -> str:
    """R4 audit-event-outcome for an HTTP status: success, minor failure (the caller's: 4xx) or
    serious failure (the server's: 5xx)."""
    if status < 400:
        return SUCCESS
    return MINOR_FAILURE if status < 500 else SERIOUS_FAILURE


def status_text(status: int) -> str:
    """`outcomeDesc` of a failed REST interaction: the HTTP status and its reason phrase, nothing from
    the request or the answer (which may hold PHI)."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)
