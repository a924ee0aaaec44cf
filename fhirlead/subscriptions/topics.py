"""SubscriptionTopics in R4: `Basic` resources carrying the R5 cross-version extensions, as the
Subscriptions R5 Backport IG 1.1.0 describes for R4 servers (`Basic.code` = fhir-types#SubscriptionTopic,
extensions `http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic.*`).

A topic is in force when it is one of the server's own (`fhirlead/subscriptions/topics/*.json`, offered
in the CapabilityStatement) or a Basic topic written to the store, with status active or draft (absent:
active). Of a `resourceTrigger` the server evaluates: `resource`, `supportedInteraction`
(create/update/delete; none listed: all), `queryCriteria` (`current`, `previous`, `requireBoth`,
`resultForCreate`, `resultForDelete`) and `fhirPathCriteria` (`%current`, `%previous`). `canFilterBy`
lists the parameters a Subscription's filter criteria may use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."
TOPIC_CODE = ("http://hl7.org/fhir/fhir-types", "SubscriptionTopic")
BUILT_IN = Path(__file__).parent / "topics"
STRUCTURE = "http://hl7.org/fhir/StructureDefinition/"


@dataclass(frozen=True)
class Trigger:
    type_: str
    interactions: frozenset[str]
    current: str | None = None  # search parameters (no type, no "?")
    previous: str | None = None
    require_both: bool = False
    result_for_create: str = "test-passes"
    result_for_delete: str = "test-passes"
    fhirpath: str | None = None


@dataclass(frozen=True)
class Topic:
    url: str
    title: str
    triggers: tuple[Trigger, ...]
    filter_parameters: frozenset[tuple[str, str]]  # (type, parameter) pairs canFilterBy allows

    @property
    def types(self) -> frozenset[str]:
        return frozenset(t.type_ for t in self.triggers)


def is_topic(resource: dict[str, Any] | None) -> bool:
    if not resource or resource.get("resourceType") != "Basic":
        return False
    return any((c.get("system"), c.get("code")) == TOPIC_CODE for c in (resource.get("code") or {}).get("coding") or ()
               if isinstance(c, dict))


def _value(item: dict[str, Any]) -> Any:
    return next((v for k, v in item.items() if k.startswith("value")), None)


def _parts(extension: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return [(e.get("url"), _value(e), e) for e in extension.get("extension") or () if isinstance(e, dict)]


def _type_name(resource: str) -> str:
    return resource.removeprefix(STRUCTURE)


def topic_of(basic: dict[str, Any]) -> Topic | None:
    """The topic a Basic resource defines (None if it defines none or is retired)."""
    if not is_topic(basic):
        return None
    extensions = [e for e in (basic.get("extension") or ()) + (basic.get("modifierExtension") or ())
                  if isinstance(e, dict)]
    single = {e.get("url"): _value(e) for e in extensions}
    url = single.get(R5 + "url")
    if not isinstance(url, str) or single.get(R5 + "status", "active") not in ("active", "draft"):
        return None
    triggers, filters = [], set()
    for extension in extensions:
        if extension.get("url") == R5 + "resourceTrigger":
            parts = _parts(extension)
            resource = next((v for u, v, _ in parts if u == "resource"), None)
            if not isinstance(resource, str):
                continue
            query = next((e for u, _, e in parts if u == "queryCriteria"), None)
            q = {u: v for u, v, _ in _parts(query)} if query else {}
            triggers.append(Trigger(
                _type_name(resource), frozenset(v for u, v, _ in parts if u == "supportedInteraction"),
                q.get("current"), q.get("previous"), bool(q.get("requireBoth")),
                q.get("resultForCreate") or "test-passes", q.get("resultForDelete") or "test-passes",
                next((v for u, v, _ in parts if u == "fhirPathCriteria"), None)))
        elif extension.get("url") == R5 + "canFilterBy":
            parts = {u: v for u, v, _ in _parts(extension)}
            if isinstance(parts.get("resource"), str) and isinstance(parts.get("filterParameter"), str):
                filters.add((_type_name(parts["resource"]), parts["filterParameter"]))
    if not triggers:
        return None
    return Topic(url, str(single.get(R5 + "title") or basic.get("id") or url), tuple(triggers), frozenset(filters))


def built_in() -> list[dict[str, Any]]:
    """The server's own topics (Basic resources)."""
    return [json.loads(path.read_text()) for path in sorted(BUILT_IN.glob("*.json"))]


def built_in_topics() -> dict[str, Topic]:
    """The server's own topics by canonical URL (also offered in the CapabilityStatement)."""
    return {t.url: t for t in map(topic_of, built_in()) if t is not None}
