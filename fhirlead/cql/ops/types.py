"""Type operators: Is, As, and the conversion operators (ToDecimal, ToDateTime, ToConcept...).

Type tests are compiled once into small predicates over the run-time value; FHIR types are tested
through the model (with derivation, so an `Age` is a `Quantity`), System types through Python classes.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

from fhirlead.cql import datetime as dt
from fhirlead.cql import quantity as q
from fhirlead.cql.clinical import Code, Concept, ValueSet
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles, type_key
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.interval import Interval
from fhirlead.cql.model import FHIR_NS, SYSTEM_NS, is_fhir_type, strip_namespace
from fhirlead.cql.quantity import Quantity, Ratio
from fhirlead.cql.tuples import Tuple

Tester = Callable[[Any], bool]

_SYSTEM_CLASSES: dict[str, tuple[type, ...]] = {
    "Boolean": (bool,),
    "Integer": (int,),
    "Long": (int,),
    "Decimal": (Decimal,),
    "String": (str,),
    "Date": (Date,),
    "DateTime": (DateTime,),
    "Time": (Time,),
    "Quantity": (Quantity,),
    "Ratio": (Ratio,),
    "Code": (Code,),
    "Concept": (Concept,),
    "ValueSet": (ValueSet,),
    "Vocabulary": (ValueSet,),
}


# Types of the FHIR and QI-Core model infos that are not FHIR StructureDefinitions: QI-Core's element
# types for extension values, and (below) the value-set-bound `code` types such as EncounterStatus.
_MODEL_INFO_TYPES: dict[str, tuple[str, type | None]] = {
    "NotDoneRecorded": ("dateTime", DateTime),  # qicore-recorded extension's value (a System.DateTime)
    "DoNotPerformReason": ("CodeableConcept", None),
    "NotDoneReason": ("CodeableConcept", None),
    "SimpleQuantity": ("Quantity", None),
    "MoneyQuantity": ("Quantity", None),
}


def _fhir_tester(name: str) -> Tester:
    """`is FHIR.<name>`, for the names the translator takes from the FHIR and QI-Core model infos.

    Backbone elements are named by path there with capitalised segments (`Encounter.Diagnosis` is
    `Encounter.diagnosis`); bound code types (`EncounterStatus`, `ObservationStatus`...) are `code`s;
    extension types (`USCoreRaceExtension`) are Extensions.
    """
    if "." in name:
        root, *rest = name.split(".")
        path = ".".join([root] + [seg[:1].lower() + seg[1:] for seg in rest])
        return lambda v: is_fhir_type(v, path) or is_fhir_type(v, name)
    if name in _fhir_type_names():
        return lambda v: is_fhir_type(v, name)
    alias = _MODEL_INFO_TYPES.get(name)
    if alias is not None:
        base, system_class = alias
        if system_class is not None:
            return lambda v: type(v) is system_class or is_fhir_type(v, base)
        return lambda v: is_fhir_type(v, base)
    if name.endswith("Extension"):
        return lambda v: is_fhir_type(v, "Extension")
    return lambda v: is_fhir_type(v, "code")


@cache
def _fhir_type_names() -> frozenset[str]:
    from fhirlead.cql.model import _types

    return frozenset(_types())


def tester(key: Any) -> Tester:
    """A predicate for `value is <type>` from a compiler.type_key."""
    if isinstance(key, str):
        ns, name = strip_namespace(key)
        if ns == SYSTEM_NS or ns == "":
            if name == "Any":
                return lambda v: True
            classes = _SYSTEM_CLASSES.get(name)
            if classes is None:
                raise CqlEvaluationError(f"unknown System type {name}")
            if name in ("Integer", "Long"):
                return lambda v: type(v) is int
            return lambda v: type(v) in classes
        if ns == FHIR_NS:
            return _fhir_tester(name)
        raise CqlEvaluationError(f"unknown model namespace {ns}")
    kind = key[0]
    if kind == "List":
        inner = tester(key[1])
        return lambda v: type(v) is list and all(x is None or inner(x) for x in v)
    if kind == "Interval":
        inner = tester(key[1])
        _ns, point_name = strip_namespace(key[1]) if isinstance(key[1], str) else ("", "")

        def is_interval(v: Any) -> bool:
            if type(v) is not Interval:
                return False
            if v.low is not None:
                return inner(v.low)
            if v.high is not None:
                return inner(v.high)
            return v.point_type is None or v.point_type == point_name

        return is_interval
    if kind == "Choice":
        testers = [tester(k) for k in key[1]]
        return lambda v: any(t(v) for t in testers)
    if kind == "Tuple":
        return lambda v: type(v) is Tuple
    if kind == "Parameter":  # a generic function's type parameter: any value
        return lambda v: True
    raise CqlEvaluationError(f"unsupported type specifier {key!r}")


def _target_test(node: dict[str, Any], lc: LibraryCompiler, name_attr: str, spec_attr: str) -> tuple[Any, Tester]:
    """The target type of an Is/As (its specifier, else its qualified name) and the test for it."""
    where = f"{lc.name} {lc.version}"
    key = type_key(node[spec_attr], where) if node.get(spec_attr) is not None else node.get(name_attr)
    if key is None:
        raise lc.unsupported(node, f"no {name_attr} or {spec_attr}")
    try:
        return key, tester(key)
    except CqlEvaluationError as exc:
        raise lc.unsupported(node, str(exc)) from None


@handles("Is")
def is_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    _key, test = _target_test(node, lc, "isType", "isTypeSpecifier")
    return lambda ctx: (v := a(ctx)) is not None and test(v)


@handles("As")
def as_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    key, test = _target_test(node, lc, "asType", "asTypeSpecifier")
    strict = bool(node.get("strict"))
    where = f"{lc.name} {node.get('locator', '')}"

    def f(ctx: Any) -> Any:
        v = a(ctx)
        if v is None or test(v):
            return v
        if strict:
            raise CqlEvaluationError(f"cannot cast {type(v).__name__} as {key} ({where})")
        return None

    return f


# ------------------------------------------------------------------------------------------ conversions


def to_decimal(v: Any, ctx: Any) -> Decimal | None:
    t = type(v)
    if t is Decimal:
        return v
    if t is int:
        return Decimal(v)
    if t is bool:
        return Decimal(1 if v else 0)
    if t is str:
        try:
            return Decimal(v.strip())
        except InvalidOperation:
            return None
    raise CqlEvaluationError(f"cannot convert {t.__name__} to Decimal")


def to_integer(v: Any, ctx: Any) -> int | None:
    t = type(v)
    if t is int:
        return v
    if t is bool:
        return 1 if v else 0
    if t is str:
        try:
            return int(v.strip())
        except ValueError:
            return None
    raise CqlEvaluationError(f"cannot convert {t.__name__} to Integer")


def to_string(v: Any, ctx: Any) -> str | None:
    t = type(v)
    if t is str:
        return v
    if t is bool:
        return "true" if v else "false"
    if t is int or t is Decimal:
        return str(v)
    if t in (Date, DateTime, Time):
        return v.iso()
    if t is Quantity:
        return f"{v.value} '{v.unit}'"
    raise CqlEvaluationError(f"cannot convert {t.__name__} to String")


def to_boolean(v: Any, ctx: Any) -> bool | None:
    t = type(v)
    if t is bool:
        return v
    if t is str:
        s = v.strip().lower()
        if s in ("true", "t", "yes", "y", "1"):
            return True
        if s in ("false", "f", "no", "n", "0"):
            return False
        return None
    if t is int or t is Decimal:
        return True if v == 1 else (False if v == 0 else None)
    raise CqlEvaluationError(f"cannot convert {t.__name__} to Boolean")


def to_datetime(v: Any, ctx: Any) -> DateTime | None:
    t = type(v)
    if t is DateTime:
        return v
    if t is Date:
        return v.to_datetime(ctx.tz)
    if t is str:
        return dt.parse_datetime(v, ctx.tz)
    raise CqlEvaluationError(f"cannot convert {t.__name__} to DateTime")


def to_date(v: Any, ctx: Any) -> Date | None:
    t = type(v)
    if t is Date:
        return v
    if t is DateTime:
        return v.to_date()
    if t is str:
        return dt.parse_date(v)
    raise CqlEvaluationError(f"cannot convert {t.__name__} to Date")


def to_time(v: Any, ctx: Any) -> Time | None:
    if type(v) is Time:
        return v
    if type(v) is str:
        return dt.parse_time(v)
    raise CqlEvaluationError(f"cannot convert {type(v).__name__} to Time")


def to_quantity(v: Any, ctx: Any) -> Quantity | None:
    t = type(v)
    if t is Quantity:
        return v
    if t is int or t is Decimal:
        return Quantity(v, "1")
    if t is str:
        parts = v.strip().split(None, 1)
        try:
            value = Decimal(parts[0])
        except (InvalidOperation, IndexError):
            return None
        unit = parts[1].strip("'") if len(parts) > 1 else "1"
        return Quantity(value, unit) if q.is_valid_unit(unit) else None
    if t is Ratio:
        return None
    raise CqlEvaluationError(f"cannot convert {t.__name__} to Quantity")


def to_concept(v: Any, ctx: Any) -> Concept | None:
    t = type(v)
    if t is Concept:
        return v
    if t is Code:
        return Concept([v])
    if t is list:
        return Concept([c for c in v if c is not None])
    raise CqlEvaluationError(f"cannot convert {t.__name__} to Concept")


def to_ratio(v: Any, ctx: Any) -> Ratio | None:
    if type(v) is Ratio:
        return v
    if type(v) is str:  # "<quantity>:<quantity>"
        parts = v.split(":")
        if len(parts) != 2:
            return None
        num, den = (to_quantity(p.strip(), ctx) for p in parts)
        return Ratio(num, den) if num is not None and den is not None else None
    raise CqlEvaluationError(f"cannot convert {type(v).__name__} to Ratio")


_CONVERSIONS: dict[str, Callable[[Any, Any], Any]] = {
    "ToDecimal": to_decimal,
    "ToInteger": to_integer,
    "ToLong": to_integer,
    "ToString": to_string,
    "ToBoolean": to_boolean,
    "ToDateTime": to_datetime,
    "ToDate": to_date,
    "ToTime": to_time,
    "ToQuantity": to_quantity,
    "ToConcept": to_concept,
    "ToRatio": to_ratio,
}


@handles(*_CONVERSIONS)
def conversion(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    fn = _CONVERSIONS[node["type"]]
    return lambda ctx: None if (v := a(ctx)) is None else fn(v, ctx)


@handles(
    "ConvertsToDecimal",
    "ConvertsToInteger",
    "ConvertsToString",
    "ConvertsToBoolean",
    "ConvertsToDateTime",
    "ConvertsToDate",
    "ConvertsToTime",
    "ConvertsToQuantity",
    "ConvertsToLong",
    "ConvertsToRatio",
)
def converts_to(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    fn = _CONVERSIONS["To" + node["type"][len("ConvertsTo") :]]

    def f(ctx: Any) -> bool | None:
        v = a(ctx)
        if v is None:
            return None
        try:
            return fn(v, ctx) is not None
        except CqlEvaluationError:
            return False

    return f


@handles("ConvertQuantity")
def convert_quantity(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, unit = lc.operands(node)

    def f(ctx: Any) -> Quantity | None:
        v, u = a(ctx), unit(ctx)
        if v is None or u is None:
            return None
        return q.convert(v, u)

    return f


@handles("CanConvertQuantity")
def can_convert_quantity(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    a, unit = lc.operands(node)

    def f(ctx: Any) -> bool | None:
        v, u = a(ctx), unit(ctx)
        if v is None or u is None:
            return None
        return q.convert(v, u) is not None

    return f
