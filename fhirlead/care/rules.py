"""Care-coordination rules as data: one JSON file per rule (docs/care-coordination.md has the shape).

The rules shipped are in `fhirlead/care/rules/`; FHIRLEAD_CARE_RULES_DIR names a folder of more (a file
there with a shipped rule's `id` replaces it). Every file is read and checked at start-up: a rule that
cannot be understood stops the server with a message naming the file, rather than silently doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhirlead.care.expressions import Expression, RuleExpressionError
from fhirlead.definitions import resource_types

SHIPPED = Path(__file__).resolve().parent / "rules"
RULE_SYSTEM = "http://fhirlead.org/fhir/CodeSystem/care-rule"
PLACEHOLDERS = ("{patient}", "{focus}")
PRIORITIES = ("routine", "urgent", "asap", "stat")
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class RuleFileError(ValueError):
    """A rule file that breaks the documented shape (the message names the file and the member)."""


@dataclass(frozen=True)
class Query:
    """A search the rule runs (`Type?name=value&...`, with {patient}/{focus} filled in), and a FHIRPath
    `where` each match must also satisfy (for what R4 has no search parameter for, e.g. Flag.status)."""

    type_: str
    params: tuple[tuple[str, str], ...]
    where: Expression | None

    def bound(self, patient: str, focus: str) -> list[tuple[str, str]]:
        return [(name, value.replace("{patient}", patient).replace("{focus}", focus)) for name, value in self.params]


@dataclass(frozen=True)
class TaskShape:
    """What the rule's Task says (`task` in the file)."""

    code: dict[str, Any]
    text: str
    description: str
    due_days: int
    high_risk_due_days: int
    priority: str
    high_risk_priority: str
    based_on_focus: bool


@dataclass(frozen=True)
class Rule:
    """One rule: which writes start it, when it fires, what must (not) be there then, and the Task."""

    id: str
    title: str
    resource: str
    trigger: Expression
    patient: Expression
    anchor: Expression | None
    window_end: Expression | None
    window_days: int | None
    max_age_days: int | None
    follow_through: tuple[Query, ...]
    high_risk: tuple[Query, ...]
    care_teams: Query
    owner_role: dict[str, str]
    task: TaskShape
    source: str = ""  # the file it was read from, for messages

    @property
    def timed(self) -> bool:
        """A rule with a window fires when the window is over; one without, as soon as it is written."""
        return self.window_end is not None or self.window_days is not None


def _text(doc: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = doc.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise RuleFileError(f"'{name}' must be a non-empty string")
    return value


def _days(doc: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = doc.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 3650:
        raise RuleFileError(f"'{name}' must be a whole number of days from 0 to 3650")
    return value


def _query(spec: Any, name: str) -> Query:
    if isinstance(spec, str):
        spec = {"search": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("search"), str):
        raise RuleFileError(f"'{name}' entries are 'Type?name=value' strings or {{\"search\", \"where\"}} objects")
    type_, _, query = spec["search"].partition("?")
    if type_ not in resource_types():
        raise RuleFileError(f"'{name}': {type_!r} is not an R4 resource type")
    params = tuple(parse_qsl(query, keep_blank_values=True))
    where = spec.get("where")
    if where is not None and not isinstance(where, str):
        raise RuleFileError(f"'{name}': 'where' must be a FHIRPath string")
    return Query(type_, params, Expression(where, type_) if where else None)


def _queries(doc: dict[str, Any], name: str) -> tuple[Query, ...]:
    specs = doc.get(name, [])
    if not isinstance(specs, list):
        raise RuleFileError(f"'{name}' must be a list")
    return tuple(_query(spec, name) for spec in specs)


def _task(doc: Any) -> TaskShape:
    if not isinstance(doc, dict):
        raise RuleFileError("'task' must be an object")
    code = doc.get("code")
    if not isinstance(code, dict) or not all(isinstance(code.get(k), str) for k in ("system", "code")):
        raise RuleFileError("'task.code' must be a Coding with 'system' and 'code'")
    due = _days(doc, "dueDays")
    if due is None:
        raise RuleFileError("'task.dueDays' is required")
    priority = doc.get("priority", "routine")
    urgent = doc.get("highRiskPriority", priority)
    if priority not in PRIORITIES or urgent not in PRIORITIES:
        raise RuleFileError(f"'task.priority' and 'task.highRiskPriority' must be one of {', '.join(PRIORITIES)}")
    return TaskShape(
        code={k: v for k, v in code.items() if k in ("system", "code", "display")},
        text=_text(doc, "text") or "", description=_text(doc, "description", required=False) or "",
        due_days=due, high_risk_due_days=_days(doc, "highRiskDueDays", due) or 0,
        priority=priority, high_risk_priority=urgent, based_on_focus=doc.get("basedOnFocus") is True)


def parse_rule(doc: Any) -> Rule:
    """A rule from its JSON document; RuleFileError when it breaks the documented shape."""
    if not isinstance(doc, dict):
        raise RuleFileError("a rule file holds one JSON object")
    id_ = _text(doc, "id") or ""
    if not set(id_) <= _ID_CHARS or len(id_) > 64:
        raise RuleFileError("'id' must be lower-case letters, digits and '-', at most 64 characters")
    resource = _text(doc, "resource") or ""
    if resource not in resource_types():
        raise RuleFileError(f"'resource': {resource!r} is not an R4 resource type")
    window = doc.get("window")
    if window is not None and not isinstance(window, dict):
        raise RuleFileError("'window' must be an object")
    window = window or {}
    owner = doc.get("owner", {})
    if not isinstance(owner, dict):
        raise RuleFileError("'owner' must be an object")
    role = owner.get("role", {"system": "http://fhirlead.org/fhir/CodeSystem/lead-care-team-role", "code": "navigator"})
    if not isinstance(role, dict) or not all(isinstance(role.get(k), str) for k in ("system", "code")):
        raise RuleFileError("'owner.role' must be a Coding with 'system' and 'code'")
    try:
        return Rule(
            id=id_, title=_text(doc, "title") or id_, resource=resource,
            trigger=Expression(_text(doc, "trigger") or "", resource),
            patient=Expression(_text(doc, "patient") or "", resource),
            anchor=Expression(text, resource) if (text := _text(doc, "anchor", required=False)) else None,
            window_end=Expression(text, resource) if (text := _text(window, "end", required=False)) else None,
            window_days=_days(window, "defaultDays"),
            max_age_days=_days(doc, "maxAgeDays"),
            follow_through=_queries(doc, "followThrough"), high_risk=_queries(doc, "highRisk"),
            care_teams=_query(owner.get("careTeams", "CareTeam?subject={patient}&status=active"), "owner.careTeams"),
            owner_role={"system": role["system"], "code": role["code"]},
            task=_task(doc.get("task")))
    except RuleExpressionError as error:
        raise RuleFileError(str(error)) from error


def load_rules(extra: str | Path | None = None) -> dict[str, Rule]:
    """The shipped rules and those in `extra` (by id; `extra` wins), each file checked."""
    found: dict[str, Rule] = {}
    folders = [SHIPPED] + ([Path(extra)] if extra else [])
    for folder in folders:
        if not folder.is_dir():
            raise RuleFileError(f"care rules folder {folder} does not exist")
        seen: dict[str, Path] = {}
        for path in sorted(folder.glob("*.json")):
            try:
                rule = parse_rule(orjson.loads(path.read_bytes()))
            except (orjson.JSONDecodeError, RuleFileError) as error:
                raise RuleFileError(f"care rule file {path}: {error}") from error
            if rule.id in seen:
                raise RuleFileError(f"care rule file {path}: id {rule.id!r} is also in {seen[rule.id]}")
            seen[rule.id] = path
            found[rule.id] = replace(rule, source=str(path))
    return found
