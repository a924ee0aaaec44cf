"""Building R4 AuditEvent resources (JSON) shaped after IHE Basic Audit Log Patterns (BALP).

R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html): `type`, `subtype`, `action` (C R U D E),
`recorded`, `outcome` (0, 4, 8) with `outcomeDesc` for failures, `agent` (1..*), `source` and `entity`.
BALP (https://profiles.ihe.net/ITI/BALP/) fixes who is who: the OAuth client is an agent identified by
its client id (requestor false), the user behind it an agent identified by its fhirUser reference and
user name (requestor true); the resources touched, the patient and the query are entities.

Nothing here ever sees an access token, a password or a client secret: the builders take names and
references only. `outcomeDesc` of a REST failure is the HTTP status text, never request content.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fhirlead import clock
from fhirlead.audit import codes

AUDIT_EVENT = "AuditEvent"
DETAIL_LIMIT = 200  # characters of an authorization event's `detail` kept in outcomeDesc


@dataclass(frozen=True)
class Caller:
    """Who made the request, as far as the server knows it (nothing here is a secret)."""

    client_id: str | None = None
    username: str | None = None  # the signed-in user's name (a system token has none)
    fhir_user: str | None = None  # the user's FHIR resource, e.g. "Practitioner/123"
    address: str | None = None  # the caller's network address


def now() -> str:
    """An R4 `instant` for `recorded`: UTC with microseconds, as `fhirlead.clock.instant` writes it
    (isoformat is the cheaper way to the same text: this runs on every request)."""
    return clock.now().isoformat(timespec="microseconds").replace("+00:00", "Z")


def agents(caller: Caller, action: str) -> list[dict[str, Any]]:
    """The client application (requestor false) and the user (requestor true) when there is one;
    the caller's network address goes with the client (or with an otherwise unknown caller)."""
    found: list[dict[str, Any]] = []
    network = {"address": caller.address, "type": codes.IP_ADDRESS} if caller.address else None
    if caller.client_id:
        client: dict[str, Any] = {
            "type": {"coding": [codes.SOURCE_ROLE, codes.DEVICE]},
            "who": {"identifier": {"system": codes.CLIENT_ID, "value": caller.client_id}},
            "requestor": False,
        }
        if network:
            client["network"] = network
        found.append(client)
    if caller.username or caller.fhir_user:
        role = codes.RECIPIENT if action in (codes.READ, codes.EXECUTE) else codes.AUTHOR
        user: dict[str, Any] = {"type": {"coding": [role]}, "requestor": True}
        if caller.fhir_user:
            user["who"] = {"reference": caller.fhir_user}
        if caller.username:
            user["altId"] = caller.username
        if network and not caller.client_id:
            user["network"] = network
        found.append(user)
    if not found:  # nobody the server could identify (no or an invalid token): where it came from
        unknown: dict[str, Any] = {"type": {"coding": [codes.SOURCE_ROLE]}, "requestor": True}
        if network:
            unknown["network"] = network
        found.append(unknown)
    return found


def resource_entity(reference: str) -> dict[str, Any]:
    """A resource the interaction touched (BALP entity:data): `Type/id` or `Type/id/_history/v`."""
    return {"what": {"reference": reference}, "type": codes.SYSTEM_OBJECT, "role": codes.DOMAIN_RESOURCE}


def patient_entity(patient_id: str) -> dict[str, Any]:
    """The patient the interaction was about (BALP entity:patient; object-role 1 "Patient")."""
    return {"what": {"reference": f"Patient/{patient_id}"}, "type": codes.PERSON, "role": codes.PATIENT_ROLE}


def query_entity(query: str, description: str | None = None) -> dict[str, Any]:
    """A search (BALP entity:query): the query string, base64 as R4 wants it (object-role 24 "Query");
    `description` names what was searched (the request path, which holds no parameters)."""
    entity: dict[str, Any] = {"type": codes.SYSTEM_OBJECT, "role": codes.QUERY_ROLE}
    if query:
        entity["query"] = base64.b64encode(query.encode("utf-8")).decode("ascii")
    if description:
        entity["description"] = description
    return entity


def audit_event(
    *,
    type_: dict[str, Any],
    subtypes: Iterable[dict[str, Any]],
    action: str,
    outcome: str,
    outcome_desc: str | None,
    caller: Caller,
    entities: Iterable[dict[str, Any]] = (),
    recorded: str | None = None,
) -> dict[str, Any]:
    """An R4 AuditEvent: the parts every event has, in R4 element order."""
    event: dict[str, Any] = {"resourceType": AUDIT_EVENT, "type": type_}
    subtype = list(subtypes)
    if subtype:
        event["subtype"] = subtype
    event["action"] = action
    event["recorded"] = recorded or now()
    event["outcome"] = outcome
    if outcome != codes.SUCCESS and outcome_desc:
        event["outcomeDesc"] = outcome_desc
    event["agent"] = agents(caller, action)
    event["source"] = {"observer": {"display": codes.OBSERVER}, "type": [codes.APPLICATION_SERVER]}
    entity = list(entities)
    if entity:
        event["entity"] = entity
    return event


def rest_event(
    *,
    interaction: str,
    action: str,
    status: int,
    caller: Caller,
    entities: Iterable[dict[str, Any]] = (),
    export: bool = False,
    recorded: str | None = None,
) -> dict[str, Any]:
    """A RESTful interaction (BALP Read, Query, Create, Update, Delete and their Patient* variants):
    type audit-event-type|rest, subtype restful-interaction|`interaction` (and DCM 110106 "Export" for
    `$export`), outcome from the HTTP status, outcomeDesc the status text for failures."""
    subtypes = [codes.coding(codes.RESTFUL_INTERACTION, interaction, codes.INTERACTIONS.get(interaction))]
    if export:
        subtypes.append(codes.EXPORT)
    outcome = codes.outcome_of(status)
    return audit_event(type_=codes.REST, subtypes=subtypes, action=action, outcome=outcome,
                       outcome_desc=codes.status_text(status), caller=caller, entities=entities,
                       recorded=recorded)


def authorization_event(
    *,
    kind: str,
    success: bool,
    caller: Caller,
    detail: str | None = None,
    recorded: str | None = None,
) -> dict[str, Any]:
    """A sign-in or token event (BALP: DCM 110114 "User Authentication"): subtype DCM 110122 "Login"
    (110123 "Logout") for sign-ins, fhirlead's authorization-event code system for token-issued,
    token-refused and token-revoked. `detail` (e.g. an OAuth error code) becomes outcomeDesc of a
    failure; it must never carry a token, password or secret."""
    subtype = codes.AUTHORIZATION_SUBTYPES.get(kind)
    if subtype is None:
        raise ValueError(f"unknown authorization event kind {kind!r}: one of {', '.join(codes.AUTHORIZATION_SUBTYPES)}")
    outcome = codes.SUCCESS if success else codes.MINOR_FAILURE
    desc = (detail or "").strip()[:DETAIL_LIMIT] or ("Authorization failed" if not success else None)
    return audit_event(type_=codes.USER_AUTHENTICATION, subtypes=[subtype], action=codes.EXECUTE, outcome=outcome,
                       outcome_desc=desc, caller=caller, recorded=recorded)
