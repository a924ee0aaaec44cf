"""What a Subscription resource asks for, compiled once: which writes it wants and how to notify.

Two forms (https://hl7.org/fhir/R4/subscription.html; Subscriptions R5 Backport IG 1.1.0, R4 profile
`backport-subscription`):
- **criteria** a search URL (`Observation?code=http://loinc.org|4548-4`): a write notifies when the
  resource, as written, matches it; delivery per R4 (`rest-hook`: a POST with no body, or with a payload
  the resource PUT to `[endpoint]/[type]/[id]`).
- **topic-based**: `criteria` is a SubscriptionTopic's canonical URL (`fhirlead.subscriptions.topics`), with
  `backport-filter-criteria` extensions on `_criteria` narrowing it (`Encounter?patient=Patient/1`, only
  on the parameters the topic's `canFilterBy` allows); notifications are `history` Bundles led by a
  `backport-subscription-status-r4` Parameters; handshake, heartbeat, event numbers.

Refused at write (422 for a Subscription the server cannot honour, 400 for malformed content): a channel
other than rest-hook, an endpoint the policy forbids (`fhirlead.subscriptions.endpoints`), criteria
naming an unknown type or parameter or one that needs other resources to decide, an unknown topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fhirlead.errors import FhirError, Issue
from fhirlead.search.parse import parse_search
from fhirlead.search.query import Clause
from fhirlead.search.registry import SearchRegistry
from fhirlead.subscriptions import endpoints
from fhirlead.subscriptions.matcher import unsupported
from fhirlead.subscriptions.topics import Topic

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
BACKPORT_PROFILE = BACKPORT + "backport-subscription"
FILTER_CRITERIA = BACKPORT + "backport-filter-criteria"
PAYLOAD_CONTENT = BACKPORT + "backport-payload-content"
HEARTBEAT = BACKPORT + "backport-heartbeat-period"
TIMEOUT = BACKPORT + "backport-timeout"
MAX_COUNT = BACKPORT + "backport-max-count"
CONTENTS = ("empty", "id-only", "full-resource")
LIVE = ("requested", "active")  # the statuses whose Subscriptions record events
FHIR_MIME = ("application/fhir+json", "application/json", "application/json+fhir")


@dataclass(frozen=True)
class Filter:
    """One search narrowing the resources of `type_` (criteria, or a topic's filter criteria)."""

    type_: str
    where: tuple[Clause, ...]


@dataclass(frozen=True)
class Subscription:
    id_: str
    version: int
    status: str
    endpoint: str
    headers: tuple[tuple[str, str], ...]
    content: str  # empty | id-only | full-resource
    mime: str | None  # channel.payload; None: no payload (classic R4)
    filters: tuple[Filter, ...]  # ANDed per type (classic: exactly one)
    topic: Topic | None = None  # None: classic R4 criteria
    heartbeat_seconds: int | None = None
    timeout_seconds: float = 10.0
    max_count: int = 1
    types: frozenset[str] = field(default=frozenset())

    @property
    def reference(self) -> str:
        return f"Subscription/{self.id_}"


def unprocessable(diagnostics: str, *expression: str, code: str = "not-supported") -> FhirError:
    return FhirError(422, [Issue(code, diagnostics, expression=expression)])


def _extension(element: Any, url: str) -> Any:
    for item in (element or {}).get("extension") or () if isinstance(element, dict) else ():
        if isinstance(item, dict) and item.get("url") == url:
            return next((v for k, v in item.items() if k.startswith("value")), None)
    return None


def compile_filter(registry: SearchRegistry, text: str, expression: str, allowed_types: frozenset[str] | None = None,
                   allowed_params: frozenset[tuple[str, str]] | None = None) -> Filter:
    """`Type?query` as a Filter; refuses what one resource cannot decide."""
    type_, _, query = text.strip().partition("?")
    if not type_ or "/" in type_ or registry.get(type_, "_id") is None:
        raise unprocessable(f"'{text}' must be a search URL of the form [type]?[parameters] on a known type",
                            expression, code="invalid")
    if allowed_types is not None and type_ not in allowed_types:
        raise unprocessable(f"'{text}': the topic has no trigger on {type_}", expression)
    params = parse_qsl(query, keep_blank_values=True)
    for name, _value in params:
        base = name.partition(":")[0]
        if base.startswith("_") and base != "_id":
            raise unprocessable(f"'{name}' cannot be used in subscription criteria", expression)
        if allowed_params is not None and (type_, base) not in allowed_params:
            raise unprocessable(f"the topic does not allow filtering {type_} by '{base}' (canFilterBy)", expression)
    try:
        parsed = parse_search(registry, (type_,), params, strict=True)
    except FhirError as error:
        raise FhirError(error.status, [Issue(i.code, i.diagnostics, i.severity, (expression,))
                                       for i in error.issues]) from None
    hard = unsupported(parsed.query.where)
    if hard:
        raise unprocessable(f"'{text}' uses {', '.join(hard)}, which a subscription cannot evaluate on the "
                            "changed resource alone (chains, _has, _list and compartments are not supported)",
                            expression)
    return Filter(type_, parsed.query.where)


def compile_subscription(resource: dict[str, Any], registry: SearchRegistry, topics: dict[str, Topic],
                         endpoint_policy: str) -> Subscription:
    """The Subscription as the server will act on it; FhirError (400/422) if it cannot."""
    channel = resource.get("channel") or {}
    if channel.get("type") != "rest-hook":
        raise unprocessable(f"channel type '{channel.get('type')}' is not supported; this server delivers "
                            "rest-hook notifications only", "Subscription.channel.type")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str):
        raise unprocessable("a rest-hook channel needs an endpoint", "Subscription.channel.endpoint", code="required")
    endpoints.check(endpoint, endpoint_policy)
    headers = []
    for position, line in enumerate(channel.get("header") or ()):
        name, colon, value = str(line).partition(":")
        if not colon or not name.strip() or any(c in name + value for c in "\r\n"):
            raise FhirError(400, [Issue("invalid", "a channel header is 'Name: value'",
                                        expression=(f"Subscription.channel.header[{position}]",))])
        headers.append((name.strip(), value.strip()))
    mime = channel.get("payload")
    if mime is not None and mime.split(";")[0].strip() not in FHIR_MIME:
        raise unprocessable(f"payload type '{mime}' is not supported (application/fhir+json)",
                            "Subscription.channel.payload")
    criteria = resource.get("criteria") or ""
    profiles = (resource.get("meta") or {}).get("profile") or ()
    topic = topics.get(criteria)
    if topic is None and (BACKPORT_PROFILE in profiles or ("?" not in criteria and "://" in criteria)):
        raise unprocessable(f"unknown SubscriptionTopic '{criteria}'", "Subscription.criteria", code="not-found")
    content = _extension(channel.get("_payload"), PAYLOAD_CONTENT) or ("full-resource" if mime else "empty")
    if content not in CONTENTS:
        raise FhirError(400, [Issue("invalid", f"payload content must be one of {', '.join(CONTENTS)}",
                                    expression=("Subscription.channel.payload",))])
    if content != "empty" and mime is None:
        raise FhirError(400, [Issue("invalid", f"payload content '{content}' needs channel.payload (a MIME type)",
                                    expression=("Subscription.channel.payload",))])
    common = dict(id_=str(resource.get("id") or ""), version=int((resource.get("meta") or {}).get("versionId") or 0),
                  status=str(resource.get("status") or ""), endpoint=endpoint, headers=tuple(headers),
                  content=content, mime=mime)
    if topic is None:
        one = compile_filter(registry, criteria, "Subscription.criteria")
        return Subscription(**common, filters=(one,), types=frozenset({one.type_}))
    filters = []
    for position, item in enumerate((resource.get("_criteria") or {}).get("extension") or ()):
        if isinstance(item, dict) and item.get("url") == FILTER_CRITERIA:
            filters.append(compile_filter(registry, str(item.get("valueString") or ""),
                                          f"Subscription.criteria.extension[{position}]",
                                          topic.types, topic.filter_parameters))
    heartbeat = _extension(channel, HEARTBEAT)
    timeout = _extension(channel, TIMEOUT)
    max_count = _extension(channel, MAX_COUNT)
    return Subscription(**common, filters=tuple(filters), topic=topic, types=topic.types,
                        heartbeat_seconds=int(heartbeat) if isinstance(heartbeat, int) and heartbeat > 0 else None,
                        timeout_seconds=float(min(timeout, 60)) if isinstance(timeout, int) and timeout > 0 else 10.0,
                        max_count=int(min(max_count, 100)) if isinstance(max_count, int) and max_count > 0 else 1)
