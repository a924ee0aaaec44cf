"""Measures from the store: a Measure, the Libraries it depends on and the ValueSets they name, gathered
by canonical URL and compiled once per process.

Measure content is ordinary data (PUT, POSTed, `fhirlead load`ed), so a compiled measure is a cache: it is
kept while nothing of type Measure, Library or ValueSet has been written since it was built, which the
newest history entry of each of those types tells in three cheap reads (a write in another process
sharing the store counts too: DESIGN §6). Any such write, delete included, rebuilds on next use.

Libraries are found from `Measure.library` (canonical `url|version`) and then by each ELM include's name
and version (`Library?name=`), the way `fhirlead.cql.library` resolves includes; ValueSets by the
canonical URL each library declares (`ValueSet?url=`). A ValueSet that is not in the store stays
unavailable: a retrieve that needs it fails with a message naming it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fhirlead import fhirjson
from fhirlead.cql.errors import CqlError
from fhirlead.cql.library import ElmLibrary, elm_from_library_resource
from fhirlead.errors import FhirError, Issue, log_unexpected, not_found
from fhirlead.measure.bundle import MeasureBundle, MeasureBundleError
from fhirlead.measure.definition import MeasureDefinitionError
from fhirlead.measure.evaluate import MeasureEvaluator
from fhirlead.search.collect import all_matches
from fhirlead.storage.port import ResourceVersion, Store

log = logging.getLogger(__name__)
CONTENT_TYPES = ("Measure", "Library", "ValueSet")
MAX_CACHED = 64  # compiled measures kept per process


@dataclass(frozen=True)
class CompiledMeasure:
    """A Measure ready to evaluate, and the store version it was read at."""

    version: ResourceVersion
    resource: dict[str, Any]
    evaluator: MeasureEvaluator


class MeasureRepository:
    """Per server: compiled measures, valid while the store's measure content is unchanged."""

    def __init__(self, store: Store, search: Callable[[], Any]) -> None:
        """`search` gives the search registry in force (the server's changes with its SearchParameters)."""
        self._store, self._search = store, search
        self._cache: dict[str, CompiledMeasure] = {}
        self._fingerprint: tuple[Any, ...] | None = None

    async def by_id(self, id_: str) -> CompiledMeasure:
        version = await self._store.read("Measure", id_)
        if version is None or version.body is None:
            raise not_found(f"Measure/{id_} is not known")
        return await self._compiled(version)

    async def by_canonical(self, canonical: str, parameter: str = "measure") -> CompiledMeasure:
        """The Measure with this canonical URL (`url|version`: that version; else the newest written)."""
        url, _, wanted = canonical.partition("|")
        found = await self.find("Measure", [("url", url)] + ([("version", wanted)] if wanted else []))
        found = [v for v in found if _url_of(v) == url]
        if not found:
            raise FhirError(404, [Issue("not-found", f"no Measure has the canonical URL {canonical}",
                                        expression=(parameter,))])
        return await self._compiled(max(found, key=lambda v: v.last_updated))

    async def find(self, type_: str, params: list[tuple[str, str]]) -> list[ResourceVersion]:
        return await all_matches(self._store, self._search(), type_, params)

    async def _compiled(self, version: ResourceVersion) -> CompiledMeasure:
        fingerprint = await self._content_fingerprint()
        if fingerprint != self._fingerprint:
            self._cache.clear()
            self._fingerprint = fingerprint
        cached = self._cache.get(version.id)
        if cached is not None and cached.version.version == version.version:
            return cached
        measure = fhirjson.loads(version.body or b"{}")
        libraries = await self._libraries(measure)
        resources = [measure, *(library for library, _ in libraries)]
        resources += await self._valuesets([elm for _, elm in libraries])
        try:
            # compiling takes up to seconds: in a worker thread, so the server goes on answering meanwhile
            evaluator = await asyncio.to_thread(lambda: MeasureEvaluator(MeasureBundle.from_resources(resources)))
        except (MeasureBundleError, MeasureDefinitionError, CqlError, ValueError) as error:
            raise FhirError(422, [Issue("processing", f"Measure/{version.id} cannot be evaluated: {error}")]) from None
        except Exception as error:  # content the engine trips on is still the client's content: a 422
            log_unexpected(log, error, f"compiling Measure/{version.id}")
            raise FhirError(422, [Issue("processing", f"Measure/{version.id} cannot be evaluated: the engine failed "
                                                      f"on its content ({type(error).__name__}); this has been "
                                                      "logged")]) from None
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()
        compiled = self._cache[version.id] = CompiledMeasure(version, measure, evaluator)
        return compiled

    async def _content_fingerprint(self) -> tuple[Any, ...]:
        """The newest version of each content type: changes whenever measure content is written."""
        newest = []
        for type_ in CONTENT_TYPES:
            page = await self._store.history(type_, None, None, 1, None)
            newest += [(v.id, v.version, v.last_updated) for v in page.versions]
        return tuple(newest)

    async def _libraries(self, measure: dict[str, Any]) -> list[tuple[dict[str, Any], ElmLibrary | None]]:
        """The Measure's libraries and, transitively, the libraries their ELM includes (with their ELM)."""
        out: list[tuple[dict[str, Any], ElmLibrary | None]] = []
        seen: set[tuple[str, str | None]] = set()
        pending: list[tuple[str, str | None, str]] = []  # (url or name, version, search parameter)
        for canonical in measure.get("library") or ():
            if isinstance(canonical, str):
                url, _, wanted = canonical.partition("|")
                pending.append((url, wanted or None, "url"))
        while pending:
            expected, wanted, by = pending.pop()
            if (expected, wanted) in seen:
                continue
            seen.add((expected, wanted))
            params = [(by, expected)] + ([("version", wanted)] if wanted else [])
            found = [r for v in await self.find("Library", params)
                     if (r := fhirjson.loads(v.body or b"{}")).get(by) == expected]
            if not found:
                continue  # MeasureBundle names what is missing
            library = max(found, key=lambda r: str(r.get("version") or ""))
            try:
                elm = elm_from_library_resource(library)
            except Exception:  # malformed ELM: compiling the measure reports it (a 422)
                elm = None
            out.append((library, elm))
            seen.add((str(library.get("name")), library.get("version")))
            for name, version in (elm.includes.values() if elm is not None else ()):
                pending.append((name, version, "name"))
        return out

    async def _valuesets(self, libraries: Sequence[ElmLibrary | None]) -> list[dict[str, Any]]:
        """The ValueSets the libraries declare, by canonical URL."""
        urls = {str(v["id"]) for elm in libraries if elm is not None for v in elm.valuesets.values() if v.get("id")}
        out = []
        for url in sorted(urls):
            out += [r for v in await self.find("ValueSet", [("url", url)])
                    if (r := fhirjson.loads(v.body or b"{}")).get("url") == url]
        return out


def _url_of(version: ResourceVersion) -> str | None:
    return fhirjson.loads(version.body or b"{}").get("url")


def measures_of(server: Any) -> MeasureRepository:
    """The server's measure repository (one per server, kept in its memo)."""
    found = server.memo.get("measures")
    if found is None:
        found = server.memo["measures"] = MeasureRepository(server.store, lambda: server.search)
    return found
