"""The care-rule engine: any rule file, one mechanism (docs/care-coordination.md).

1. **Observe** (`observer`, called in every unit of work that wrote, before it commits:
   `fhirlead.storage.observed`). For each written resource of a type some rule watches, the rule's
   compiled FHIRPath `trigger` is evaluated on it; when it holds, a timer (`fhirlead.care.timers`) is
   recorded in the same commit: due at once for a rule without a window, when the window closes for one
   with a window. No store reads here; writes of other types cost one dictionary look-up.
2. **Fire** (`fire`, run by the timer worker when the timer is due, in whichever server process leases
   it). The resource is read again as it is *now*: gone, no longer matching the trigger (a referral
   completed or revoked), its window moved later (armed again), the patient not attributed on the day of
   the event, or a `followThrough` search finding something (an Appointment based on the referral): no
   Task. Otherwise the Task (`fhirlead.care.tasks`) is validated like any write and written once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from fhirlead import clock, fhirjson
from fhirlead.care import dates, timers
from fhirlead.care.patients import attribution, matches, owner
from fhirlead.care.rules import Rule, RuleFileError, load_rules
from fhirlead.care.tasks import build_task, task_id
from fhirlead.errors import FhirError
from fhirlead.interaction.incoming import prepare
from fhirlead.search.parse import parse_search
from fhirlead.storage.observed import Written
from fhirlead.storage.port import UnitOfWork, VersionConflict
from fhirlead.storage.records import Record

log = logging.getLogger(__name__)

MEMO = "care-rules"


class CareRules:
    """The rules in force in one server, by the resource type they watch."""

    def __init__(self, rules: dict[str, Rule]) -> None:
        self.rules = rules
        self.by_type: dict[str, tuple[Rule, ...]] = {}
        for rule in rules.values():
            self.by_type[rule.resource] = (*self.by_type.get(rule.resource, ()), rule)

    @classmethod
    def of(cls, server: Any) -> CareRules:
        """The server's rules, loaded and checked once (the shipped ones and FHIRLEAD_CARE_RULES_DIR's)."""
        found = server.memo.get(MEMO)
        if found is None:
            rules = load_rules(getattr(server.settings, "care_rules_dir", "") or None)
            for rule in rules.values():
                _check_searches(server, rule)
            found = server.memo[MEMO] = cls(rules)
            log.info("care rules in force: %s", ", ".join(sorted(rules)) or "none")
        return found


def _check_searches(server: Any, rule: Rule) -> None:
    """Every search of the rule parses with the server's search parameters (a typo stops start-up)."""
    for query in (*rule.follow_through, *rule.high_risk, rule.care_teams):
        try:
            parse_search(server.search, (query.type_,), query.bound("Patient/example", f"{rule.resource}/example"),
                         strict=True)
        except FhirError as error:
            detail = "; ".join(issue.diagnostics for issue in error.issues)
            where = rule.source or rule.id
            raise RuleFileError(f"care rule file {where}: a {query.type_} search is not valid: {detail}") from error


def window(rule: Rule, resource: dict[str, Any], written_at: datetime) -> tuple[date, datetime]:
    """(the day of the event the Task is about, the instant the rule may fire).

    Without a window: the `anchor` day (else the write's), firing at once. With one: its `end` (else
    `anchor` + `defaultDays`, else the write + `defaultDays`); the rule fires once the end is over."""
    anchor = dates.parse(rule.anchor.first_string(resource)) if rule.anchor else None
    start_day = anchor[0] if anchor else written_at.date()
    if not rule.timed:
        return start_day, datetime.fromtimestamp(0, UTC)
    end = dates.parse(rule.window_end.first_string(resource)) if rule.window_end else None
    if end is not None:
        return end
    day = start_day + timedelta(days=rule.window_days or 0)
    return day, datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)


def _too_old(rule: Rule, day: date, now: datetime) -> bool:
    return rule.max_age_days is not None and day < now.date() - timedelta(days=rule.max_age_days)


# -- observe ---------------------------------------------------------------------------------------

def observer(server: Any) -> Any:
    engine = CareRules.of(server)

    async def arm_care_rules(uow: UnitOfWork, written: Sequence[Written]) -> None:
        now: datetime | None = None
        for write in written:
            rules = engine.by_type.get(write.type_)
            if not rules or write.resource is None:
                continue
            for rule in rules:
                if not rule.trigger.holds(write.resource):
                    continue
                now = now or clock.now()
                day, fires = window(rule, write.resource, now)
                if _too_old(rule, day, now):
                    continue  # e.g. a load of last year's discharges: nobody follows those up now
                await timers.arm(uow, dates.epoch_micros(fires) if rule.timed else 0, rule.id,
                                 f"{write.type_}/{write.id_}", at=clock.instant(now))

    return arm_care_rules


# -- fire ------------------------------------------------------------------------------------------

async def fire(server: Any, timer: Record) -> None:
    """Evaluate the timer's rule on its resource now; write the Task when everything holds."""
    engine = CareRules.of(server)
    rule = engine.rules.get(str(timer.doc.get("rule")))
    focus = str(timer.doc.get("reference"))
    type_, _, id_ = focus.partition("/")
    if rule is None or type_ != rule.resource or not id_:
        return  # the rule was removed since, or a record that is not ours
    id_task = task_id(rule.id, focus)
    if await server.store.read("Task", id_task) is not None:
        return  # raised already (by this process or another)
    version = await server.store.read(type_, id_)
    if version is None or version.body is None:
        return
    resource = fhirjson.loads(version.body)
    if not rule.trigger.holds(resource):
        return  # e.g. the referral was completed or revoked meanwhile
    now = clock.now()
    written_at = dates.parse(timer.doc.get("at"))
    day, fires = window(rule, resource, written_at[1] if written_at else now)
    if rule.timed and fires > now:  # the window was moved later: wait for it
        await timers.arm_now(server.store.records, dates.epoch_micros(fires), rule.id, focus, at=timer.doc.get("at"))
        return
    patient = rule.patient.first_string(resource) or ""
    if not patient.startswith("Patient/") or patient.count("/") != 1:
        return
    attributed = await attribution(server, patient, day)
    if attributed is None:
        return
    for query in rule.follow_through:
        if await matches(server, query, patient, focus):
            return  # followed through: nothing to do
    high_risk = [f"{m['resourceType']}/{m['id']}" for query in rule.high_risk
                 for m in await matches(server, query, patient, focus)]
    owned_by, requester = await owner(server, rule, patient, focus, now.date(), attributed)
    task = build_task(rule, focus, patient, day, high_risk, owned_by, requester, now)
    await _write(server, rule, task)


async def _write(server: Any, rule: Rule, task: dict[str, Any]) -> None:
    try:
        entries = prepare(server, task, "Task")
    except FhirError as error:  # the rule file makes Tasks the server refuses: say so, do not retry forever
        log.error("care rule %s made an invalid Task: %s", rule.id, "; ".join(i.diagnostics for i in error.issues))
        return
    try:
        async with server.store.unit_of_work() as uow:
            await uow.write("Task", task["id"], task, entries, "PUT", expected_version=0)
    except VersionConflict:
        return  # another process wrote it first


def worker(server: Any) -> timers.TimerWorker:
    engine = CareRules.of(server)
    return timers.TimerWorker(server, fire, lambda written: any(w.type_ in engine.by_type for w in written))
