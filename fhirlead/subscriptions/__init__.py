"""Subscriptions: rest-hook notifications of changes, R4 and Subscriptions R5 Backport IG 1.1.0
(docs/subscriptions.md). `model` compiles a Subscription, `topics` reads SubscriptionTopics (Basic),
`matcher` decides criteria in memory, `events` records events in the writing commit, `delivery` sends
them, `notify` builds what is sent, `endpoints` guards where.

Registered as a plugin (pyproject.toml, `fhirlead.operations` entry points): the write observer and the
delivery worker share one `events.Subscriptions` per server.
"""

from __future__ import annotations

from typing import Any

from fhirlead.subscriptions.delivery import DeliveryWorker
from fhirlead.subscriptions.events import Subscriptions


def subscriptions_of(server: Any) -> Subscriptions:
    """The server's one Subscriptions (the set in force, shared by observer, worker and `$status`)."""
    found = server.memo.get(Subscriptions)
    if found is None:
        found = server.memo[Subscriptions] = Subscriptions(server)
    return found


def register(registry: Any) -> None:
    registry.add_write_observer(lambda server: subscriptions_of(server).observe)
    registry.add_worker(lambda server: DeliveryWorker(server, subscriptions_of(server)))
