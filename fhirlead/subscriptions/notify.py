"""What goes over the wire: R4 rest-hook requests and the Backport IG's notification Bundles.

- Classic R4 (https://hl7.org/fhir/R4/subscription.html#channels): no payload, a POST with no body to
  the endpoint; with a payload, the resource PUT to `[endpoint]/[type]/[id]` (a delete: DELETE there).
- Topic-based (Subscriptions R5 Backport IG 1.1.0, R4 notification Bundle profile
  `backport-subscription-notification-r4`): a POST of a `history` Bundle whose first entry is the
  `backport-subscription-status-r4` Parameters (`subscription`, `topic`, `status`, `type`,
  `events-since-subscription-start`, one `notification-event` per event: `event-number`, `timestamp`,
  `focus` unless the content is `empty`), then per event with content `id-only` or `full-resource` an
  entry for the focus: its fullUrl and request, and for `full-resource` the resource as stored (its bytes
  embedded unparsed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from fhirlead.subscriptions.model import Subscription

STATUS_PROFILE = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
NOTIFICATION_PROFILE = \
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"
METHODS = {"create": ("POST", "201"), "update": ("PUT", "200"), "delete": ("DELETE", "204")}


@dataclass(frozen=True)
class Event:
    """One recorded event, numbered for delivery; `body` the focus version's stored bytes if sent."""

    key: str
    number: int
    type_: str
    id_: str
    version: str | None
    interaction: str
    at: float
    body: bytes | None = None

    @property
    def reference(self) -> str:
        return f"{self.type_}/{self.id_}"


def instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_parameters(subscription: Subscription, base: str, kind: str, events_since_start: int,
                      events: list[Event] = (), status: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The subscription's status as the Backport IG's R4 Parameters (`kind`: handshake, heartbeat,
    event-notification, query-status)."""
    parameters: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": f"{base}/{subscription.reference}"}},
    ]
    if subscription.topic is not None:
        parameters.append({"name": "topic", "valueCanonical": subscription.topic.url})
    parameters += [
        {"name": "status", "valueCode": status or subscription.status},
        {"name": "type", "valueCode": kind},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for event in events:
        parts: list[dict[str, Any]] = [{"name": "event-number", "valueString": str(event.number)},
                                       {"name": "timestamp", "valueInstant": instant(event.at)}]
        if subscription.content != "empty":
            parts.append({"name": "focus", "valueReference": {"reference": f"{base}/{event.reference}"}})
        parameters.append({"name": "notification-event", "part": parts})
    if error:
        parameters.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {"resourceType": "Parameters", "id": str(uuid.uuid4()), "meta": {"profile": [STATUS_PROFILE]},
            "parameter": parameters}


def notification_bundle(subscription: Subscription, base: str, kind: str, events_since_start: int,
                        events: list[Event] = ()) -> bytes:
    status = status_parameters(subscription, base, kind, events_since_start, events)
    entries: list[dict[str, Any]] = [{
        "fullUrl": f"urn:uuid:{status['id']}", "resource": status,
        "request": {"method": "GET", "url": f"{base}/{subscription.reference}/$status"},
        "response": {"status": "200"},
    }]
    if subscription.content != "empty":
        for event in events:
            method, code = METHODS[event.interaction]
            entry: dict[str, Any] = {
                "fullUrl": f"{base}/{event.reference}",
                "request": {"method": method, "url": event.type_ if method == "POST" else event.reference},
                "response": {"status": code},
            }
            if subscription.content == "full-resource" and event.body is not None:
                entry["resource"] = orjson.Fragment(event.body)
            entries.append(entry)
    bundle = {"resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [NOTIFICATION_PROFILE]},
              "type": "history", "timestamp": instant(datetime.now(UTC).timestamp()), "entry": entries}
    return orjson.dumps(bundle)


def classic_request(subscription: Subscription, event: Event) -> tuple[str, str, bytes | None]:
    """(method, url, body) of an R4 rest-hook notification."""
    if subscription.mime is None or subscription.content == "empty":
        return "POST", subscription.endpoint, None
    url = f"{subscription.endpoint.rstrip('/')}/{event.reference}"
    if event.interaction == "delete" or event.body is None:
        return "DELETE", url, None
    return "PUT", url, event.body
