"""A small Lead world for the care-rule tests: an attributed patient with a Lead care team and a
navigator, a patient on no final list, and helpers that wait for the timer worker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from fhirlead.care import timers
from fhirlead.care.tasks import TASK_SYSTEM

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE = "http://fhirlead.org/fhir/CodeSystem/lead-care-team-role"
LONGITUDINAL = {"system": "http://loinc.org", "code": "LA28865-6"}
REFERRAL = {"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}


def today() -> date:
    return datetime.now(UTC).date()


def member(patient: str, provider: str, **more: Any) -> dict[str, Any]:
    return {"extension": [{"url": ATR + "ext-changeType", "valueCode": "nochange"},
                          {"url": ATR + "ext-attributedProvider", "valueReference": {"reference": provider}}],
            "entity": {"reference": patient}, "period": {"start": "2026-01-01"}, **more}


def attribution_list(id_: str, status: str, *members: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Group", "id": id_, "type": "person", "actual": True,
            "extension": [{"url": ATR + "ext-contractValidityPeriod", "valuePeriod": {"start": "2026-01-01"}},
                          {"url": ATR + "ext-attributionListStatus", "valueCode": status}],
            "member": list(members)}


def care_team(id_: str, patient: str, navigator: str | None) -> dict[str, Any]:
    participants = [{"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "453231000124104"}]}],
                     "member": {"reference": "Practitioner/pcp"}, "period": {"start": "2026-01-01"}}]
    if navigator:
        participants.insert(0, {"role": [{"coding": [{"system": ROLE, "code": "navigator"}]}],
                                "member": {"reference": navigator}, "period": {"start": "2026-01-01"}})
        participants.append({"role": [{"coding": [{"system": ROLE, "code": "navigator"}]}],  # handed over
                             "member": {"reference": "Practitioner/old-nav"},
                             "period": {"start": "2025-01-01", "end": "2025-12-31"}})
    return {"resourceType": "CareTeam", "id": id_, "status": "active", "category": [{"coding": [LONGITUDINAL]}],
            "subject": {"reference": patient}, "period": {"start": "2026-01-01"}, "participant": participants,
            "managingOrganization": [{"reference": "Organization/lead"}]}


RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "lead", "name": "Riverbend Accountable Care Network"},
    *({"resourceType": "Practitioner", "id": id_} for id_ in ("nav", "old-nav", "pcp", "other-nav")),
    *({"resourceType": "Patient", "id": id_} for id_ in ("pat", "stranger", "lapsed", "teamless", "no-nav")),
    care_team("team-pat", "Patient/pat", "Practitioner/nav"),
    care_team("team-no-nav", "Patient/no-nav", None),
    {**care_team("team-stranger", "Patient/stranger", "Practitioner/other-nav")},
    attribution_list("atr-final", "final", member("Patient/pat", "Practitioner/pcp"),
                     member("Patient/lapsed", "Practitioner/pcp", inactive=True),
                     member("Patient/teamless", "Practitioner/pcp"), member("Patient/no-nav", "Practitioner/pcp")),
    attribution_list("atr-draft", "draft", member("Patient/stranger", "Practitioner/pcp")),
]


async def seed(client: httpx.AsyncClient, resources: list[dict[str, Any]]) -> None:
    for resource in resources:
        answer = await client.put(f"{resource['resourceType']}/{resource['id']}", json=resource)
        assert answer.status_code in (200, 201), answer.text


def encounter(id_: str, patient: str = "Patient/pat", status: str = "finished", code: str = "IMP",
              end: datetime | None = None, **more: Any) -> dict[str, Any]:
    end = end or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    return {"resourceType": "Encounter", "id": id_, "status": status, "class": {"system": ACT, "code": code},
            "subject": {"reference": patient},
            "period": {"start": (end - timedelta(days=3)).isoformat(), "end": end.isoformat()}, **more}


def referral(id_: str, patient: str = "Patient/pat", status: str = "active", **more: Any) -> dict[str, Any]:
    return {"resourceType": "ServiceRequest", "id": id_, "status": status, "intent": "order",
            "category": [{"coding": [REFERRAL]}], "subject": {"reference": patient},
            "code": {"text": "Referral to cardiology"}, **more}


async def settle(app: FastAPI, seconds: float = 20.0) -> None:
    """Wait until the timer worker has run every timer that is due."""
    records = app.state.server.store.records
    for _ in range(int(seconds / 0.05)):
        pending = await records.list(timers.TIMERS.kind)
        if all(timers.due_of(t.key) > time.time() for t in pending if t.doc.get("pending")):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timers still due: {[t.key for t in pending]}")


async def rule_tasks(client: httpx.AsyncClient, rule: str | None = None) -> list[dict[str, Any]]:
    found = (await client.get("Task", params={"identifier": f"{TASK_SYSTEM}|", "_count": 200})).json()
    tasks = [e["resource"] for e in found.get("entry", [])]
    return [t for t in tasks if rule is None or t["identifier"][0]["value"].startswith(f"{rule}|")]
