"""Write observers: plugins that must record something in the same commit as the writes that caused it
(DESIGN §7: durable jobs "recorded in the store in the same commit as what caused them").

`ObservedStore` wraps the server's store. Every unit of work it opens remembers what was written (type,
id, resource, index entries); when the unit's body has finished, and before it commits, each observer
is called with the unit and those writes, so what it records (`UnitOfWork.put_record`, more writes)
commits or rolls back with them. Whatever path the writes took (REST, batch, transaction, `fhirlead
load`, an operation) makes no difference. After the commit, `committed` callbacks run (e.g. to wake
this process's background worker at once instead of at its next poll).

Observers run on every unit of work that wrote something: they must be quick when nothing concerns
them (one cheap read at most per resource).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fhirlead.search.entries import IndexEntries
from fhirlead.storage.port import ResourceVersion, Store, UnitOfWork


@dataclass(frozen=True, slots=True)
class Written:
    """One write of a unit of work: the resource as written (None for a delete) and its index entries."""

    type_: str
    id_: str
    resource: dict[str, Any] | None
    entries: IndexEntries | None


WriteObserver = Callable[[UnitOfWork, Sequence[Written]], Awaitable[None]]


class ObservedUnitOfWork:
    """A unit of work that notes each write; everything else is the wrapped unit's."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit
        self.written: list[Written] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._unit, name)

    async def write(self, type_: str, id_: str, resource: dict[str, Any] | None, entries: IndexEntries | None,
                    method: str, expected_version: int | None = None) -> ResourceVersion:
        version = await self._unit.write(type_, id_, resource, entries, method, expected_version)
        self.written.append(Written(type_, id_, resource, entries))
        return version

    async def create_many(self, items: list[Any], method: str) -> list[ResourceVersion]:
        versions = await self._unit.create_many(items, method)
        self.written += [Written(type_, id_, resource, entries) for type_, id_, resource, entries in items]
        return versions


    async def change_group_members(self, id_: str, head: dict[str, Any], head_entries: IndexEntries | None,
                                   *args: Any, **kwargs: Any) -> ResourceVersion:
        version = await self._unit.change_group_members(id_, head, head_entries, *args, **kwargs)
        self.written.append(Written("Group", id_, head, head_entries))  # the head: members changed one by one
        return version


class ObservedStore:
    """The store, with observers called inside each unit of work that wrote (see the module doc)."""

    def __init__(self, store: Store, observers: Sequence[WriteObserver]) -> None:
        self._store = store
        self.observers = list(observers)
        self.committed: list[Callable[[Sequence[Written]], None]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    @property
    def wrapped(self) -> Store:
        return self._store

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        async with self._store.unit_of_work() as unit:
            observed = ObservedUnitOfWork(unit)
            yield observed  # type: ignore[misc]
            for observer in self.observers if observed.written else ():
                await observer(unit, observed.written)
        for callback in self.committed if observed.written else ():
            callback(observed.written)
