"""A compiler of FHIRPath (https://hl7.org/fhirpath/N1/) into Python closures, for the R4 invariants.

fhirpathpy interprets an expression on every call (~30 us), has no `hasValue()`, cannot compare two
Quantities, and prints `trace()` output unless given a callback. The invariants run on every write, so
each is compiled once, on first use, from fhirpathpy's parse tree into plain closures (~1 us a check):
`compile_expression`. The compiler covers what the R4 constraints use: paths typed from the
definitions (choice elements, `_x` primitive extensions); `exists empty count not hasValue where all
select first tail isDistinct intersect combine iif matches startsWith contains substring length toInteger toString
descendants is as ofType memberOf(resource-types) trace`; the three-valued `and or xor implies`;
`= != < <= > >=` on strings, numbers, booleans, FHIR dates and quantities in the same unit (their
meaning: fhirpath_values.py); `in contains | + - & * / div mod`; `%resource %rootResource %context %ucum`
(https://hl7.org/fhir/R4/fhirpath.html#variables).

fhirpathpy stays for the rest: an expression the compiler does not cover raises `Unsupported` (three
R4 expressions: con-3, sdf-8a, sdf-9: `children()`, `replaceMatches()`, a CodeableConcept compared with
a string), and a compiled one raises `Fallback` on the rare values it will not decide (quantities in
different units); the caller (invariant_checks.py) then runs fhirpathpy. On every constraint evaluation
over the R4 examples, compiled and fhirpathpy results agree wherever fhirpathpy gives one, except que-7
(`answer is Boolean`: fhirpathpy says false for a FHIR boolean).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from fhirlead.definitions import resource_types, structure
from fhirlead.validation.fhirpath_values import (
    ABSENT,
    Fallback,
    contains,
    distinct,
    equal,
    is_number,
    order,
    single,
    truth,
    values_of,
)

UCUM = "http://unitsofmeasure.org"
_DATE_TYPES = frozenset({"date", "dateTime", "instant"})
# The FHIR primitives a System type name stands for in `is`/`as` (`answer is Boolean`).
_SYSTEM_TYPES = {
    "Boolean": {"boolean"}, "Integer": {"integer", "positiveInt", "unsignedInt"}, "Decimal": {"decimal"},
    "String": {"string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary"},
    "Date": {"date"}, "DateTime": {"dateTime", "instant"}, "Time": {"time"},
}


class Unsupported(Exception):
    """The expression uses FHIRPath the compiler does not cover: fhirpathpy evaluates it."""


# A static type: ("pos", owner, path) an object whose elements are owner's at path ("" for the type
# itself), ("prim", type) a primitive, ("res", type or None) a resource, ("choice",), ("any",), and
# ("empty",) what is always empty (a cast to a type the value can never have: `value.ofType(Quantity)` on
# a Quantity's decimal `value`, as US Core's us-core-3 reads on Observation.value[x]).

Static = tuple[Any, ...]
Fn = Callable[[list[Any], "Env"], list[Any]]
BOOLEAN: Static = ("prim", "boolean")
INTEGER: Static = ("prim", "integer")
STRING: Static = ("prim", "string")
ANY: Static = ("any",)
EMPTY: Static = ("empty",)


@dataclass(slots=True)
class Env:
    """What an expression is evaluated in: FHIRPath's environment variables
    (https://hl7.org/fhir/R4/fhirpath.html#variables)."""

    resource: dict[str, Any]  # %resource
    root: dict[str, Any]  # %rootResource
    context: Any = None  # %context
    _contained_ids: frozenset[str] | None = None

    def contained_ids(self) -> frozenset[str]:
        if self._contained_ids is None:
            contained = self.root.get("contained")
            self._contained_ids = frozenset(
                item.get("id") for item in contained if isinstance(item, dict) and isinstance(item.get("id"), str)
            ) if isinstance(contained, list) else frozenset()
        return self._contained_ids


def kind_of(type_code: str) -> str | None:
    """The kind of a FHIR type (`primitive-type`, `complex-type`, `resource`), None for an unknown one."""
    definition = structure().get(type_code)
    return definition["kind"] if definition else None


def _element_static(owner: str, key: str, types: list[str]) -> Static:
    if len(types) != 1:
        return ("choice",)
    code = types[0]
    if code.startswith("#"):
        target_owner, _, target_path = code[1:].partition(".")
        return ("pos", target_owner, target_path)
    if code in ("BackboneElement", "Element"):
        return ("pos", owner, key)
    if code == "Resource":
        return ("res", None)
    kind = kind_of(code)
    if kind == "primitive-type":
        return ("prim", code)
    if kind == "complex-type":
        return ("pos", code, "")
    raise Unsupported(f"type {code}")


def _owner_elements(static: Static) -> tuple[str, str, dict[str, list[Any]]]:
    if static[0] == "pos":
        owner, path = static[1], static[2]
    elif static[0] == "res":
        owner, path = static[1] or "DomainResource", ""
    else:
        raise Unsupported(f"navigation from {static}")
    definition = structure().get(owner)
    if definition is None:
        raise Unsupported(f"no definition of {owner}")
    return owner, path, definition["elements"]


def _child(static: Static, name: str) -> tuple[Static, list[tuple[str, bool]]]:
    """The static type of `name` under `static`, and the JSON keys that hold it (key, primitive?)."""
    owner, path, elements = _owner_elements(static)
    if static[0] == "res" and static[1] is None and name not in elements:
        raise Unsupported(f"{name} on a resource of unknown type")
    key = f"{path}.{name}" if path else name
    if key in elements:
        child = _element_static(owner, key, elements[key][0])
        return child, [(name, child[0] == "prim")]
    choice = elements.get(f"{key}[x]")
    if choice is None:
        raise Unsupported(f"no element {owner}.{key}")
    keys = [(name + code[0].upper() + code[1:], kind_of(code) == "primitive-type") for code in choice[0]]
    return ("choice",), keys


def _nothing(focus: list[Any], env: Env) -> list[Any]:
    return []


def _navigate(keys: list[tuple[str, bool]]) -> Fn:
    if len(keys) == 1 and not keys[0][1]:
        name = keys[0][0]

        def complex_child(focus: list[Any], env: Env) -> list[Any]:
            out: list[Any] = []
            for item in focus:
                if isinstance(item, dict):
                    value = item.get(name)
                    if value is not None:
                        if isinstance(value, list):
                            out.extend(value)
                        else:
                            out.append(value)
            return out

        return complex_child

    prepared = [(name, f"_{name}" if primitive else "") for name, primitive in keys]

    def children(focus: list[Any], env: Env) -> list[Any]:
        out: list[Any] = []
        for item in focus:
            if not isinstance(item, dict):
                continue
            for name, extension_key in prepared:
                value = item.get(name)
                extensions = item.get(extension_key) if extension_key else None
                if extensions is None:
                    if value is None:
                        continue
                    if isinstance(value, list):
                        out.extend(v for v in value if v is not None)
                    else:
                        out.append(value)
                elif isinstance(value, list) or isinstance(extensions, list):
                    values = value if isinstance(value, list) else []
                    extras = extensions if isinstance(extensions, list) else []
                    for position in range(max(len(values), len(extras))):
                        v = values[position] if position < len(values) else None
                        if v is not None:
                            out.append(v)
                        elif position < len(extras) and extras[position] is not None:
                            out.append(ABSENT)
                else:
                    out.append(value if value is not None else ABSENT)
        return out

    return children


def _string_literal(text: str) -> str:
    body = text[1:-1]
    escapes = {"'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}

    def unescape(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.startswith("u"):
            return chr(int(code[1:], 16))
        return escapes.get(code, code)

    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", unescape, body)


def _identifier(node: dict[str, Any]) -> str:
    return str(node["text"]).strip("`")


def _constant(value: Any) -> Fn:
    result = [value]
    return lambda focus, env: result


class _Compiler:
    """Compiles one FHIRPath expression (fhirpathpy's parse tree) for a node of a known static type."""

    def __init__(self, resource: Static, context: Static) -> None:
        self.resource = resource  # the static type of %resource
        self.context = context  # of %context: the node the constraint is on

    def compile(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        kind = node.get("type")
        method = getattr(self, f"_{kind}", None)
        if method is None:
            raise Unsupported(str(kind))
        return method(node, static)

    # terms

    def _TermExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return self.compile(node["children"][0], static)

    def _ParenthesizedTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return self.compile(node["children"][0], static)

    def _InvocationTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return self.compile(node["children"][0], static)

    def _LiteralTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        literal = node["children"][0]
        kind, text = literal["type"], literal["text"]
        if kind == "StringLiteral":
            return _constant(_string_literal(text)), STRING
        if kind == "BooleanLiteral":
            return _constant(text == "true"), BOOLEAN
        if kind == "NumberLiteral":
            return (_constant(Decimal(text)), ("prim", "decimal")) if "." in text else (_constant(int(text)), INTEGER)
        raise Unsupported(kind)

    def _ExternalConstantTerm(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        name = _identifier(node["children"][0]["children"][0])
        if name == "ucum":
            return _constant(UCUM), STRING
        if name == "resource":
            return (lambda focus, env: [env.resource]), self.resource
        if name == "rootResource":
            return (lambda focus, env: [env.root]), ("res", None)
        if name == "context":
            return (lambda focus, env: [env.context]), self.context
        raise Unsupported(f"%{name}")

    def _ThisInvocation(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        return (lambda focus, env: focus), static

    def _MemberInvocation(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        name = _identifier(node["children"][0])
        if static == EMPTY:
            return _nothing, EMPTY
        if static == ANY:  # untyped (after descendants(), a union of types): the JSON key itself
            return _navigate([(name, True)]), ANY
        if static[0] in ("pos", "res") and static[1] == name and (static[0] == "res" or static[2] == ""):
            return (lambda focus, env: focus), static  # `Appointment.status` on an Appointment
        child, keys = _child(static, name)
        return _navigate(keys), child

    def _InvocationExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        invocation = node["children"][1]
        if invocation["type"] == "FunctionInvocation":
            function = invocation["children"][0]
            name = _identifier(function["children"][0])
            if name in ("is", "as", "ofType") and len(function["children"]) > 1:
                params = function["children"][1]["children"]
                self._arity(params, 1)
                return self._type_test(node["children"][0], static, params[0].get("text", ""), name != "is")
        first, first_static = self.compile(node["children"][0], static)
        second, second_static = self.compile(node["children"][1], first_static)
        return (lambda focus, env: second(first(focus, env), env)), second_static

    # functions

    def _FunctionInvocation(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        function = node["children"][0]
        name = _identifier(function["children"][0])
        params = function["children"][1]["children"] if len(function["children"]) > 1 else []
        method = getattr(self, f"_fn_{name}", None)
        if method is None:
            raise Unsupported(f"{name}()")
        return method(params, static)

    def _fn_exists(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        if params:
            where, _ = self._fn_where(params, static)
            return (lambda focus, env: [bool(where(focus, env))]), BOOLEAN
        return (lambda focus, env: [bool(focus)]), BOOLEAN

    def _fn_empty(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: [not focus]), BOOLEAN

    def _fn_count(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: [len(focus)]), INTEGER

    def _fn_not(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def not_(focus: list[Any], env: Env) -> list[Any]:
            value = truth(focus)
            return [] if value is None else [not value]

        return not_, BOOLEAN

    def _fn_hasValue(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def has_value(focus: list[Any], env: Env) -> list[Any]:
            return [len(focus) == 1 and focus[0] is not ABSENT and not isinstance(focus[0], dict)]

        return has_value, BOOLEAN

    def _fn_where(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        criteria, _ = self.compile(params[0], static)
        return (lambda focus, env: [item for item in focus if truth(criteria([item], env)) is True]), static

    def _fn_all(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        criteria, _ = self.compile(params[0], static)
        return (lambda focus, env: [all(truth(criteria([item], env)) is True for item in focus)]), BOOLEAN

    def _fn_select(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        projection, result = self.compile(params[0], static)

        def select(focus: list[Any], env: Env) -> list[Any]:
            out: list[Any] = []
            for item in focus:
                out.extend(projection([item], env))
            return out

        return select, result

    def _fn_first(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: focus[:1]), static

    def _fn_tail(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)
        return (lambda focus, env: focus[1:]), static

    def _fn_intersect(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        other, _ = self.compile(params[0], static)

        def intersect(focus: list[Any], env: Env) -> list[Any]:
            others = other(focus, env)
            out: list[Any] = []
            for item in focus:
                if contains(others, item) and not contains(out, item):
                    out.append(item)
            return out

        return intersect, static

    def _fn_combine(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        other, other_static = self.compile(params[0], static)
        return (lambda focus, env: focus + other(focus, env)), static if other_static == static else ANY

    def _fn_iif(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        if len(params) not in (2, 3):
            raise Unsupported("arity")
        criterion, _ = self.compile(params[0], static)
        then, then_static = self.compile(params[1], static)
        otherwise, _ = self.compile(params[2], static) if len(params) == 3 else (lambda focus, env: [], ANY)
        return (lambda focus, env: then(focus, env) if truth(criterion(focus, env)) is True
                else otherwise(focus, env)), then_static

    def _fn_toString(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def to_string(focus: list[Any], env: Env) -> list[Any]:
            value = single(focus)
            if value is None:
                return []
            if isinstance(value, bool):
                return ["true" if value else "false"]
            if isinstance(value, str | int | Decimal):
                return [getattr(value, "text", None) or str(value)]
            raise Fallback

        return to_string, STRING

    def _fn_descendants(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def descendants(focus: list[Any], env: Env) -> list[Any]:
            out: list[Any] = []
            stack = [item for item in reversed(focus) if isinstance(item, dict)]
            while stack:
                for key, value in stack.pop().items():
                    for item in value if isinstance(value, list) else (value,):
                        if item is not None and key != "resourceType":
                            out.append(item)
                            if isinstance(item, dict):
                                stack.append(item)
            return out

        return descendants, ANY

    def _fn_memberOf(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        literal = params[0].get("text", "")
        if literal != "'http://hl7.org/fhir/ValueSet/resource-types'":
            raise Unsupported(f"memberOf({literal})")  # no terminology here but the resource types

        def member_of(focus: list[Any], env: Env) -> list[Any]:
            value = single(focus)
            return [] if value is None else [value in resource_types()]

        return member_of, BOOLEAN

    def _fn_trace(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        return (lambda focus, env: focus), static

    def _fn_isDistinct(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def is_distinct(focus: list[Any], env: Env) -> list[Any]:
            return [len(distinct(focus)) == len(focus)]

        return is_distinct, BOOLEAN

    def _fn_toInteger(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def to_integer(focus: list[Any], env: Env) -> list[Any]:
            value = single(focus)
            if isinstance(value, int) and not isinstance(value, bool):
                return [value]
            if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
                return [int(value)]
            return []

        return to_integer, INTEGER

    def _string_function(self, params: list[Any], test: Callable[[str, str], bool]) -> tuple[Fn, Static]:
        self._arity(params, 1)
        argument, _ = self.compile(params[0], ANY)

        def function(focus: list[Any], env: Env) -> list[Any]:
            value = single(focus)
            other = single(argument(focus, env))
            if value is None or other is None:
                return []
            if not isinstance(value, str) or not isinstance(other, str):
                raise Fallback
            return [test(value, other)]

        return function, BOOLEAN

    def _fn_length(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 0)

        def length(focus: list[Any], env: Env) -> list[Any]:
            value = single(focus)
            if value is None:
                return []
            if not isinstance(value, str):
                raise Fallback
            return [len(value)]

        return length, INTEGER

    def _fn_substring(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        """substring(start [, length]) (https://hl7.org/fhirpath/N1/#substringstart-integer-length-integer-string):
        empty when start is outside the string."""
        if len(params) not in (1, 2):
            raise Unsupported("arity")
        arguments = [self.compile(param, ANY)[0] for param in params]

        def substring(focus: list[Any], env: Env) -> list[Any]:
            value = single(focus)
            bounds = [single(argument(focus, env)) for argument in arguments]
            if value is None or any(bound is None for bound in bounds):
                return []
            if not isinstance(value, str) or not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
                raise Fallback
            start = bounds[0]
            if start < 0 or start >= len(value):
                return []
            end = len(value) if len(bounds) == 1 else start + max(bounds[1], 0)
            return [value[start:end]] if end > start else []

        return substring, STRING

    def _fn_matches(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        # Partial match, as fhirpathpy and the FHIRPath specification (anchors are the pattern's to give).
        return self._string_function(params, lambda value, regex: re.search(regex, value, re.DOTALL) is not None)

    def _fn_startsWith(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        return self._string_function(params, str.startswith)

    def _fn_contains(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        return self._string_function(params, lambda value, part: part in value)

    def _fn_is(self, params: list[Any], static: Static) -> tuple[Fn, Static]:
        self._arity(params, 1)
        return self._type_test({"type": "ThisInvocation"}, static, params[0].get("text", ""), False)

    def _type_test(self, operand: dict[str, Any], static: Static, type_name: str, cast: bool) -> tuple[Fn, Static]:
        """`X is T`, `X as T`, `X.is(T)`, `X.as(T)`, `X.ofType(T)`: on resources by their resourceType, on a
        choice element (`answer is Boolean`, `probability as decimal`) by the JSON key its value is in."""
        type_name = type_name.removeprefix("FHIR.").removeprefix("System.")
        target = operand
        while target["type"] in ("TermExpression", "InvocationTerm") and target.get("children"):
            target = target["children"][0]
        member: str | None = None
        parent: Fn = lambda focus, env: focus  # noqa: E731
        parent_static = static
        if target["type"] == "MemberInvocation":
            member = _identifier(target["children"][0])
        elif target["type"] == "InvocationExpression" and target["children"][1]["type"] == "MemberInvocation":
            member = _identifier(target["children"][1]["children"][0])
            parent, parent_static = self.compile(target["children"][0], static)
        if member is not None and parent_static[0] in ("pos", "res"):
            _, path, elements = _owner_elements(parent_static)
            choice = elements.get(f"{path}.{member}[x]" if path else f"{member}[x]")
            if choice is not None:
                return self._choice_test(parent, member, choice[0], type_name, cast)
        value, value_static = self.compile(operand, static)
        known = _static_type_name(value_static)
        if known is not None:  # a value whose type the definitions fix: the answer is known in advance
            matches = type_name in ancestry(known) or known in _SYSTEM_TYPES.get(type_name, ())
            if cast:
                return (value, value_static) if matches else (_nothing, EMPTY)

            def is_known(focus: list[Any], env: Env) -> list[Any]:
                found = value(focus, env)
                if len(found) > 1:
                    raise Fallback
                return [matches] if found else []

            return is_known, BOOLEAN
        if cast:
            raise Unsupported(f"as {type_name}")
        test, _ = self._is(type_name, value_static)
        return (lambda focus, env: test(value(focus, env), env)), BOOLEAN

    @staticmethod
    def _choice_test(parent: Fn, member: str, codes: list[str], type_name: str, cast: bool) -> tuple[Fn, Static]:
        def keys(chosen: list[str]) -> list[tuple[str, bool]]:
            return [(member + code[0].upper() + code[1:], kind_of(code) == "primitive-type") for code in chosen]

        matching = [code for code in codes if code == type_name or code in _SYSTEM_TYPES.get(type_name, ())]
        of_type = _navigate(keys(matching)) if matching else (lambda focus, env: [])
        if cast:
            static: Static = ANY
            if len(matching) == 1:
                kind = kind_of(matching[0])
                static = ("prim", matching[0]) if kind == "primitive-type" else ("pos", matching[0], "")
            return (lambda focus, env: of_type(parent(focus, env), env)), static
        any_type = _navigate(keys(codes))

        def is_(focus: list[Any], env: Env) -> list[Any]:
            parents = parent(focus, env)
            if not any_type(parents, env):
                return []
            if len(parents) > 1:
                raise Fallback
            return [bool(of_type(parents, env))]

        return is_, BOOLEAN

    def _is(self, type_name: str, static: Static) -> tuple[Fn, Static]:
        if type_name not in resource_types() or static[0] != "res":
            raise Unsupported(f"is {type_name}")

        def is_(focus: list[Any], env: Env) -> list[Any]:
            if not focus:
                return []
            if len(focus) > 1:
                raise Fallback
            return [isinstance(focus[0], dict) and focus[0].get("resourceType") == type_name]

        return is_, BOOLEAN

    @staticmethod
    def _arity(params: list[Any], count: int) -> None:
        if len(params) != count:
            raise Unsupported("arity")

    # operators

    def _operands(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static, Fn, Static]:
        left, left_static = self.compile(node["children"][0], static)
        right, right_static = self.compile(node["children"][1], static)
        return left, left_static, right, right_static

    def _TypeExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        cast = node["terminalNodeText"][0] == "as"
        return self._type_test(node["children"][0], static, node["children"][1].get("text", ""), cast)

    def _AndExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, _, right, _ = self._operands(node, static)

        def and_(focus: list[Any], env: Env) -> list[Any]:
            a = truth(left(focus, env))
            if a is False:
                return [False]
            b = truth(right(focus, env))
            if b is False:
                return [False]
            return [True] if a is True and b is True else []

        return and_, BOOLEAN

    def _OrExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, _, right, _ = self._operands(node, static)
        if node["terminalNodeText"][0] == "xor":

            def xor(focus: list[Any], env: Env) -> list[Any]:
                a, b = truth(left(focus, env)), truth(right(focus, env))
                return [] if a is None or b is None else [a != b]

            return xor, BOOLEAN

        def or_(focus: list[Any], env: Env) -> list[Any]:
            a = truth(left(focus, env))
            if a is True:
                return [True]
            b = truth(right(focus, env))
            if b is True:
                return [True]
            return [False] if a is False and b is False else []

        return or_, BOOLEAN

    def _ImpliesExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, _, right, _ = self._operands(node, static)

        def implies(focus: list[Any], env: Env) -> list[Any]:
            a = truth(left(focus, env))
            if a is False:
                return [True]
            b = truth(right(focus, env))
            if b is True:
                return [True]
            return [False] if a is True and b is False else []

        return implies, BOOLEAN

    @staticmethod
    def _comparable(static: Static) -> bool:
        return static[0] == "prim" and static[1] not in _DATE_TYPES and static[1] != "time"

    def _EqualityExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if operator in ("=", "!=") and EMPTY in (left_static, right_static):
            return _nothing, BOOLEAN  # `=` with an empty operand is empty
        if operator not in ("=", "!=") or not (self._comparable(left_static) and self._comparable(right_static)):
            raise Unsupported(f"{operator} on {left_static} and {right_static}")
        negate = operator == "!="

        def equality(focus: list[Any], env: Env) -> list[Any]:
            a, b = values_of(left(focus, env)), values_of(right(focus, env))
            if not a or not b:
                return []
            if len(a) == 1 and len(b) == 1:
                return [equal(a[0], b[0]) != negate]
            same = len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
            return [same != negate]

        return equality, BOOLEAN

    def _InequalityExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        dates = left_static[0] == "prim" and left_static[1] in _DATE_TYPES
        if dates != (right_static[0] == "prim" and right_static[1] in _DATE_TYPES):
            raise Unsupported("date against another type")
        quantities = left_static[:2] == ("pos", "Quantity") and right_static[:2] == ("pos", "Quantity")
        if not quantities and not (left_static[0] == "prim" and right_static[0] == "prim"):
            raise Unsupported(f"{operator} on {left_static} and {right_static}")
        test = {"<": lambda c: c < 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0}[operator]

        def inequality(focus: list[Any], env: Env) -> list[Any]:
            a, b = single(left(focus, env)), single(right(focus, env))
            if a is None or b is None:
                return []
            sign = order(a, b, dates)
            return [] if sign is None else [test(sign)]

        return inequality, BOOLEAN

    def _MembershipExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if operator == "in":
            element, element_static, collection = left, left_static, right
        else:
            element, element_static, collection = right, right_static, left
        if not self._comparable(element_static):
            raise Unsupported(f"{operator} on {element_static}")

        def membership(focus: list[Any], env: Env) -> list[Any]:
            value = single(element(focus, env))
            if value is None:
                return []
            return [contains(values_of(collection(focus, env)), value)]

        return membership, BOOLEAN

    def _UnionExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        left, left_static, right, right_static = self._operands(node, static)

        def union(focus: list[Any], env: Env) -> list[Any]:
            return distinct(left(focus, env) + right(focus, env))

        return union, left_static if left_static == right_static else ANY

    def _MultiplicativeExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        """`* / div mod` on numbers (https://hl7.org/fhirpath/N1/#math-1); quantities go to fhirpathpy."""
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if left_static[0] not in ("prim", "any") or right_static[0] not in ("prim", "any"):
            raise Unsupported(f"{operator} on {left_static}")

        def arithmetic(focus: list[Any], env: Env) -> list[Any]:
            a, b = single(left(focus, env)), single(right(focus, env))
            if a is None or b is None:
                return []
            if not (is_number(a) and is_number(b)):
                raise Fallback
            if operator == "*":
                return [a * b]
            if b == 0:
                return []  # division by zero is empty
            if operator == "/":
                return [Decimal(a) / Decimal(b)]
            if operator == "div":
                return [int(Decimal(a) / Decimal(b))]
            return [a - b * int(Decimal(a) / Decimal(b))]

        static_type = INTEGER if operator in ("div", "mod") or left_static == right_static == INTEGER else ANY
        return arithmetic, static_type

    def _AdditiveExpression(self, node: dict[str, Any], static: Static) -> tuple[Fn, Static]:
        operator = node["terminalNodeText"][0]
        left, left_static, right, right_static = self._operands(node, static)
        if operator == "&":

            def concatenate(focus: list[Any], env: Env) -> list[Any]:
                a, b = single(left(focus, env)), single(right(focus, env))
                if not isinstance(a, str | None) or not isinstance(b, str | None):
                    raise Fallback
                return [(a or "") + (b or "")]

            return concatenate, STRING
        if left_static[0] != "prim" or right_static[0] != "prim":
            raise Unsupported(f"{operator} on {left_static}")

        def arithmetic(focus: list[Any], env: Env) -> list[Any]:
            a, b = single(left(focus, env)), single(right(focus, env))
            if a is None or b is None:
                return []
            if is_number(a) and is_number(b):
                return [a + b if operator == "+" else a - b]
            if operator == "+" and isinstance(a, str) and isinstance(b, str):
                return [a + b]
            raise Fallback

        return arithmetic, left_static


def ancestry(type_code: str) -> list[str]:
    """The type and its base types (Age, Quantity, Element): what `is` accepts it as."""
    found = []
    while type_code and type_code not in found:
        found.append(type_code)
        type_code = (structure().get(type_code) or {}).get("base") or ""
    return found


def _static_type_name(static: Static) -> str | None:
    """The FHIR type a static type names exactly (a primitive, or a datatype's own position), if any."""
    if static[0] == "prim":
        return static[1]
    if static[0] == "pos" and static[2] == "":
        return static[1]
    return None


def compile_expression(expression: str, resource: Static, context: Static) -> Fn:
    """`expression` as a closure `(focus, env) -> collection`, for a node of static type `context` in a
    resource of static type `resource` (`%resource`'s). Raises `Unsupported` when it uses FHIRPath the
    compiler does not cover: the caller then lets fhirpathpy evaluate it."""
    from fhirpathpy.parser import parse

    compiled, _ = _Compiler(resource, context).compile(parse(expression)["children"][0], context)
    return compiled


def declared_static(owner: str, element_path: str, types: list[str]) -> Static:
    """The static type of `owner`'s element at `element_path` declared as `types`; ANY where the compiler
    has none for it."""
    try:
        return _element_static(owner, element_path, types)
    except Unsupported:
        return ANY
