"""Server: the long-lived objects every request needs, built once at start-up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhirlead.audit import AuditTrail
from fhirlead.audit.writer import ProcessWriter
from fhirlead.auth.service import AuthServer
from fhirlead.plugins import OperationRegistry
from fhirlead.search import reindex
from fhirlead.search.extract import Extractor
from fhirlead.search.live import LiveSearch, ServerExtractor
from fhirlead.search.registry import SearchRegistry
from fhirlead.settings import Settings
from fhirlead.storage.factory import open_store
from fhirlead.storage.observed import ObservedStore
from fhirlead.storage.port import Store
from fhirlead.validation import Validator
from fhirlead.validation.live import LiveDefinitions

if TYPE_CHECKING:
    from fhirlead.validation.ahead import AheadValidation

log = logging.getLogger(__name__)


@dataclass
class Server:
    settings: Settings
    store: Store
    validator: Validator
    # The search parameters in force and the index extractor built from them: replaced together (by
    # `fhirlead.search.live.LiveSearch`) when SearchParameters written to the store change, so read
    # them from the server when needed instead of keeping them.
    search: SearchRegistry
    extractor: Extractor
    operations: OperationRegistry
    auth: AuthServer | None  # the SMART authorization server; None when authorization is off
    memo: dict[Any, Any] = field(default_factory=dict)  # per-server derived values (e.g. capabilities)
    # The audit trail (`fhirlead.audit.AuditTrail`): running when authorization is on, else None. The FHIR
    # endpoint records every interaction with `audit.rest(...)`, the auth endpoints sign-ins and token
    # events with `audit.authorization(kind=..., outcome=..., client_id=..., username=..., ...)`.
    audit: AuditTrail | None = None
    workers: list[Any] = field(default_factory=list)  # the plugins' background workers, once started
    live: LiveDefinitions | None = None  # the store's conformance resources, kept in force
    ahead: AheadValidation | None = None  # a worker process validating transactions ahead (`validate_ahead`)

    @classmethod
    async def start(cls, settings: Settings, store: Store | None = None) -> Server:
        """Open the store (unless one is given) and build validators, search and operations."""
        if store is None:
            store = open_store(settings.store)
        await store.open()
        search = SearchRegistry.layered(())  # R4 and profiles/; the store's own are laid over them below
        auth = AuthServer.build(store.records, settings) if settings.auth else None
        if auth is None:
            log.warning("AUTHORIZATION IS OFF: anyone who can reach this server can read and write every record")
        else:
            await auth.start()
        operations = OperationRegistry.discover()
        reindex.register(operations)  # SearchParameters written to the store: checked, existing data re-indexed
        validator = Validator.for_server()
        validator.profiles.require(settings.required_profiles)
        server = cls(settings, store, validator, search, Extractor(search), operations, auth)
        observed = server.store = ObservedStore(store, [factory(server) for factory in operations.observers])
        server.live = LiveDefinitions(store, validator, LiveSearch(server))
        await server.live.load()
        observed.committed.append(server.live.written)
        return server

    def validate_ahead(self) -> None:
        """Fork a worker process that validates transaction Bundles while this one writes others
        (fhirlead/validation/ahead.py). Before the audit writer and any connection: the fork copies them."""
        from fhirlead.validation.ahead import AheadValidation  # it builds on the transaction code, which needs this

        self.ahead = AheadValidation(self)

    async def start_workers(self) -> None:
        """Start the plugins' background workers (`fhirlead serve` does; tools that load or copy data
        leave the work their writes recorded to the server)."""
        if not self.settings.workers:
            log.warning("BACKGROUND WORKERS ARE OFF (FHIRLEAD_WORKERS=off): recorded jobs wait for a server")
            return
        if self.live is not None:
            await self.live.start()
        try:
            await reindex.catch_up(self)
        except Exception as error:  # e.g. a standalone mongod refuses units of work: serve all the same
            log.warning("stored SearchParameters not checked for re-indexing (%s)", type(error).__name__)
        for factory in self.operations.workers:
            worker = factory(self)
            await worker.start()
            self.workers.append(worker)

    async def start_audit(self) -> None:
        """Start recording requests as AuditEvents (when authorization is on): the HTTP app does this;
        tools that only load or copy data serve no requests and need no trail."""
        if self.auth is None:
            return
        if not self.settings.audit:
            log.warning("THE AUDIT TRAIL IS OFF (FHIRLEAD_AUDIT=off): requests are not recorded as AuditEvents")
            return
        in_child = self.settings.audit_writer == "process" and _openable(self.settings.store)
        writer = ProcessWriter(self.settings.store) if in_child else None
        self.audit = AuditTrail(self.store, ServerExtractor(self), writer=writer)
        await self.audit.start()

    async def stop(self) -> None:
        if self.ahead is not None:
            self.ahead.stop()
        for worker in reversed(self.workers):
            await worker.stop()
        self.workers.clear()
        if self.live is not None:
            await self.live.stop()
        if self.audit is not None:
            await self.audit.stop()  # writes what is still queued while the store is open
        if self.auth is not None:
            await self.auth.stop()
        await self.store.close()


def _openable(url: str) -> bool:
    """Whether another process can open the store from its URL (not an in-process test stand-in)."""
    return url.startswith(("sqlite:///", "mongodb://", "mongodb+srv://"))
