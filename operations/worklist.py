"""`CareTeam/[id]/$worklist` and `CareTeam/$worklist` (Lead-defined, profiles/lead/OperationDefinition-worklist.json):
the open Tasks a care team has to work on, earliest due first (docs/worklist.md).

- Which Tasks: `for` the team's patient (CareTeam.subject), status requested, received, accepted, ready,
  in-progress or on-hold (`gap_tasks.OPEN_STATUSES`), owned by the team, by one of its participants'
  members (a participating Practitioner's PractitionerRoles and a participating PractitionerRole's
  Practitioner count as them), or by nobody. Care-gap Tasks (operations/gap_tasks.py) are ordinary Tasks here.
- Which teams: the CareTeam named; at type level, every **active** team on which `participant` (default:
  the token's fhirUser) takes part today (participant.period), a Practitioner's PractitionerRoles included.
- `attributedTo`: only patients attributed to that provider today (`measure_subjects.patients_of`, the same
  rule `$care-gaps` uses for `practitioner`).
- Order: due day (Task.restriction.period.end, the Lead's due date; undated last), priority (stat > asap >
  urgent > routine; none = routine), the patient's risk (probability of their latest final RiskAssessment,
  highest first; none last), authoredOn, id.
- Answer: a searchset Bundle, Tasks as matches, their Patients as includes. Reads only (GET or POST).
  The caller needs to read CareTeams and search Tasks; every team, Task, Patient and RiskAssessment the
  token may not see is left out (a team it may not see is a 404), as a search does (docs/security.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.auth.enforce import forbidden
from fhirlead.errors import FhirError, Issue, bad_request, not_found
from fhirlead.numbers import shown
from fhirlead.operations.gap_tasks import OPEN_STATUSES
from fhirlead.operations.measure_subjects import PROVIDER_TYPES, overlaps, patients_of
from fhirlead.parameters import InputParameters
from fhirlead.plugins import Operation, OperationCall, OperationRegistry
from fhirlead.search import bundle
from fhirlead.search.collect import all_matches
from fhirlead.search.respond import page_url
from fhirlead.storage.port import ResourceVersion

NAME = "worklist"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "lead"
                             / "OperationDefinition-worklist.json").read_bytes())
PRIORITY = {"stat": 0, "asap": 1, "urgent": 2, "routine": 3}
MEMBER_TYPES = ("Practitioner", "PractitionerRole", "RelatedPerson", "Patient", "Organization", "CareTeam")
FINAL_RISK = ("final", "amended", "corrected")


async def worklist(call: OperationCall) -> FhirResponse:
    params = parameters.read(call.request, DEFINITION)
    today = datetime.now(UTC).date().isoformat()
    attributed = await _attributed(call, params, today)
    if call.id_ is not None:
        if "participant" in params.values:
            raise bad_request("'participant' chooses teams: give it to CareTeam/$worklist, not to one team",
                              "participant")
        teams = [await _team(call, call.id_)]
    else:
        teams = await _teams_of(call, _participant(call, params), today)
    tasks: dict[str, ResourceVersion] = {}
    for team in teams:
        for version in await _team_tasks(call, team):
            tasks.setdefault(version.id, version)
    bodies = {id_: fhirjson.loads(v.body or b"{}") for id_, v in tasks.items()}
    if attributed is not None:
        bodies = {id_: t for id_, t in bodies.items() if _patient_of(t, call.request.base_url) in attributed}
    base = call.request.base_url
    patients = await _patients(call, sorted({p for t in bodies.values() if (p := _patient_of(t, base))}))
    risks = {reference: await _risk(call, reference) for reference in patients}
    order = sorted(bodies, key=lambda id_: sort_key(bodies[id_], risks.get(_patient_of(bodies[id_], base) or "")))
    given = [(name, _shown_reference(value)) for name in ("participant", "attributedTo")
             for value in params.values.get(name) or ()]
    path = f"CareTeam/{call.id_}/${NAME}" if call.id_ is not None else f"CareTeam/${NAME}"
    body = bundle.searchset(base_url=call.request.base_url,
                            links=[{"relation": "self", "url": page_url(call.request.base_url, path, given)}],
                            total=len(order), matches=[tasks[id_] for id_ in order],
                            includes=list(patients.values()), warnings=[], summary=None, elements=None)
    return FhirResponse(200, body)


def sort_key(task: dict[str, Any], risk: float | None) -> tuple[Any, ...]:
    """Worklist order: due day (undated last), priority, patient risk (highest first, none last), then
    authoredOn and id so the order is the same on every call."""
    due = ((task.get("restriction") or {}).get("period") or {}).get("end")
    day = due[:10] if isinstance(due, str) else None
    return (day is None, day or "", PRIORITY.get(str(task.get("priority")), PRIORITY["routine"]),
            risk is None, -(risk or 0.0), str(task.get("authoredOn") or ""), str(task.get("id") or ""))


# -- teams --------------------------------------------------------------------------------------------

async def _team(call: OperationCall, id_: str) -> dict[str, Any]:
    """The CareTeam the operation was invoked on (404 also when the token may not read it)."""
    version = await call.server.store.read("CareTeam", id_)
    access = call.request.access
    if version is None or version.body is None or (access is not None and not access.version_visible(version)):
        raise not_found(f"CareTeam/{id_} is not known")
    return fhirjson.loads(version.body)


def _participant(call: OperationCall, params: InputParameters) -> str:
    """Whose teams: the `participant` asked for, else the signed-in user."""
    value = params.one("participant")
    if value is None:
        user = call.request.access.grant.fhir_user if call.request.access is not None else None
        if not user:
            raise bad_request("CareTeam/$worklist needs 'participant' (the token names no fhirUser)", "participant")
        return str(user)
    reference = _relative(call.request.base_url, value.get("reference"))
    type_, _, id_ = (reference or "").partition("/")
    if type_ not in MEMBER_TYPES or not id_ or "/" in id_:
        raise bad_request(f"'participant' must reference a {', '.join(MEMBER_TYPES)}, not "
                          f"{shown(str(value.get('reference')))!r}", "participant")
    return f"{type_}/{id_}"


async def _teams_of(call: OperationCall, participant: str, today: str) -> list[dict[str, Any]]:
    """The active teams `participant` (or one of a Practitioner's active roles, as auth/care.py counts them) is
    on today, that the token may read."""
    server, access = call.server, call.request.access
    type_, _, id_ = participant.partition("/")
    found = await server.store.read(type_, id_)
    if found is None or found.body is None:
        raise FhirError(404, [Issue("not-found", f"'participant' names {participant}, which is not known",
                                    expression=("participant",))])
    people = {participant}
    if type_ == "Practitioner":
        people |= {v.reference for v in await all_matches(server.store, server.search, "PractitionerRole",
                                                          [("practitioner", participant), ("active", "true")])}
    teams = []
    for version in await all_matches(server.store, server.search, "CareTeam",
                                     [("participant", ",".join(sorted(people))), ("status", "active")]):
        if access is not None and not access.version_visible(version, "s"):
            continue
        team = fhirjson.loads(version.body or b"{}")
        if any(_relative(call.request.base_url, (p.get("member") or {}).get("reference")) in people
               and overlaps(p.get("period"), (today, today)) for p in _participants(team)):
            teams.append(team)
    return teams


def _participants(team: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in team.get("participant") or () if isinstance(p, dict)]


async def _owners(call: OperationCall, team: dict[str, Any]) -> set[str]:
    """Who may own a Task of the team's worklist: the team and its members (a Practitioner's roles and a
    role's Practitioner count as the same person)."""
    server, base = call.server, call.request.base_url
    owners = {f"CareTeam/{team.get('id')}"}
    members = {_relative(base, (p.get("member") or {}).get("reference")) for p in _participants(team)} - {None}
    owners |= {m for m in members if m}
    practitioners = sorted(m for m in owners if m.startswith("Practitioner/"))
    if practitioners:
        owners |= {v.reference for v in await all_matches(server.store, server.search, "PractitionerRole",
                                                          [("practitioner", ",".join(practitioners))])}
    for role in sorted(m for m in members if m and m.startswith("PractitionerRole/")):
        version = await server.store.read("PractitionerRole", role.partition("/")[2])
        body = fhirjson.loads(version.body) if version is not None and version.body else {}
        practitioner = _relative(base, (body.get("practitioner") or {}).get("reference"))
        if practitioner:
            owners.add(practitioner)
    return owners


async def _team_tasks(call: OperationCall, team: dict[str, Any]) -> list[ResourceVersion]:
    """The team's open Tasks for its patient that the token may see."""
    server, access, base = call.server, call.request.access, call.request.base_url
    patient = _relative(base, (team.get("subject") or {}).get("reference"))
    if patient is None or not patient.startswith("Patient/"):
        raise FhirError(422, [Issue("business-rule", f"CareTeam/{team.get('id')} has no patient (subject): a "
                                                     "worklist is a patient's open work")])
    owners = await _owners(call, team)
    found = []
    for version in await all_matches(server.store, server.search, "Task",
                                     [("subject", patient), ("status", ",".join(OPEN_STATUSES))]):
        if access is not None and not access.version_visible(version, "s"):
            continue
        owner = (fhirjson.loads(version.body or b"{}").get("owner") or {}).get("reference")
        if owner is None or _relative(base, owner) in owners:
            found.append(version)
    return found


# -- patients -----------------------------------------------------------------------------------------

async def _attributed(call: OperationCall, params: InputParameters, today: str) -> set[str] | None:
    """The references of the patients attributed to `attributedTo` today (None: no such filter)."""
    value = params.one("attributedTo")
    if value is None:
        return None
    reference = _relative(call.request.base_url, value.get("reference"))
    if reference is None or reference.partition("/")[0] not in PROVIDER_TYPES:
        raise bad_request(f"'attributedTo' must reference a {', '.join(PROVIDER_TYPES)}, not "
                          f"{shown(str(value.get('reference')))!r}", "attributedTo")
    ids = await patients_of(call.server, call.request.base_url, reference, "attributedTo", (today, today))
    return {f"Patient/{id_}" for id_ in ids}


async def _patients(call: OperationCall, references: list[str]) -> dict[str, ResourceVersion]:
    """The Patients the Tasks are for, each only if the token may read it."""
    access = call.request.access
    found = {}
    for reference in references:
        type_, _, id_ = reference.partition("/")
        version = await call.server.store.read(type_, id_) if type_ == "Patient" and id_ else None
        if version is not None and version.body is not None and (access is None or access.version_visible(version)):
            found[reference] = version
    return found


async def _risk(call: OperationCall, patient: str) -> float | None:
    """The patient's risk: the highest predicted probability in their latest final RiskAssessment (R4 §
    riskassessment: a probabilityDecimal 0..1), None when there is none the token may read."""
    access = call.request.access
    if access is not None and not access.filters("RiskAssessment", "s"):
        return None
    latest: tuple[str, float] | None = None
    for version in await all_matches(call.server.store, call.server.search, "RiskAssessment",
                                     [("subject", patient)]):
        if access is not None and not access.version_visible(version, "s"):
            continue
        assessment = fhirjson.loads(version.body or b"{}")
        probabilities = [p.get("probabilityDecimal") for p in assessment.get("prediction") or ()
                         if isinstance(p, dict) and isinstance(p.get("probabilityDecimal"), int | float | Decimal)]
        if assessment.get("status") not in FINAL_RISK or not probabilities:
            continue
        when = str(assessment.get("occurrenceDateTime") or (assessment.get("meta") or {}).get("lastUpdated") or "")
        if latest is None or when > latest[0]:
            latest = (when, float(max(probabilities)))
    return latest[1] if latest else None


def _patient_of(task: dict[str, Any], base_url: str) -> str | None:
    return _relative(base_url, (task.get("for") or {}).get("reference"))


def _relative(base_url: str, reference: Any) -> str | None:
    """A reference as `Type/id` (absolute ones on this server made relative; versions dropped)."""
    if not isinstance(reference, str) or not reference:
        return None
    text = reference.removeprefix(base_url.rstrip("/") + "/").split("/_history/")[0]
    return text if text.count("/") == 1 and "://" not in text else None


def _shown_reference(value: Any) -> str:
    return str(value.get("reference")) if isinstance(value, dict) else str(value)


# -- registration -------------------------------------------------------------------------------------

async def authorize(policy: Any, call: OperationCall) -> None:
    """The caller must read CareTeams and search Tasks (what the operation reads on their behalf)."""
    for type_, permission, words in (("CareTeam", "r", "read CareTeam"), ("Task", "s", "search Task")):
        if not policy.filters(type_, permission):
            raise forbidden(f"The access token does not allow ${NAME}: it needs to {words} resources")


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, worklist, type_level=True, instance=True, resource_types=frozenset({"CareTeam"}),
                           definition=DEFINITION, authorize=authorize))
