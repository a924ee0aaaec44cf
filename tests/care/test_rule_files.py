"""Rules are data: a third rule is one JSON file in FHIRLEAD_CARE_RULES_DIR (no engine change), a file
there replaces a shipped rule of the same id, and a file that breaks the shape stops start-up, naming
itself (docs/care-coordination.md)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from fhirlead.api.app import create_app
from fhirlead.care.dates import closes_at, day_of
from fhirlead.care.rules import SHIPPED, RuleFileError, load_rules, parse_rule
from fhirlead.settings import Settings
from tests.care.world import RESOURCES, encounter, rule_tasks, seed, settle, today
from tests.conftest import BASE
from tests.tokens import bearer

HEART_FAILURE = {
    "id": "new-heart-failure",
    "title": "New heart failure diagnosis: education and a weight plan",
    "resource": "Condition",
    "trigger": "clinicalStatus.coding.where(system = 'http://terminology.hl7.org/CodeSystem/condition-clinical'"
               " and code = 'active').exists() and code.coding.where(system = 'http://snomed.info/sct'"
               " and code = '84114007').exists()",
    "patient": "subject.reference",
    "anchor": "recordedDate",
    "task": {"code": {"system": "http://fhirlead.org/fhir/CodeSystem/care-rule", "code": "new-heart-failure"},
             "text": "Heart failure education and daily weights", "dueDays": 14, "priority": "routine"},
}


def shipped(name: str) -> dict[str, Any]:
    return json.loads((SHIPPED / f"{name}.json").read_text())


@pytest.fixture
async def rules_app(settings: Settings, tmp_path: Path) -> AsyncIterator[FastAPI]:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "new-heart-failure.json").write_text(json.dumps(HEART_FAILURE))
    sooner = shipped("discharge-follow-up")
    sooner["task"]["dueDays"] = 5
    (folder / "discharge-follow-up.json").write_text(json.dumps(sooner))
    application = create_app(dataclasses.replace(settings, care_rules_dir=str(folder)))
    async with application.router.lifespan_context(application):
        yield application


async def test_a_rule_file_in_the_rules_folder_is_in_force(rules_app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rules_app), base_url=BASE,
                                 headers=await bearer(rules_app)) as client:
        await seed(client, RESOURCES)
        condition = {"resourceType": "Condition", "id": "hf", "subject": {"reference": "Patient/pat"},
                     "clinicalStatus": {"coding": [{
                         "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                     "code": {"coding": [{"system": "http://snomed.info/sct", "code": "84114007"}]},
                     "recordedDate": today().isoformat()}
        assert (await client.put("Condition/hf", json=condition)).status_code == 201
        stay = encounter("stay")
        assert (await client.put("Encounter/stay", json=stay)).status_code == 201
        await settle(rules_app)
        [task] = await rule_tasks(client, "new-heart-failure")
        assert task["owner"] == {"reference": "Practitioner/nav"}
        assert task["restriction"]["period"]["end"] == (today() + timedelta(days=14)).isoformat()
        [follow_up] = await rule_tasks(client, "discharge-follow-up")  # the replaced shipped rule: 5 days
        day = datetime.fromisoformat(stay["period"]["end"]).date()
        assert follow_up["restriction"]["period"]["end"] == (day + timedelta(days=5)).isoformat()


@pytest.mark.parametrize(("change", "message"), [
    ({"trigger": "status = = 'active'"}, "does not parse"),
    ({"resource": "Conditions"}, "not an R4 resource type"),
    ({"id": "Heart Failure"}, "'id'"),
    ({"task": {"code": {"code": "x"}, "text": "t", "dueDays": 1}}, "task.code"),
    ({"task": {**HEART_FAILURE["task"], "dueDays": -1}}, "dueDays"),
    ({"highRisk": ["RiskAssessment?subject={patient}&riskiness=high"]}, "riskiness"),
    ({"followThrough": ["Appointments?based-on={focus}"]}, "not an R4 resource type"),
])
async def test_a_broken_rule_file_stops_start_up(settings: Settings, tmp_path: Path, change: dict,
                                                 message: str) -> None:
    (tmp_path / "broken.json").write_text(json.dumps({**HEART_FAILURE, **change}))
    application = create_app(dataclasses.replace(settings, care_rules_dir=str(tmp_path)))
    with pytest.raises(RuleFileError, match=message) as refused:
        async with application.router.lifespan_context(application):
            pass
    assert "broken.json" in str(refused.value)


def test_the_shipped_rules_parse_and_two_ids_in_one_folder_do_not(tmp_path: Path) -> None:
    assert set(load_rules()) == {"discharge-follow-up", "referral-follow-through"}
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(HEART_FAILURE))
    with pytest.raises(RuleFileError, match="also in"):
        load_rules(tmp_path)
    with pytest.raises(RuleFileError, match="does not exist"):
        load_rules(tmp_path / "missing")


def test_a_trigger_beyond_the_compiler_runs_in_fhirpathpy() -> None:
    rule = parse_rule({**HEART_FAILURE, "trigger": "code.coding.code.replaceMatches('^8411', 'HF-').startsWith('HF-')"})
    assert rule.trigger.holds({"resourceType": "Condition", "code": {"coding": [{"code": "84114007"}]}})
    assert not rule.trigger.holds({"resourceType": "Condition", "code": {"coding": [{"code": "38341003"}]}})


@pytest.mark.parametrize(("value", "day", "closes"), [
    ("2026-03-10", "2026-03-10", datetime(2026, 3, 11, tzinfo=UTC)),  # an inclusive end: open all that day
    ("2026-03", "2026-03-01", datetime(2026, 4, 1, tzinfo=UTC)),
    ("2026-12", "2026-12-01", datetime(2027, 1, 1, tzinfo=UTC)),
    ("2026", "2026-01-01", datetime(2027, 1, 1, tzinfo=UTC)),
    ("2026-03-10T22:30:00-05:00", "2026-03-10", datetime(2026, 3, 11, 3, 30, tzinfo=UTC)),  # the day as written
    ("2026-02-30", None, None), ("soon", None, None), (20260310, None, None),
])
def test_dates(value: object, day: str | None, closes: datetime | None) -> None:
    assert (day_of(value).isoformat() if day_of(value) else None) == day
    assert closes_at(value) == closes
