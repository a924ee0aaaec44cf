"""ELM to Python closures, once per library.

Each ELM expression node becomes a function `fn(ctx)`; operator families register a compile function
per node type (`@handles("Add")` in `fhirlead.cql.ops.*`). A library is compiled lazily, declaration by
declaration, the first time something references it, and the result is reused for every patient.
A node type without a registered compiler raises `UnsupportedElmError` naming the node type, the library
and the locator, at compile time, so unimplemented ELM can never evaluate to a silent null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhirlead.cql.clinical import Code, CodeSystem, Concept, ValueSet
from fhirlead.cql.errors import ElmLoadError, UnsupportedElmError
from fhirlead.cql.library import ElmLibrary

if TYPE_CHECKING:
    from fhirlead.cql.context import Context
    from fhirlead.cql.engine import Engine

Fn = Callable[["Context"], Any]
NodeCompiler = Callable[[dict[str, Any], "LibraryCompiler"], Fn]

REGISTRY: dict[str, NodeCompiler] = {}


def handles(*node_types: str) -> Callable[[NodeCompiler], NodeCompiler]:
    """Register a compile function for one or more ELM node types."""

    def register(fn: NodeCompiler) -> NodeCompiler:
        for t in node_types:
            if t in REGISTRY:
                raise RuntimeError(f"ELM node {t} registered twice")
            REGISTRY[t] = fn
        return fn

    return register


_NEXT_KEY = [0]


def new_key(label: str) -> tuple[str, int]:
    """A unique cache key for per-context memoisation."""
    _NEXT_KEY[0] += 1
    return (label, _NEXT_KEY[0])


class CompiledDef:
    """An expression definition: compiled body plus the cache key used per patient."""

    __slots__ = ("context", "fn", "key", "library", "name")

    def __init__(self, library: str, name: str, context: str | None) -> None:
        self.library = library
        self.name = name
        self.context = context
        self.key = new_key(f"{library}.{name}")
        self.fn: Fn | None = None


class CompiledFunction:
    """A function definition: operand names and type specifiers, compiled body, optional native."""

    __slots__ = (
        "body",
        "definition",
        "external",
        "fluent",
        "key",
        "library",
        "name",
        "native",
        "operand_names",
        "operand_types",
    )

    def __init__(self, library: LibraryCompiler, definition: dict[str, Any]) -> None:
        self.library = library
        self.definition = definition
        self.name: str = definition["name"]
        self.fluent = bool(definition.get("fluent"))
        self.external = bool(definition.get("external"))
        self.operand_names = [o["name"] for o in definition.get("operand", ())]
        where = f"{library.name} {library.version}"
        self.operand_types = [operand_type(o, where) for o in definition.get("operand", ())]
        self.key = new_key(f"{library.name}.{self.name}")
        self.body: Fn | None = None
        self.native: Callable[..., Any] | None = None

    def compiled_body(self) -> Fn:
        if self.body is None:
            if self.external:
                raise UnsupportedElmError(
                    "FunctionDef",
                    self.library.name,
                    self.definition.get("locator"),
                    f"external function {self.name} has no native implementation",
                )
            self.body = self.library.compile(self.definition["expression"])
        return self.body


def operand_type(operand: dict[str, Any], where: str = "") -> Any:
    spec = operand.get("operandTypeSpecifier")
    if spec is not None:
        return type_key(spec, where)
    return operand.get("operandType")


_SPECIFIERS = (
    "NamedTypeSpecifier",
    "ListTypeSpecifier",
    "IntervalTypeSpecifier",
    "ChoiceTypeSpecifier",
    "TupleTypeSpecifier",
    "ParameterTypeSpecifier",
)


def specifier_kind(spec: dict[str, Any]) -> str | None:
    """The kind of an ELM TypeSpecifier, whatever the translator version wrote.

    The `type` member is both the JSON type discriminator and, in ChoiceTypeSpecifier, the deprecated
    list of choices: translators 1.x write the choices there (the discriminator is lost), 3.x write
    `"type": []` next to `choice`. Kinds are then known by their members, as the ELM schema defines them.
    """
    t = spec.get("type")
    if isinstance(t, str):
        return t if t in _SPECIFIERS else None
    if "choice" in spec or isinstance(t, list):
        return "ChoiceTypeSpecifier"
    if "elementType" in spec:
        return "ListTypeSpecifier"
    if "pointType" in spec:
        return "IntervalTypeSpecifier"
    if "element" in spec:
        return "TupleTypeSpecifier"
    if "name" in spec:
        return "NamedTypeSpecifier"
    return None


def type_key(spec: dict[str, Any] | str | None, where: str = "") -> Any:
    """A hashable, comparable form of an ELM type specifier (or a qualified type name).

    Raises `UnsupportedElmError` naming the specifier and `where` for a shape ELM does not define.
    """
    if spec is None or isinstance(spec, str):
        return spec
    kind = specifier_kind(spec)
    if kind == "NamedTypeSpecifier":
        return spec["name"]
    if kind == "ListTypeSpecifier":
        return ("List", type_key(spec["elementType"], where))
    if kind == "IntervalTypeSpecifier":
        return ("Interval", type_key(spec["pointType"], where))
    if kind == "ChoiceTypeSpecifier":
        choices = spec.get("choice") or spec.get("type")
        if not isinstance(choices, list) or not choices:
            raise UnsupportedElmError("ChoiceTypeSpecifier", where, spec.get("locator"), "a choice of no types")
        return ("Choice", tuple(sorted((type_key(c, where) for c in choices), key=repr)))
    if kind == "TupleTypeSpecifier":
        elements = []
        for e in spec.get("element") or ():
            et = e.get("elementType")
            if et is None:
                et = e.get("type")
            elements.append((e["name"], type_key(et, where)))
        return ("Tuple", tuple(elements))
    if kind == "ParameterTypeSpecifier":
        return ("Parameter", spec.get("parameterName"))
    shown = spec.get("type") if isinstance(spec.get("type"), str) else "TypeSpecifier"
    raise UnsupportedElmError(
        str(shown), where, spec.get("locator"), f"unknown type specifier with members {sorted(spec)}"
    )


class LibraryCompiler:
    """Compiles and holds one library's declarations; resolves references into included libraries."""

    def __init__(self, engine: Engine, elm: ElmLibrary) -> None:
        self.engine = engine
        self.elm = elm
        self.name = elm.name
        self.version = elm.version
        self._defs: dict[str, CompiledDef] = {}
        self._functions: dict[str, list[CompiledFunction]] = {}
        self._includes: dict[str, LibraryCompiler] = {}
        self._valuesets: dict[str, ValueSet] = {}
        self._codes: dict[str, Code] = {}

    def __repr__(self) -> str:
        return f"LibraryCompiler({self.name} {self.version})"

    # -- compiling expressions ---------------------------------------------------------------------
    def compile(self, node: dict[str, Any]) -> Fn:
        node_type = node.get("type")
        compiler = REGISTRY.get(node_type)  # type: ignore[arg-type]
        if compiler is None:
            raise self.unsupported(node)
        return compiler(node, self)

    def operands(self, node: dict[str, Any]) -> list[Fn]:
        ops = node.get("operand")
        if ops is None:
            return []
        if isinstance(ops, dict):
            return [self.compile(ops)]
        return [self.compile(o) for o in ops]

    def unsupported(self, node: dict[str, Any], detail: str = "") -> UnsupportedElmError:
        return UnsupportedElmError(
            str(node.get("type")), f"{self.name} {self.version}", node.get("locator"), detail
        )

    # -- references ----------------------------------------------------------------------------------
    def library(self, alias: str | None) -> LibraryCompiler:
        """This library (alias None) or an included one by its local alias."""
        if alias is None:
            return self
        lib = self._includes.get(alias)
        if lib is None:
            if alias not in self.elm.includes:
                raise ElmLoadError(f"{self.name}: no include called {alias}")
            name, version = self.elm.includes[alias]
            lib = self.engine.compiler_for(name, version)
            self._includes[alias] = lib
        return lib

    def definition(self, name: str) -> CompiledDef:
        d = self._defs.get(name)
        if d is not None:
            return d
        node = self.elm.statements.get(name)
        if node is None:
            raise ElmLoadError(f"{self.name}: no expression definition named {name!r}")
        d = CompiledDef(self.name, name, node.get("context"))
        self._defs[name] = d  # registered before compiling so references inside resolve to it
        d.fn = self.compile(node["expression"]) if node.get("expression") is not None else (lambda ctx: None)
        return d

    def functions(self, name: str) -> list[CompiledFunction]:
        fs = self._functions.get(name)
        if fs is None:
            defs = self.elm.functions.get(name)
            if not defs:
                raise ElmLoadError(f"{self.name}: no function named {name!r}")
            fs = [CompiledFunction(self, d) for d in defs]
            for f in fs:
                f.native = self.engine.native_function(self.name, f)
            self._functions[name] = fs
        return fs

    def valueset(self, name: str) -> ValueSet:
        vs = self._valuesets.get(name)
        if vs is None:
            node = self.elm.valuesets.get(name)
            if node is None:
                raise ElmLoadError(f"{self.name}: no valueset named {name!r}")
            vs = self.engine.valueset(node["id"], node.get("version"))
            self._valuesets[name] = vs
        return vs

    def codesystem(self, name: str) -> CodeSystem:
        node = self.elm.codesystems.get(name)
        if node is None:
            raise ElmLoadError(f"{self.name}: no codesystem named {name!r}")
        return CodeSystem(node["id"], node.get("version"), name)

    def code(self, name: str) -> Code:
        c = self._codes.get(name)
        if c is None:
            node = self.elm.codes.get(name)
            if node is None:
                raise ElmLoadError(f"{self.name}: no code named {name!r}")
            cs_ref = node.get("codeSystem") or {}
            cs = self.library(cs_ref.get("libraryName")).codesystem(cs_ref["name"]) if cs_ref else None
            c = Code(node["id"], cs.id if cs else None, cs.version if cs else None, node.get("display"))
            self._codes[name] = c
        return c

    def concept(self, name: str) -> Concept:
        node = self.elm.concepts.get(name)
        if node is None:
            raise ElmLoadError(f"{self.name}: no concept named {name!r}")
        codes = [self.library(c.get("libraryName")).code(c["name"]) for c in node.get("code", ())]
        return Concept(codes, node.get("display"))

    def parameter(self, name: str) -> tuple[str, Fn | None]:
        node = self.elm.parameters.get(name)
        if node is None:
            raise ElmLoadError(f"{self.name}: no parameter named {name!r}")
        default = node.get("default")
        return name, (self.compile(default) if default is not None else None)


def load_operator_families() -> None:
    """Import every operator module so their `@handles` registrations run."""
    from fhirlead.cql.ops import (  # noqa: F401
        aggregates,
        arithmetic,
        clinical,
        comparison,
        conditional,
        data,
        dates,
        intervals,
        lists,
        literals,
        logical,
        navigation,
        nulls,
        queries,
        references,
        strings,
        structured,
        types,
    )
