"""The follow-up Task a care rule raises (https://hl7.org/fhir/R4/task.html).

One Task per rule and triggering resource, ever: its id is derived from the two (`care-<sha256>`) and
written with "must not exist yet" as precondition, so a resent resource, a second server process or a
retried timer finds it instead of making another. Its identifier (system TASK_SYSTEM, value
`<rule>|<Type>/<id>`) spells the same for searches.

**Due date: `Task.restriction.period.end`.** R4 Task has no due date; `restriction.period` is "over what
time-period is fulfillment sought" (https://hl7.org/fhir/R4/task-definitions.html#Task.restriction.period),
which is exactly a deadline, while `executionPeriod` is when the work was actually done (filled in by the
performer). `restriction.period.start` is the day of the event (discharge, end of the referral window),
`end` the day the follow-up is due by (inclusive, a `date`).
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from typing import Any

from fhirlead.care.rules import Rule

TASK_SYSTEM = "http://fhirlead.org/fhir/care-rule"


def task_id(rule: str, focus: str) -> str:
    return "care-" + hashlib.sha256(f"{rule}|{focus}".encode()).hexdigest()[:40]


def build_task(rule: Rule, focus: str, patient: str, event_day: date, high_risk: list[str],
               owner: str | None, requester: str | None, now: datetime) -> dict[str, Any]:
    """The Task for `rule` on `focus`; `high_risk`: the references that made the patient high risk."""
    shape = rule.task
    urgent = bool(high_risk)
    due = event_day + timedelta(days=shape.high_risk_due_days if urgent else shape.due_days)
    stamp = now.isoformat(timespec="seconds")
    task: dict[str, Any] = {
        "resourceType": "Task", "id": task_id(rule.id, focus),
        "identifier": [{"system": TASK_SYSTEM, "value": f"{rule.id}|{focus}"}],
        "status": "requested", "intent": "order",
        "priority": shape.high_risk_priority if urgent else shape.priority,
        "code": {"coding": [shape.code], "text": shape.text},
        "focus": {"reference": focus}, "for": {"reference": patient},
        "authoredOn": stamp, "lastModified": stamp,
        "reasonReference": {"reference": focus},
        "restriction": {"period": {"start": event_day.isoformat(), "end": due.isoformat()}},
    }
    if shape.description:
        task["description"] = shape.description
    if shape.based_on_focus:
        task["basedOn"] = [{"reference": focus}]
    if requester:
        task["requester"] = {"reference": requester}
    if owner:
        task["owner"] = {"reference": owner}
    if high_risk:
        task["input"] = [{"type": {"text": "high-risk evidence"}, "valueReference": {"reference": ref}}
                         for ref in high_risk]
    return task
