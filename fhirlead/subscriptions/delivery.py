"""Delivering recorded events: at least once, in order per subscription, with retries and backoff,
surviving restarts, shared by every server process on one store (DESIGN §6, §7).

One worker per `fhirlead serve`. A subscription is served by one process at a time, under a lease record
(`subscription-lease`, expiring after LEASE_SECONDS: a holder that died is replaced). Serving it:
- `requested`: a topic-based subscription gets a `handshake` notification; when the endpoint answers
  2xx (a classic one at once), the server writes the Subscription `active`.
- `active`: its events are read in key (commit) order, numbered on from the count in its state record
  (`events-since-subscription-start`), sent (`max_count` per notification for topic-based ones), and
  deleted once the endpoint answered 2xx; the state's count moves on in the same step. A stop between
  sending and deleting sends the same events, with the same numbers, again: at least once.
- A failure (not 2xx, a timeout, a refused address) leaves the events in place and retries after
  `subscription_retry_seconds`, doubling to at most MAX_BACKOFF; after `subscription_max_attempts`
  failures in a row the server writes the Subscription `error` (with `Subscription.error`) and stops
  (no events are recorded for it until a client sets it `requested` again).
- A topic-based subscription with a heartbeat period gets a `heartbeat` when nothing was sent for that long.

Writes never wait on any of this: the worker runs beside them, woken at once by a commit that recorded
events in this process and every POLL_SECONDS for other processes' events, heartbeats and retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import replace
from typing import Any

import httpx

from fhirlead import fhirjson
from fhirlead.jobs import finish
from fhirlead.storage.port import VersionConflict
from fhirlead.storage.records import RecordConflict
from fhirlead.subscriptions import endpoints
from fhirlead.subscriptions.events import STATE, Subscriptions, events_kind
from fhirlead.subscriptions.model import Subscription
from fhirlead.subscriptions.notify import Event, classic_request, notification_bundle

log = logging.getLogger(__name__)

LEASE = "subscription-lease"
LEASE_SECONDS = 120.0
POLL_SECONDS = 2.0
MAX_BACKOFF = 300.0
READ_AHEAD = 100  # events read per round for one subscription
CONCURRENT = 8  # subscriptions served at once (a slow endpoint holds only its own)


class DeliveryFailed(Exception):
    """The endpoint did not take the notification (the message says why, without PHI)."""


class DeliveryWorker:
    def __init__(self, server: Any, subscriptions: Subscriptions) -> None:
        self.server, self.subscriptions = server, subscriptions
        self.owner = f"{os.getpid()}-{id(self)}"
        self.wake = asyncio.Event()
        self.stopping = False
        self.task: asyncio.Task[None] | None = None
        self.client: httpx.AsyncClient | None = None
        self._slots = asyncio.Semaphore(CONCURRENT)
        self._seen: set[str] = set()  # the subscriptions in force at the last full round

    @property
    def base(self) -> str:
        settings = self.server.settings
        return settings.base_url.rstrip("/") or f"http://{settings.host}:{settings.port}/fhir"

    async def start(self) -> None:
        self.client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        store = self.server.store
        if hasattr(store, "committed"):
            store.committed.append(lambda _written: self.wake.set() if self.subscriptions.touched else None)
        self.task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        self.stopping = True
        self.wake.set()
        await finish(self.task)
        if self.client is not None:
            await self.client.aclose()

    def again(self, subscription_id: str) -> None:
        """Serve this subscription in the next round."""
        self.subscriptions.touched.add(subscription_id)
        self.wake.set()

    async def run(self) -> None:
        last_full = 0.0
        while not self.stopping:
            full = time.monotonic() - last_full >= POLL_SECONDS
            try:
                await self.run_once(full)
            except Exception as error:  # a store hiccup must not end the loop; events stay recorded
                log.warning("subscription delivery round failed (%s); retrying", type(error).__name__)
            if full:
                last_full = time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await self.wake.wait()
            self.wake.clear()

    async def run_once(self, full: bool = True) -> None:
        """One round: over every subscription in force (as of the store's current generation), or, woken
        by this process's commits between full rounds, over those that got events."""
        touched = set(self.subscriptions.touched)
        self.subscriptions.touched.clear()
        current = await self.subscriptions.in_force(await self.subscriptions.generation_outside())
        chosen = current.all if full else [s for s in current.all if s.id_ in touched]
        await asyncio.gather(*(self._serve(subscription) for subscription in chosen))
        if full:
            ids = {subscription.id_ for subscription in current.all}
            for gone in self._seen - ids:
                await self._purge_if_ended(gone)
            self._seen = ids

    async def _purge_if_ended(self, subscription_id: str) -> None:
        """A Subscription deleted or set `off` will never be served again: drop its waiting events and its
        state (one in `error` keeps them, for when it is requested again)."""
        version = await self.server.store.read("Subscription", subscription_id)
        status = fhirjson.loads(version.body).get("status") if version is not None and version.body else None
        if status not in (None, "off"):
            return
        records = self.server.store.records
        while waiting := await records.list(events_kind(subscription_id), limit=READ_AHEAD):
            for record in waiting:
                await records.delete(record.kind, record.key)
        await records.delete(STATE, subscription_id)

    # -- one subscription ---------------------------------------------------------------------------

    async def _serve(self, subscription: Subscription) -> None:
        async with self._slots:
            if self.stopping:
                return
            records = self.server.store.records
            if not await self._work_for(subscription, limit=1):
                return
            try:
                await records.put(LEASE, subscription.id_, {"owner": self.owner},
                                  expires=time.time() + LEASE_SECONDS, expected_rev=0)
            except RecordConflict:
                return  # another process serves it
            try:  # read again under the lease: another process may have sent these events meanwhile,
                # or changed the Subscription (activated it): then this process's set is stale for it
                current = await self.server.store.read("Subscription", subscription.id_)
                if current is None or current.version != subscription.version:
                    return
                work = await self._work_for(subscription, limit=READ_AHEAD)
                if work:
                    await self._serve_leased(subscription, *work)
            finally:
                await records.delete(LEASE, subscription.id_)

    async def _work_for(self, subscription: Subscription, limit: int
                        ) -> tuple[dict[str, Any], list[Any], bool] | None:
        """(state, pending events, heartbeat due) when the subscription has something to do now."""
        records = self.server.store.records
        state_record = await records.get(STATE, subscription.id_)
        state = dict(state_record.doc) if state_record else {"events": 0}
        if state.get("retry_at", 0) > time.time():
            return None
        pending = await records.list(events_kind(subscription.id_), limit=limit)
        heartbeat_due = (subscription.status == "active" and subscription.heartbeat_seconds is not None
                         and time.time() - state.get("last_sent", state.get("since", 0))
                         >= subscription.heartbeat_seconds)
        if subscription.status == "active" and not pending and not heartbeat_due:
            return None
        return state, pending, heartbeat_due

    async def _serve_leased(self, subscription: Subscription, state: dict[str, Any], pending: list[Any],
                            heartbeat_due: bool) -> None:
        records = self.server.store.records
        try:
            if subscription.status == "requested":
                if subscription.topic is not None:
                    await self._post(subscription, notification_bundle(
                        subscription, self.base, "handshake", state["events"]))
                await self._set_status(subscription, "active", None)
                state.update(failures=0, retry_at=0, last_sent=time.time(), since=time.time())
                await records.put(STATE, subscription.id_, state)
                return
            if not pending and heartbeat_due:
                await self._post(subscription, notification_bundle(subscription, self.base, "heartbeat",
                                                                  state["events"]))
                state.update(last_sent=time.time())
                await records.put(STATE, subscription.id_, state)
                return
            step = subscription.max_count if subscription.topic is not None else 1
            for start in range(0, len(pending), step):
                if self.stopping:
                    return
                chunk = await self._events(subscription, pending[start:start + step], state["events"])
                await self._send(subscription, chunk, state["events"] + len(chunk))
                state.update(events=state["events"] + len(chunk), failures=0, retry_at=0, last_sent=time.time())
                await records.put(STATE, subscription.id_, state)
                for event in chunk:
                    await records.delete(events_kind(subscription.id_), event.key)
            if len(pending) == READ_AHEAD:
                self.again(subscription.id_)
        except (DeliveryFailed, endpoints.EndpointRefused) as failure:
            await self._failed(subscription, state, str(failure))

    async def _events(self, subscription: Subscription, chunk: list[Any], numbered: int) -> list[Event]:
        events = []
        for offset, record in enumerate(chunk, start=1):
            doc = record.doc
            body = None
            if subscription.content == "full-resource" and doc["interaction"] != "delete" and doc.get("version"):
                version = await self.server.store.vread(doc["type"], doc["id"], int(doc["version"]))
                body = version.body if version is not None else None
            events.append(Event(record.key, numbered + offset, doc["type"], doc["id"], doc.get("version"),
                                doc["interaction"], float(doc["at"]), body))
        return events

    async def _send(self, subscription: Subscription, events: list[Event], total: int) -> None:
        if subscription.topic is not None:
            await self._post(subscription, notification_bundle(subscription, self.base, "event-notification",
                                                               total, events))
            return
        for event in events:
            method, url, body = classic_request(subscription, event)
            await self._request(subscription, method, url, body)

    async def _post(self, subscription: Subscription, body: bytes) -> None:
        await self._request(subscription, "POST", subscription.endpoint, body)

    async def _request(self, subscription: Subscription, method: str, url: str, body: bytes | None) -> None:
        await endpoints.resolve_allowed(url, self.server.settings.subscription_endpoints)
        headers = dict(subscription.headers)
        if body is not None:
            headers["Content-Type"] = "application/fhir+json"
        assert self.client is not None
        try:
            response = await self.client.request(method, url, content=body, headers=headers,
                                                 timeout=subscription.timeout_seconds)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{type(error).__name__} from the endpoint") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryFailed(f"the endpoint answered HTTP {response.status_code}")

    async def _failed(self, subscription: Subscription, state: dict[str, Any], why: str) -> None:
        settings = self.server.settings
        failures = int(state.get("failures", 0)) + 1
        delay = min(settings.subscription_retry_seconds * 2 ** (failures - 1), MAX_BACKOFF)
        state.update(failures=failures, retry_at=time.time() + delay, last_error=why)
        await self.server.store.records.put(STATE, subscription.id_, state)
        log.info("Subscription/%s: delivery failed (%s), attempt %d", subscription.id_, why, failures)
        if failures >= settings.subscription_max_attempts:
            await self._set_status(subscription, "error", f"{failures} deliveries in a row failed; last: {why}")
        else:
            asyncio.get_running_loop().call_later(delay, self.again, subscription.id_)

    async def _set_status(self, subscription: Subscription, status: str, error: str | None) -> None:
        """A new version of the Subscription with `status` (unless a client changed it meanwhile)."""
        try:
            async with self.server.store.unit_of_work() as uow:
                current = await uow.read("Subscription", subscription.id_)
                if current is None or current.body is None or current.version != subscription.version:
                    return  # deleted or changed since: the new version is served on its own terms
                resource = fhirjson.loads(current.body)
                resource["status"] = status
                resource.pop("error", None)
                if error:
                    resource["error"] = error
                await uow.write("Subscription", subscription.id_, resource, self.server.extractor.extract(resource),
                                "PUT", expected_version=current.version)
        except VersionConflict:
            return
        self.subscriptions.current = replace(self.subscriptions.current, generation=None)
