"""Recording notification events in the same commit as the writes that cause them (DESIGN §7).

A write observer (`fhirlead.storage.observed`) runs inside every unit of work that wrote. For each write
it asks the subscriptions in force on that type whether they want it (in memory: `matcher`, topic
triggers) and records one event per (subscription, write) as a record of kind `subscription-events:<id>`,
keyed so that keys sort in commit order within a process (nanoseconds, then a per-process sequence).
The records commit with the write or not at all; the delivery worker (`delivery`) numbers and sends them.

The subscriptions in force are kept per process (`SubscriptionSet`) and rebuilt when a record
(`subscription-generation`) that every Subscription or topic write changes in its own commit differs
from the one they were built at. A process reads that record, and rebuilds the set, inside the unit of
work (never through the store's records connection: on SQLite that waits for the write lock the unit
holds) after one that changed a Subscription or topic, and otherwise at most once every
GENERATION_SECONDS: a change made through this process is in force from its next write, one made through
another process on the same store (DESIGN §6) within a second (a read per write cost 0.1 ms, a third of
the observer's time). A Subscription written with status requested or active is compiled first: one the server cannot
honour fails the write (`model.compile_subscription`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import fhirpathpy

from fhirlead import fhirjson
from fhirlead.errors import FhirError
from fhirlead.search.collect import all_matches
from fhirlead.search.entries import IndexEntries
from fhirlead.search.parse import parse_search
from fhirlead.search.query import Clause, ReferenceMatch, TokenMatch
from fhirlead.storage.observed import Written
from fhirlead.storage.port import UnitOfWork
from fhirlead.subscriptions.matcher import matches
from fhirlead.subscriptions.model import LIVE, Subscription, compile_subscription
from fhirlead.subscriptions.topics import Topic, Trigger, built_in_topics, is_topic, topic_of

log = logging.getLogger(__name__)

GENERATION = "subscription-generation"  # record key "current": changes with every Subscription/topic write
STATE = "subscription-state"  # per subscription: events numbered so far, failures, next try, last sent
EVENTS = "subscription-events:"  # + subscription id: the events waiting for delivery
GENERATION_SECONDS = 1.0  # how stale this process's set may be for changes made by another process
_sequence = itertools.count()


def events_kind(subscription_id: str) -> str:
    return EVENTS + subscription_id


def event_key() -> str:
    """Sorts in commit order within one process (units of work commit one at a time)."""
    return f"{time.time_ns():020d}-{os.getpid():08d}-{next(_sequence):012d}"


def index_keys(subscription: Subscription) -> list[tuple[str, str, str]] | None:
    """Values one of which a resource must have to match a classic subscription's criteria: the values of
    its first clause that names only local references by id or codes (`patient=Patient/1`,
    `code=4548-4,2089-1`); None when no clause does (the subscription is tried on every write)."""
    if subscription.topic is not None:
        return None
    for clause in subscription.filters[0].where:
        keys = []
        for p in () if clause.negate else clause.any_of:
            if isinstance(p, ReferenceMatch) and p.id is not None and p.url is None:
                keys.append(("reference", p.key, p.id))
            elif isinstance(p, TokenMatch) and p.code is not None:
                keys.append(("token", p.key, p.code))
            else:
                break
        else:
            if keys:
                return keys
    return None


def entry_keys(entries: IndexEntries) -> list[tuple[str, str, str]]:
    return [("reference", key, id_) for key, _t, id_, _u, _v in entries.reference] + \
        [("token", key, code) for key, _s, code in entries.token]


@dataclass
class SubscriptionSet:
    """The subscriptions in force and the topics they may name, per resource type: those with an index
    key (`index_keys`) found by the written resource's values, the others tried on every write."""

    generation: str | None = None
    topics: dict[str, Topic] = field(default_factory=dict)
    tried: dict[str, list[Subscription]] = field(default_factory=dict)
    indexed: dict[str, dict[tuple[str, str, str], list[Subscription]]] = field(default_factory=dict)
    all: list[Subscription] = field(default_factory=list)

    def candidates(self, write: Written) -> list[Subscription]:
        found = list(self.tried.get(write.type_, ()))
        index = self.indexed.get(write.type_)
        if index and write.entries is not None:
            seen = {id(s) for s in found}
            for key in entry_keys(write.entries):
                for subscription in index.get(key, ()):
                    if id(subscription) not in seen:
                        seen.add(id(subscription))
                        found.append(subscription)
        return found


class Subscriptions:
    """One per server: the set in force, the observer that records events, and the wake-up hint."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.current = SubscriptionSet()
        self.touched: set[str] = set()  # subscriptions that got events in this process (delivery hint)
        self._compiled: dict[tuple[str, int], Subscription] = {}  # by (id, version), kept between loads
        self._checked, self._recheck = 0.0, True  # when the generation was last read; read it next time
        self._queries: dict[tuple[str, str], tuple[Clause, ...]] = {}
        self._fhirpath: dict[str, Any] = {}

    @property
    def policy(self) -> str:
        return self.server.settings.subscription_endpoints

    # -- the set in force ------------------------------------------------------------------------

    async def topics(self, source: Any = None) -> dict[str, Topic]:
        """Built-in topics and the Basic topics in the store (read through `source`: a unit of work or,
        by default, the store)."""
        found = built_in_topics()
        stored = await all_matches(source or self.server.store, self.server.search, "Basic",
                                   [("code", "http://hl7.org/fhir/fhir-types|SubscriptionTopic")])
        for version in stored:
            topic = topic_of(fhirjson.loads(version.body or b"{}"))
            if topic is not None:
                found.setdefault(topic.url, topic)
        return found

    async def load(self, generation: str | None, source: Any = None) -> SubscriptionSet:
        topics = await self.topics(source)
        loaded: list[Subscription] = []
        compiled: dict[tuple[str, int], Subscription] = {}
        for version in await all_matches(source or self.server.store, self.server.search, "Subscription",
                                         [("status", ",".join(LIVE))]):
            key = (version.id, version.version)
            known = self._compiled.get(key)
            if known is not None and (known.topic is None or topics.get(known.topic.url) == known.topic):
                loaded.append(compiled.setdefault(key, known))  # unchanged since the last load: no recompiling
                continue
            try:
                compiled[key] = compile_subscription(fhirjson.loads(version.body or b"{}"), self.server.search,
                                                     topics, self.policy)
                loaded.append(compiled[key])
            except FhirError as error:  # e.g. its topic was retired since: it records nothing
                log.warning("Subscription/%s is not in force: %s", version.id, error.issues[0].diagnostics)
        self._compiled = compiled
        tried: dict[str, list[Subscription]] = {}
        indexed: dict[str, dict[tuple[str, str, str], list[Subscription]]] = {}
        for subscription in loaded:
            keys = index_keys(subscription)
            for type_ in subscription.types:
                if keys is None:
                    tried.setdefault(type_, []).append(subscription)
                for key in keys or ():
                    indexed.setdefault(type_, {}).setdefault(key, []).append(subscription)
        self.current = SubscriptionSet(generation, topics, tried, indexed, loaded)
        return self.current

    async def in_force(self, generation: str | None, source: Any = None) -> SubscriptionSet:
        if generation != self.current.generation or (generation is None and not self.current.topics):
            return await self.load(generation, source)
        return self.current

    async def generation_outside(self) -> str | None:
        record = await self.server.store.records.get(GENERATION, "current")
        return record.doc.get("id") if record else None

    # -- the observer ----------------------------------------------------------------------------

    async def observe(self, uow: UnitOfWork, written: Sequence[Written]) -> None:
        changed = False
        for write in written:
            if write.type_ == "Subscription":
                changed = True
                await self._admit(uow, write)
            elif write.type_ == "Basic" and (write.resource is None or is_topic(write.resource)):
                changed = True
        subscriptions = self.current
        if self._recheck or time.monotonic() - self._checked >= GENERATION_SECONDS:
            # read in this unit of work, and the set loaded through it too: units that commit together (the
            # SQLite store's group commit) see each other's writes before any reader outside does
            record = await uow.get_record(GENERATION, "current")
            self._checked, self._recheck = time.monotonic(), False
            subscriptions = await self.in_force(record.doc.get("id") if record else None, uow)
        if changed:  # in force from this commit on: here from the next unit of work, elsewhere within a second
            await uow.put_record(GENERATION, "current", {"id": uuid.uuid4().hex})
            self._recheck = True
        if not subscriptions.all:
            return
        for write in written:
            for subscription in subscriptions.candidates(write):
                event = await self._event(subscription, write)
                if event is not None:
                    await uow.put_record(events_kind(subscription.id_), event_key(), event)
                    self.touched.add(subscription.id_)

    async def _admit(self, uow: UnitOfWork, write: Written) -> None:
        """A Subscription asking to be in force must be one the server can honour; one (re)requested
        starts its delivery afresh (failures forgotten, handshake again)."""
        resource = write.resource
        if resource is None or resource.get("status") not in LIVE:
            return
        topics = self.current.topics or await self.topics(uow)
        compile_subscription(resource, self.server.search, topics, self.policy)
        if resource.get("status") == "requested":
            state = await uow.get_record(STATE, write.id_)
            kept = {"events": state.doc.get("events", 0)} if state else {"events": 0}
            await uow.put_record(STATE, write.id_, kept)

    # -- does a subscription want this write? ------------------------------------------------------

    async def _event(self, subscription: Subscription, write: Written) -> dict[str, Any] | None:
        resource = write.resource
        version = str((resource or {}).get("meta", {}).get("versionId") or "") or None
        interaction = "delete" if resource is None else "create" if version == "1" else "update"
        base = self.server.settings.base_url.rstrip("/")
        if subscription.topic is None:
            if write.entries is None or not matches(subscription.filters[0].where, write.id_, write.entries, base):
                return None
        else:
            previous = None
            for trigger in subscription.topic.triggers:
                if trigger.type_ != write.type_ or (trigger.interactions and interaction not in trigger.interactions):
                    continue
                needs_previous = trigger.previous or "%previous" in (trigger.fhirpath or "")
                if needs_previous or interaction == "delete":
                    previous = previous or await self._previous(write, version)
                if self._triggered(trigger, interaction, write, previous, base):
                    break
            else:
                return None
            entries = write.entries if write.entries is not None else (previous or (None, None))[1]
            for one in subscription.filters:
                if one.type_ == write.type_ and (entries is None or not matches(one.where, write.id_, entries, base)):
                    return None
        return {"type": write.type_, "id": write.id_, "version": version, "interaction": interaction,
                "at": time.time()}

    def _triggered(self, trigger: Trigger, interaction: str, write: Written,
                   previous: tuple[dict[str, Any], IndexEntries] | None, base: str) -> bool:
        results = []
        if trigger.current is not None:
            if interaction == "delete":
                results.append(trigger.result_for_delete == "test-passes")
            else:
                results.append(write.entries is not None and matches(
                    self._query(write.type_, trigger.current), write.id_, write.entries, base))
        if trigger.previous is not None:
            if interaction == "create":
                results.append(trigger.result_for_create == "test-passes")
            else:
                results.append(previous is not None and matches(
                    self._query(write.type_, trigger.previous), write.id_, previous[1], base))
        if results and not (all(results) if trigger.require_both else any(results)):
            return False
        if trigger.fhirpath:
            context = {"current": write.resource, "previous": previous[0] if previous else None}
            try:
                outcome = self._compiled(trigger.fhirpath)(write.resource or (previous or ({},))[0], context)
            except Exception:  # a topic's expression failing on one resource triggers nothing
                return False
            return outcome == [True]
        return True

    async def _previous(self, write: Written, version: str | None) -> tuple[dict[str, Any], IndexEntries] | None:
        """The version before this write (for `previous` criteria and deletes), with its index entries."""
        store = self.server.store
        if version is None:  # a delete, not yet committed: the newest version outside this unit of work
            before = await store.read(write.type_, write.id_)
        elif int(version) > 1:
            before = await store.vread(write.type_, write.id_, int(version) - 1)
        else:
            return None
        if before is None or before.body is None:
            return None
        resource = fhirjson.loads(before.body)
        return resource, self.server.extractor.extract(resource)

    def _query(self, type_: str, text: str) -> tuple[Clause, ...]:
        key = (type_, text)
        if key not in self._queries:
            self._queries[key] = parse_search(self.server.search, (type_,), parse_qsl(text.lstrip("?"))).query.where
        return self._queries[key]

    def _compiled(self, expression: str) -> Any:
        if expression not in self._fhirpath:
            self._fhirpath[expression] = fhirpathpy.compile(expression)
        return self._fhirpath[expression]
