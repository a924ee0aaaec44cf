"""AuditTrail: records AuditEvents off the request path (R4 AuditEvent, IHE BALP).

Recording is a synchronous, non-blocking call (`rest`, `authorization`): the event is built and put
on an in-memory asyncio queue; a background task writes what is queued in batches, in one unit of
work per batch, through the store's own bulk write (`UnitOfWork.create_many`) with server-assigned
ids. When the queue is full (the writer cannot follow), an event waits beyond it, never dropped, and
the drain moves what waits into the queue as room frees: still written in batches (a write per event
cost the server more than the request itself, so the backlog would only grow). A failed write is
logged (counts and the error's class, never content) and retried once, event by event, so one bad
event cannot lose its batch. Writing AuditEvents goes straight to the store, so it
is never itself audited. `stop()` writes everything still queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from fhirlead.audit.event import Caller, authorization_event, now
from fhirlead.audit.exchange import Exchange
from fhirlead.audit.exchange import audit_event as rest_audit_event
from fhirlead.audit.writer import InlineWriter, ProcessWriter, WriterFailed

log = logging.getLogger(__name__)

# An event, or (for REST interactions) what builds it: the request path only takes the facts down.
Pending = dict[str, Any] | Callable[[], dict[str, Any]]

CAPACITY = 10_000
BATCH = 500
RETRY_DELAY = 0.05  # seconds before the one retry
FULL_WARNING_SECONDS = 60.0  # a full queue is logged at most this often


class AuditTrail:
    """The server's audit trail. `store` is the server's store, `extractor` its index extractor."""

    def __init__(self, store: Any, extractor: Any, *, capacity: int = CAPACITY, batch: int = BATCH,
                 writer: InlineWriter | ProcessWriter | None = None) -> None:
        self._store = store
        self._extractor = extractor
        self._writer: InlineWriter | ProcessWriter = writer or InlineWriter(store, extractor)
        self._batch = batch
        self._queue: asyncio.Queue[Pending] = asyncio.Queue(capacity)
        self._task: asyncio.Task[None] | None = None
        self._backlog: list[Pending] = []  # events recorded while the queue was full, oldest first
        self._warned = -FULL_WARNING_SECONDS  # when the full queue was last logged (monotonic seconds)
        self.written = 0  # events stored so far
        self.lost = 0  # events that could not be stored after the retry

    # -- life cycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            try:
                await self._writer.start()
            except WriterFailed as error:
                log.warning("%s: audit events are written in the server process instead", error)
                self._writer = InlineWriter(self._store, self._extractor)
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="fhirlead-audit-trail")

    async def flush(self) -> None:
        """Return once every event recorded so far has been written (or given up on)."""
        if self._task is not None:
            await self._queue.join()  # the drain refills the queue from the backlog before it is done

    async def stop(self) -> None:
        """Write everything queued, then end the background writer (before the store closes)."""
        if self._task is None:
            return
        await self.flush()
        task, self._task = self._task, None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await self._writer.stop()

    @property
    def running(self) -> bool:
        return self._task is not None

    # -- recording (synchronous, never awaits the store, never raises) ------------------------------

    def rest(
        self,
        *,
        method: str,
        segments: list[str] | tuple[str, ...],
        status: int,
        request: Any = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        address: str | None = None,
    ) -> None:
        """Record one FHIR REST interaction (read, vread, history, search, create, update, patch, delete,
        batch/transaction, operation, export), successful or not.

        `request` is the `FhirRequest` (None when the request could not even be read: its parameters,
        its base and what its token granted are taken from it), `headers` and `body` those of the answer
        (`Location` and `ETag` are read; a small resource body is parsed for its patient), `address` the
        caller's network address. Header values of the request (the bearer token) are never looked at.
        """
        try:
            grant = getattr(getattr(request, "access", None), "grant", None)
            answer = headers if hasattr(headers, "getlist") else {  # Starlette's headers ignore case
                key.lower(): value for key, value in (headers or {}).items()}
            parsed = getattr(request, "_parsed", None)  # a batch/transaction body the handler already parsed
            exchange = Exchange(
                method=method.upper(),
                segments=tuple(segments),
                status=status,
                params=tuple(getattr(request, "params", None) or ()),
                location=answer.get("location"),
                etag=answer.get("etag"),
                body=body,
                bundle_type=parsed.get("type") if isinstance(parsed, dict) else None,
                token_patient=getattr(grant, "patient", None),
            )
            # Only the facts are taken here; the event is built by the writer, off the request path.
            self._record(functools.partial(rest_audit_event, exchange, _caller(grant, address), now()))
        except Exception as error:  # auditing must never break the request
            log.error("could not record an audit event for a %s request (%s)", method, type(error).__name__)

    def authorization(
        self,
        *,
        kind: str,
        outcome: bool | str,
        client_id: str | None = None,
        username: str | None = None,
        fhir_user: str | None = None,
        address: str | None = None,
        detail: str | None = None,
    ) -> None:
        """Record an authorization event (BALP: DCM 110114 "User Authentication").

        - `kind`: "login" (a sign-in; DCM 110122), "logout" (DCM 110123), "token-issued",
          "token-refused" or "token-revoked" (http://fhirlead.org/CodeSystem/authorization-event).
        - `outcome`: True (success) or False (failure), or an R4 outcome code "0", "4", "8".
        - `client_id`: the OAuth client concerned; `username`: the user's name (for a failed sign-in, the
          name that was tried); `fhir_user`: the user's FHIR resource, e.g. "Practitioner/123";
          `address`: the caller's network address.
        - `detail`: a short reason, e.g. an OAuth error code ("invalid_grant"); kept in outcomeDesc of a
          failure (200 characters at most).

        Never pass a token, password, client secret, code or assertion in any of these. Synchronous and
        non-blocking; never raises.
        """
        try:
            success = outcome == "0" if isinstance(outcome, str) else bool(outcome)
            caller = Caller(client_id=client_id or None, username=username or None, fhir_user=fhir_user or None,
                            address=address or None)
            event = authorization_event(kind=kind, success=success, caller=caller, detail=detail)
            if isinstance(outcome, str) and outcome in ("4", "8", "12"):
                event["outcome"] = outcome
            self._record(event)
        except Exception as error:
            log.error("could not record an authorization audit event (%s)", type(error).__name__)

    def _record(self, event: Pending) -> None:
        if self._task is None:
            log.error("the audit trail is not running: an audit event was not recorded")
            self.lost += 1
            return
        if self._backlog:  # behind the ones already waiting, in order
            self._backlog.append(event)
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:  # never drop: it waits beyond the queue
            if time.monotonic() - self._warned > FULL_WARNING_SECONDS:
                self._warned = time.monotonic()
                log.warning("the audit queue is full (%d events): the audit writer cannot follow, events wait "
                            "beyond the queue", self._queue.maxsize)
            self._backlog.append(event)

    # -- writing ----------------------------------------------------------------------------------

    async def _drain(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except Exception as error:  # _write handles its own failures; this is a last resort
                log.error("audit writer failed on %d events (%s)", len(batch), type(error).__name__)
            finally:
                self._refill()  # before task_done, so that flush() waits for the backlog too
                for _ in batch:
                    self._queue.task_done()

    def _refill(self) -> None:
        """Move what waits beyond the queue into the room the last batch freed."""
        room = self._queue.maxsize - self._queue.qsize()
        if self._backlog and room > 0:
            for event in self._backlog[:room]:
                self._queue.put_nowait(event)
            del self._backlog[:room]

    async def _write(self, events: list[Pending]) -> None:
        """Store `events` in one unit of work; on failure, retry once, each event on its own."""
        try:
            await self._store_all(events)
            self.written += len(events)
            return
        except Exception as error:
            log.warning("writing %d audit events failed (%s); retrying once", len(events), type(error).__name__)
        await asyncio.sleep(RETRY_DELAY)
        failures: dict[str, int] = {}
        for event in events:
            try:
                await self._store_all([event])
                self.written += 1
            except Exception as error:
                failures[type(error).__name__] = failures.get(type(error).__name__, 0) + 1
        if failures:
            self.lost += sum(failures.values())
            log.error("%d audit events could not be written after a retry (%s)", sum(failures.values()),
                      ", ".join(sorted(failures)))

    async def _store_all(self, events: list[Pending]) -> None:
        try:
            await self._writer.write(events)
        except WriterFailed as error:
            if not isinstance(self._writer, ProcessWriter) or self._writer.alive:
                raise
            log.error("%s: audit events are written in the server process from now on", error)
            self._writer = InlineWriter(self._store, self._extractor)
            await self._writer.write(events)

def _caller(grant: Any, address: str | None) -> Caller:
    """Who called, from the token's grant (None: no or an invalid token). A system token's subject is its
    client: then there is no user."""
    if grant is None:
        return Caller(address=address)
    subject = getattr(grant, "subject", None)
    username = subject if subject and subject != grant.client_id else None
    return Caller(client_id=grant.client_id, username=username, fhir_user=getattr(grant, "fhir_user", None),
                  address=address)
