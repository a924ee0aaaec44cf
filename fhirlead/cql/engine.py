"""The CQL engine: compiled libraries plus terminology, evaluated per patient.

    engine = Engine(libraries, Terminology(valueset_resources))
    main = engine.compiler_for("CMS122FHIR...", "0.5.000")
    results = engine.evaluate(main, ["Initial Population", "Numerator"], data_source, parameters)

Compilation happens once per library (lazily, per declaration); evaluation creates a fresh Context
per patient, so nothing leaks between patients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC
from datetime import datetime as _pydatetime
from typing import Any

from fhirlead.cql import fhirhelpers
from fhirlead.cql.clinical import ValueSet
from fhirlead.cql.compiler import CompiledDef, CompiledFunction, LibraryCompiler, load_operator_families
from fhirlead.cql.context import Context
from fhirlead.cql.datetime import DateTime, datetime_from_python
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.library import ElmLibrary, LibrarySet
from fhirlead.cql.retrieve import DataRequirement
from fhirlead.cql.terminology import Terminology

load_operator_families()


class UnavailableValueSet(ValueSet):
    """Stands in for a value set that cannot be built; using it raises (never a silent false)."""

    __slots__ = ("reason",)

    def __init__(self, id: str, version: str | None, reason: str) -> None:
        super().__init__(id, version)
        self.reason = reason

    def contains(self, system: str | None, code: str | None) -> bool:
        raise CqlEvaluationError(self.reason)

    def contains_code(self, code: Any) -> bool:
        raise CqlEvaluationError(self.reason)

    def has_code(self, code: str) -> bool:
        raise CqlEvaluationError(self.reason)

    def expansion(self) -> list[Any]:
        raise CqlEvaluationError(self.reason)


class Engine:
    """Libraries and terminology for evaluating CQL; compiles each library once, on first use."""

    def __init__(
        self,
        libraries: LibrarySet | Iterable[ElmLibrary],
        terminology: Terminology | None = None,
        native_helpers: bool = True,
    ) -> None:
        self.libraries = libraries if isinstance(libraries, LibrarySet) else LibrarySet(libraries)
        self.terminology = terminology or Terminology()
        self.native_helpers = native_helpers
        self._compilers: dict[tuple[str, str | None], LibraryCompiler] = {}
        self._valuesets: dict[tuple[str, str | None], ValueSet] = {}
        self.requirements: set[DataRequirement] = set()  # of every Retrieve compiled so far

    def compiler_for(self, name: str, version: str | None = None) -> LibraryCompiler:
        lib = self.libraries.resolve(name, version)
        key = (lib.name, lib.version)
        comp = self._compilers.get(key)
        if comp is None:
            comp = self._compilers[key] = LibraryCompiler(self, lib)
        return comp

    def valueset(self, url: str, version: str | None = None) -> ValueSet:
        key = (url, version)
        vs = self._valuesets.get(key)
        if vs is None:
            try:
                vs = self.terminology.valueset(url, version)
            except CqlEvaluationError as exc:
                vs = UnavailableValueSet(url, version, str(exc))
            self._valuesets[key] = vs
        return vs

    def native_function(self, library_name: str, fn: CompiledFunction) -> Callable[..., Any] | None:
        if not self.native_helpers:
            return None
        return fhirhelpers.native_function(library_name, fn)

    def definitions(self, library: LibraryCompiler, names: Iterable[str]) -> dict[str, CompiledDef]:
        """Compile (once) and return the named expression definitions of a library."""
        return {name: library.definition(name) for name in names}

    def context(
        self, data: Any, parameters: dict[str, Any] | None = None, now: DateTime | None = None, tz: int = 0
    ) -> Context:
        if now is None:
            now = datetime_from_python(_pydatetime.now(UTC), 0).shifted(tz)
        return Context(data, dict(parameters or {}), now, tz)

    def evaluate(
        self,
        library: LibraryCompiler,
        names: Iterable[str],
        data: Any,
        parameters: dict[str, Any] | None = None,
        now: DateTime | None = None,
        tz: int = 0,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Evaluate expression definitions for one patient; returns name -> CQL value."""
        defs = self.definitions(library, names)
        if ctx is None:
            ctx = self.context(data, parameters, now, tz)
        return {name: evaluate_definition(d, ctx) for name, d in defs.items()}


def call_function(library: LibraryCompiler, name: str, args: list[Any], ctx: Context) -> Any:
    """Call a library function by name (the overload taking len(args) operands) in a context."""
    overloads = [f for f in library.functions(name) if len(f.operand_names) == len(args)]
    if len(overloads) != 1:
        raise CqlEvaluationError(
            f"{library.name}: expected one overload of {name} with {len(args)} operand(s), "
            f"found {len(overloads)}"
        )
    fn = overloads[0]
    if fn.native is not None:
        return fn.native(ctx, *args)
    body = fn.compiled_body()
    saved = ctx.frame
    ctx.frame = dict(zip(fn.operand_names, args, strict=True))
    try:
        return body(ctx)
    finally:
        ctx.frame = saved


def evaluate_definition(d: CompiledDef, ctx: Context) -> Any:
    """The value of one definition in a context (cached there, like an ExpressionRef)."""
    cache = ctx.cache
    if d.key in cache:
        return cache[d.key]
    saved = ctx.frame
    ctx.frame = {}
    try:
        value = d.fn(ctx)  # type: ignore[misc]
    finally:
        ctx.frame = saved
    cache[d.key] = value
    return value
