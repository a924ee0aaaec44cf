"""The operation registry: how `$operations` plug into the server.

An operation plugin is a module with `register(registry)`. The server finds plugins through the
`fhirlead.operations` entry-point group (fhirlead's own operations in `operations/` are registered the
same way, in pyproject.toml), so the core never imports a specific plugin and third parties can add
their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fhirlead.api.messages import FhirRequest, FhirResponse
    from fhirlead.server import Server

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fhirlead.operations"


@dataclass(frozen=True)
class OperationCall:
    """One invocation: the server, the request, and the type/id the operation was invoked on."""

    server: Server
    request: FhirRequest
    type_: str | None
    id_: str | None


@dataclass(frozen=True)
class Operation:
    """A named operation and where it may be invoked (https://hl7.org/fhir/R4/operations.html)."""

    name: str  # without the leading $
    handler: Callable[[OperationCall], Awaitable[FhirResponse]]
    system: bool = False
    type_level: bool = False
    instance: bool = False
    resource_types: frozenset[str] = frozenset()  # empty: any type
    affects_state: bool = False  # such operations may only be invoked with POST
    definition: dict[str, Any] | None = field(default=None, compare=False)  # its OperationDefinition
    # What a caller's access token must allow: `await authorize(policy, call)` raises FhirError(403) to
    # refuse. None: the default rule of `fhirlead.auth.enforce.Policy.authorize_operation` (deny unless
    # an unrestricted user/ or system/ scope covers the type).
    authorize: Callable[[Any, OperationCall], Awaitable[None]] | None = field(default=None, compare=False)

    def allowed_at(self, level: str, type_: str | None) -> bool:
        on_level = {"system": self.system, "type": self.type_level, "instance": self.instance}[level]
        return on_level and (level == "system" or not self.resource_types or type_ in self.resource_types)


class OperationRegistry:
    """The operations plugins add, and what else they need from the server: write observers (called in
    every unit of work that wrote, before it commits: `fhirlead.storage.observed`) and background
    workers (started and stopped with `fhirlead serve`). Both are factories taking the Server."""

    def __init__(self) -> None:
        self._by_name: dict[str, list[Operation]] = {}
        self.observers: list[Callable[[Any], Any]] = []  # Server -> WriteObserver
        self.workers: list[Callable[[Any], Any]] = []  # Server -> object with async start() and stop()

    def add_write_observer(self, factory: Callable[[Any], Any]) -> None:
        self.observers.append(factory)

    def add_worker(self, factory: Callable[[Any], Any]) -> None:
        self.workers.append(factory)

    def add(self, operation: Operation) -> None:
        self._by_name.setdefault(operation.name, []).append(operation)

    def find(self, name: str, level: str, type_: str | None) -> Operation | None:
        return next((op for op in self._by_name.get(name, []) if op.allowed_at(level, type_)), None)

    def known(self, name: str) -> bool:
        return name in self._by_name

    def all(self) -> list[Operation]:
        return [op for ops in self._by_name.values() for op in ops]

    @classmethod
    def discover(cls) -> OperationRegistry:
        """A registry filled by every installed plugin of the entry-point group."""
        registry = cls()
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            entry.load()(registry)
            log.info("loaded operation plugin %s", entry.name)
        return registry
