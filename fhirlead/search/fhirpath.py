"""Compiling SearchParameter FHIRPath expressions into plain Python accessors.

fhirpathpy costs milliseconds per evaluation; extraction runs on every write for every parameter. The
expressions SearchParameters use are almost all simple paths, so this module parses the subset they
use — paths, `|` unions, `as`/`.as()`/`.ofType()`, `.where(resolve() is T)`, `.where(field='x')`,
`.where(hasExtension('url'))`, `.extension('url')`, `[n]`, `%resource` — and turns each into linear
accessors typed from the R4 structure definitions (so a choice element like `value[x]` becomes one
accessor per type: `valueQuantity`, `valueString`, ...). Anything else raises `Unsupported`, and
the caller falls back to fhirpathpy for that expression.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhirlead.definitions import resource_types, structure

Step = Callable[[list[Any]], list[Any]]

# Types a FHIRPath `as`/`ofType` accepts for the element types the definitions use.
_TYPE_ALIASES = {"SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity"}
_ABSTRACT_ROOTS = ("Resource", "DomainResource")
_TOKEN = re.compile(r"\s*(?:('(?:[^'\\]|\\.)*')|(%?[A-Za-z_][A-Za-z0-9_]*)|(\d+)|(!=|[.()\[\]|=,]))")


class Unsupported(Exception):
    """The expression uses FHIRPath this compiler does not handle."""


@dataclass(frozen=True, slots=True)
class Position:
    """Where a path stands in the type model: the structure it navigates and the FHIR type reached."""

    owner: str  # a key of definitions.structure()
    prefix: str  # element path prefix inside owner ("" or e.g. "component.")
    type: str  # the FHIR type of the values ("Reference", "string", "BackboneElement", "*" unknown)


@dataclass(frozen=True, slots=True)
class Accessor:
    """One linear path: run `steps` from the resource (or a context node); values are of `type`."""

    steps: tuple[Step, ...]
    type: str
    position: Position

    @property
    def first_field(self) -> str | None:
        """The element the path reads first (None when it starts otherwise): if the resource lacks
        it, the path reaches nothing."""
        return getattr(self.steps[0], "field", None) if self.steps else None

    def __call__(self, nodes: list[Any], root: Any = None) -> list[Any]:
        for step in self.steps:
            if step is ROOT:
                nodes = [root]
                continue
            if not nodes:
                return nodes
            nodes = step(nodes)
        return nodes


def ROOT(nodes: list[Any]) -> list[Any]:
    raise AssertionError("ROOT is interpreted by Accessor")


# -- tokens and syntax tree ---------------------------------------------------------------------


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    text = expression.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise Unsupported(f"unexpected text at {position}: {text[position : position + 20]!r}")
        tokens.append(next(group for group in match.groups() if group is not None))
        position = match.end()
    return tokens


@dataclass
class _Parser:
    tokens: list[str]
    index: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(f"expected {expected or 'more'}, found {token}")
        self.index += 1
        return token

    def union(self) -> tuple:
        terms = [self.as_type()]
        while self.peek() == "|":
            self.take()
            terms.append(self.as_type())
        return terms[0] if len(terms) == 1 else ("union", terms)

    def as_type(self) -> tuple:
        term = self.term()
        if self.peek() in ("as", "is"):
            operator = self.take()
            if operator == "is":
                raise Unsupported("'is' outside where()")
            term = ("call", term, "as", [[self.take()]])
        return term

    def term(self) -> tuple:
        token = self.take()
        if token == "(":
            node = self.union()
            self.take(")")
        elif token == "%resource":
            node = ("resource",)
        elif token[0].isalpha():
            node = ("field", ("root",), token)
        else:
            raise Unsupported(f"unexpected {token}")
        while self.peek() in (".", "["):
            if self.take() == "[":
                number = self.take()
                if not number.isdigit():
                    raise Unsupported("non-literal index")
                self.take("]")
                node = ("index", node, int(number))
                continue
            name = self.take()
            if self.peek() == "(":
                self.take()
                args = self.arguments()
                node = ("call", node, name, args)
            else:
                node = ("field", node, name)
        return node

    def arguments(self) -> list:
        args: list = []
        while self.peek() != ")":
            start = self.index
            depth = 0
            while not (depth == 0 and self.peek() in (",", ")")):
                token = self.take()
                depth += token == "("
                depth -= token == ")"
            args.append(self.tokens[start : self.index])
            if self.peek() == ",":
                self.take()
        self.take(")")
        return args


# -- steps --------------------------------------------------------------------------------------


def _field(name: str) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        out: list[Any] = []
        for node in nodes:
            if type(node) is dict:
                value = node.get(name)
                if value is not None:
                    if type(value) is list:
                        out.extend(value)
                    else:
                        out.append(value)
        return out

    step.field = name  # type: ignore[attr-defined]  # lets extraction skip paths whose element is absent
    return step


def reference_type(node: Any) -> str | None:
    """The resource type a Reference points to, from its literal reference or its `type`."""
    if type(node) is not dict:
        return None
    text = node.get("reference")
    if isinstance(text, str):
        path = text.split("/_history/")[0].rstrip("/").split("/")
        if len(path) >= 2 and path[-2] in resource_types():
            return path[-2]
    kind = node.get("type")
    return kind if isinstance(kind, str) else None


def _resolves_to(type_name: str) -> Step:
    return lambda nodes: [node for node in nodes if reference_type(node) == type_name]


def _field_equals(name: str, literal: str) -> Step:
    return lambda nodes: [node for node in nodes if type(node) is dict and node.get(name) == literal]


def _extension(url: str) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        return [
            extension
            for node in nodes
            if type(node) is dict
            for extension in node.get("extension") or ()
            if type(extension) is dict and extension.get("url") == url
        ]

    return step


def _has_extension(url: str) -> Step:
    return lambda nodes: [node for node in nodes if _extension(url)([node])]


def _index(number: int) -> Step:
    def step(nodes: list[Any]) -> list[Any]:
        return nodes[number : number + 1]

    step.whole = True  # type: ignore[attr-defined]  # reads the whole collection, not node by node
    return step


# -- compilation --------------------------------------------------------------------------------


def _literal(tokens: list[str]) -> str:
    if len(tokens) != 1 or not tokens[0].startswith("'"):
        raise Unsupported("expected a string literal")
    return tokens[0][1:-1].replace("\\'", "'")


def _element(position: Position, name: str) -> list[tuple[str, Position]]:
    """The JSON keys and positions `name` leads to from `position` (one per type of a choice)."""
    if position.type in ("*", "Resource", "Extension") and position.owner not in structure():
        raise Unsupported(f"navigation below {position.type}")
    definition = structure().get(position.owner)
    if definition is None:
        raise Unsupported(f"unknown type {position.owner}")
    elements = definition["elements"]
    path = position.prefix + name
    if path in elements:
        kinds = elements[path][0]
        if len(kinds) != 1:
            raise Unsupported(f"{path} has several types")
        return [(name, _enter(position.owner, path, kinds[0]))]
    if path + "[x]" in elements:
        return [
            (name + kind[0].upper() + kind[1:], _enter(position.owner, path, kind))
            for kind in elements[path + "[x]"][0]
        ]
    raise Unsupported(f"no element {position.owner}.{path}")


def _enter(owner: str, path: str, kind: str) -> Position:
    if kind in ("BackboneElement", "Element") and owner not in ("BackboneElement", "Element"):
        return Position(owner, path + ".", "BackboneElement")
    if kind.startswith("#"):
        target_owner, _, target_path = kind[1:].partition(".")
        return Position(target_owner, target_path + ".", "BackboneElement")
    kind = _TYPE_ALIASES.get(kind, kind)
    return Position(kind, "", kind)


class _Compiler:
    def __init__(self, resource_type: str, start: Position | None) -> None:
        self.resource_type = resource_type
        self.root = Position(resource_type, "", resource_type)
        self.start = start or self.root

    def compile(self, node: tuple) -> list[tuple[tuple[Step, ...], Position]]:
        kind = node[0]
        if kind == "root":
            return [((), self.start)]
        if kind == "resource":
            return [((ROOT,), self.root)]
        if kind == "union":
            return [path for term in node[1] for path in self.compile(term)]
        if kind == "field":
            return self._field(node)
        if kind == "index":
            return [((*steps, _index(node[2])), position) for steps, position in self.compile(node[1])]
        if kind == "call":
            return self._call(node)
        raise Unsupported(kind)

    def _field(self, node: tuple) -> list[tuple[tuple[Step, ...], Position]]:
        _, inner, name = node
        if inner == ("root",) and self.start is self.root:
            if name == self.resource_type or name in _ABSTRACT_ROOTS:
                return [((), self.root)]
            if name in resource_types():
                return []  # a term of a union over several resource types, for another type
        out = []
        for steps, position in self.compile(inner):
            for key, reached in _element(position, name):
                out.append(((*steps, _field(key)), reached))
        return out

    def _call(self, node: tuple) -> list[tuple[tuple[Step, ...], Position]]:
        _, inner, name, args = node
        paths = self.compile(inner)
        if name in ("as", "ofType"):
            if len(args) != 1 or len(args[0]) != 1:
                raise Unsupported(f"{name} with {args}")
            wanted = args[0][0]
            wanted = _TYPE_ALIASES.get(wanted, wanted)
            if any(position.type in ("*", "Extension", "Resource") for _, position in paths):
                raise Unsupported(f"{name} on a value of unknown type")
            return [(steps, position) for steps, position in paths if position.type == wanted]
        if name == "extension":
            url = _literal(args[0]) if len(args) == 1 else None
            if url is None:
                raise Unsupported("extension() without url")
            reached = Position("Extension", "", "Extension")
            return [((*steps, _extension(url)), reached) for steps, _ in paths]
        if name == "where":
            if len(args) != 1:
                raise Unsupported("where arity")
            step = self._condition(args[0])
            return [((*steps, step), position) for steps, position in paths]
        raise Unsupported(f"function {name}()")

    def _condition(self, tokens: list[str]) -> Step:
        if len(tokens) == 5 and tokens[:4] == ["resolve", "(", ")", "is"]:
            return _resolves_to(tokens[4])
        if len(tokens) == 3 and tokens[1] == "=" and tokens[0][0].isalpha():
            return _field_equals(tokens[0], _literal(tokens[2:]))
        if len(tokens) == 4 and tokens[0] == "hasExtension" and tokens[1] == "(" and tokens[3] == ")":
            return _has_extension(_literal(tokens[2:3]))
        raise Unsupported(f"where({' '.join(tokens)})")


def compile_expression(expression: str, resource_type: str, start: Position | None = None) -> list[Accessor]:
    """Accessors for `expression` on `resource_type` (relative to `start`, for composite components).

    Union terms rooted at another resource type are dropped (the R4 definitions share one expression
    across the bases of a parameter). Raises Unsupported when the expression is beyond this compiler.
    """
    parser = _Parser(_tokens(expression))
    tree = parser.union()
    if parser.peek() is not None:
        raise Unsupported(f"trailing {parser.peek()}")
    compiled = _Compiler(resource_type, start).compile(tree)
    return [Accessor(steps, position.type, position) for steps, position in compiled]
