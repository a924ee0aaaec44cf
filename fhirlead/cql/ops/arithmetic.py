"""Arithmetic: numbers, quantities, and date/time plus or minus a calendar quantity.

Integers stay Python ints, Decimals are `decimal.Decimal` (CQL Decimal has 8 digits after the point:
division results are rounded to that scale). Any null operand gives null; division by zero gives null.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from fhirlead.cql import datetime as dt
from fhirlead.cql import quantity as q
from fhirlead.cql import uncertainty
from fhirlead.cql.compiler import Fn, LibraryCompiler, handles
from fhirlead.cql.datetime import Date, DateTime, Time
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.model import strip_namespace
from fhirlead.cql.quantity import Quantity
from fhirlead.cql.ucum import round8
from fhirlead.cql.uncertainty import Uncertainty

_TEMPORAL = (Date, DateTime, Time)

MIN_INT, MAX_INT = -(2**31), 2**31 - 1
MIN_LONG, MAX_LONG = -(2**63), 2**63 - 1
MAX_DECIMAL = Decimal("99999999999999999999.99999999")
MIN_DECIMAL = -MAX_DECIMAL


def _temporal_shift(value: Any, amount: Quantity, sign: int) -> Any:
    unit = q.calendar_unit(amount.unit) or amount.unit
    if unit in ("a", "mo"):
        raise CqlEvaluationError(
            f"definite-duration unit '{unit}' cannot be added to a date; use a calendar unit"
        )
    return value.add(amount.value * sign, unit)


def add(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ta = type(a)
    if ta in _TEMPORAL:
        if type(b) is not Quantity:
            raise CqlEvaluationError(f"cannot add {type(b).__name__} to {ta.__name__}")
        return _temporal_shift(a, b, 1)
    if ta is Quantity:
        if type(b) is not Quantity:
            raise CqlEvaluationError("cannot add a number to a Quantity")
        return q.add(a, b)
    if ta is Uncertainty or type(b) is Uncertainty:
        return uncertainty.combine(lambda x, y: x + y, a, b)
    if ta is str:
        return a + b
    return a + b


def subtract(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    ta = type(a)
    if ta in _TEMPORAL:
        if type(b) is not Quantity:
            raise CqlEvaluationError(f"cannot subtract {type(b).__name__} from {ta.__name__}")
        return _temporal_shift(a, b, -1)
    if ta is Quantity:
        if type(b) is not Quantity:
            raise CqlEvaluationError("cannot subtract a number from a Quantity")
        return q.subtract(a, b)
    if ta is Uncertainty or type(b) is Uncertainty:
        return uncertainty.combine(lambda x, y: x - y, a, b)
    return a - b


def multiply(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if type(a) is Quantity or type(b) is Quantity:
        return q.multiply(a, b)
    if type(a) is Uncertainty or type(b) is Uncertainty:
        return uncertainty.combine(lambda x, y: x * y, a, b)
    return a * b


def divide(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if type(a) is Quantity or type(b) is Quantity:
        return q.divide(a, b)
    if b == 0:
        return None
    try:
        return round8(Decimal(a) / Decimal(b))
    except InvalidOperation:
        return None


def _binary(fn: Any) -> Any:
    def compile_binary(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        a, b = lc.operands(node)
        return lambda ctx: fn(a(ctx), b(ctx))

    return compile_binary


handles("Add")(_binary(add))
handles("Subtract")(_binary(subtract))
handles("Multiply")(_binary(multiply))
handles("Divide")(_binary(divide))


def truncated_divide(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if type(a) is Quantity:
        if type(b) is not Quantity or b.value == 0:
            return None
        pair = q.convert(b, a.unit)
        if pair is None:
            return None
        return Quantity(_trunc(a.value / pair.value), "1")
    if b == 0:
        return None
    result = Decimal(a) / Decimal(b)
    return int(result) if type(a) is int and type(b) is int else Decimal(_trunc(result))


def _trunc(value: Decimal) -> int:
    return int(value)


def modulo(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if type(a) is Quantity:
        if type(b) is not Quantity or b.value == 0:
            return None
        other = q.convert(b, a.unit)
        if other is None:
            return None
        return Quantity(a.value - other.value * _trunc(a.value / other.value), a.unit)
    if b == 0:
        return None
    if type(a) is int and type(b) is int:
        return a - b * int(a / b)
    da, db = Decimal(a), Decimal(b)
    return da - db * _trunc(da / db)


handles("TruncatedDivide")(_binary(truncated_divide))
handles("Modulo")(_binary(modulo))


def power(a: Any, b: Any) -> Any:
    if a is None or b is None:
        return None
    if type(a) is int and type(b) is int and b >= 0:
        return a**b
    try:
        return round8(Decimal(a) ** Decimal(b))
    except InvalidOperation:
        return None


handles("Power")(_binary(power))


def log(a: Any, base: Any) -> Any:
    if a is None or base is None or a <= 0 or base <= 0 or base == 1:
        return None
    return round8(Decimal(math.log(float(a), float(base))))


handles("Log")(_binary(log))


def _unary(fn: Any) -> Any:
    def compile_unary(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
        (a,) = lc.operands(node)

        def f(ctx: Any) -> Any:
            v = a(ctx)
            return None if v is None else fn(v)

        return f

    return compile_unary


def _negate(v: Any) -> Any:
    if type(v) is Quantity:
        return Quantity(-v.value, v.unit)
    return -v


def _abs(v: Any) -> Any:
    if type(v) is Quantity:
        return Quantity(abs(v.value), v.unit)
    return abs(v)


def _ceiling(v: Any) -> int:
    return int(Decimal(v).to_integral_value(ROUND_CEILING))


def _floor(v: Any) -> int:
    return int(Decimal(v).to_integral_value(ROUND_FLOOR))


def _truncate(v: Any) -> int:
    return int(v)


def _ln(v: Any) -> Decimal | None:
    return None if v <= 0 else round8(Decimal(math.log(float(v))))


def _exp(v: Any) -> Decimal | None:
    try:
        return round8(Decimal(math.exp(float(v))))
    except OverflowError:
        return None


handles("Negate")(_unary(_negate))
handles("Abs")(_unary(_abs))
handles("Ceiling")(_unary(_ceiling))
handles("Floor")(_unary(_floor))
handles("Truncate")(_unary(_truncate))
handles("Ln")(_unary(_ln))
handles("Exp")(_unary(_exp))


@handles("Round")
def round_(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    (a,) = lc.operands(node)
    precision = lc.compile(node["precision"]) if node.get("precision") else (lambda ctx: 0)

    def f(ctx: Any) -> Any:
        v = a(ctx)
        if v is None:
            return None
        p = precision(ctx) or 0
        return Decimal(v).quantize(Decimal(1).scaleb(-p), rounding=ROUND_HALF_UP)

    return f


def successor(v: Any) -> Any:
    t = type(v)
    if t is int:
        if v >= MAX_INT:
            raise CqlEvaluationError("successor of the maximum Integer")
        return v + 1
    if t is Decimal:
        return v + Decimal("0.00000001")
    if t is Quantity:
        return Quantity(v.value + Decimal("0.00000001"), v.unit)
    if t in _TEMPORAL:
        return dt.successor(v)
    raise CqlEvaluationError(f"no successor for {t.__name__}")


def predecessor(v: Any) -> Any:
    t = type(v)
    if t is int:
        if v <= MIN_INT:
            raise CqlEvaluationError("predecessor of the minimum Integer")
        return v - 1
    if t is Decimal:
        return v - Decimal("0.00000001")
    if t is Quantity:
        return Quantity(v.value - Decimal("0.00000001"), v.unit)
    if t in _TEMPORAL:
        return dt.predecessor(v)
    raise CqlEvaluationError(f"no predecessor for {t.__name__}")


handles("Successor")(_unary(successor))
handles("Predecessor")(_unary(predecessor))


def min_value(type_name: str, tz: int) -> Any:
    return {
        "Integer": MIN_INT,
        "Long": MIN_LONG,
        "Decimal": MIN_DECIMAL,
        "Date": dt.MIN_DATE,
        "DateTime": dt.min_datetime(tz),
        "Time": dt.MIN_TIME,
    }.get(type_name)


def max_value(type_name: str, tz: int) -> Any:
    return {
        "Integer": MAX_INT,
        "Long": MAX_LONG,
        "Decimal": MAX_DECIMAL,
        "Date": dt.MAX_DATE,
        "DateTime": dt.max_datetime(tz),
        "Time": dt.MAX_TIME,
    }.get(type_name)


@handles("MinValue", "MaxValue")
def min_max_value(node: dict[str, Any], lc: LibraryCompiler) -> Fn:
    _ns, name = strip_namespace(node["valueType"])
    getter = min_value if node["type"] == "MinValue" else max_value
    if getter(name, 0) is None:
        raise lc.unsupported(node, f"no {node['type']} for {name}")
    return lambda ctx: getter(name, ctx.tz)
