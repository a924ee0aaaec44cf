"""Arithmetic on numbers and quantities, UCUM conversion (CQL reference: Arithmetic Operators,
Quantity equality and comparison)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhirlead.cql import quantity as q
from fhirlead.cql import ucum
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.quantity import Quantity
from tests.cql.elm import lit, null, op, qty, run, un

D = Decimal


def test_integer_and_decimal_arithmetic() -> None:
    assert run(op("Add", lit(1), lit(2))) == 3
    assert run(op("Subtract", lit(D("5.5")), lit(2))) == D("3.5")
    assert run(op("Multiply", lit(3), lit(4))) == 12
    assert run(op("Divide", lit(D("10")), lit(D("4")))) == D("2.5")
    # CQL Decimal has 8 digits after the point
    assert run(op("Divide", lit(D("1")), lit(D("3")))) == D("0.33333333")


def test_decimal_arithmetic_is_exact() -> None:
    assert run(op("Equal", op("Add", lit(D("0.1")), lit(D("0.2"))), lit(D("0.3")))) is True


@pytest.mark.parametrize(
    "node_type", ["Add", "Subtract", "Multiply", "Divide", "TruncatedDivide", "Modulo", "Power"]
)
def test_null_operand_gives_null(node_type: str) -> None:
    assert run(op(node_type, lit(1), null())) is None
    assert run(op(node_type, null(), lit(1))) is None


def test_division_by_zero_is_null() -> None:
    assert run(op("Divide", lit(D("1")), lit(D("0")))) is None
    assert run(op("TruncatedDivide", lit(1), lit(0))) is None
    assert run(op("Modulo", lit(1), lit(0))) is None


def test_truncated_divide_and_modulo_follow_the_dividend_sign() -> None:
    assert run(op("TruncatedDivide", lit(-7), lit(2))) == -3
    assert run(op("Modulo", lit(-7), lit(2))) == -1
    assert run(op("Modulo", lit(D("5.5")), lit(D("2")))) == D("1.5")


def test_rounding_family() -> None:
    assert run(un("Ceiling", lit(D("1.1")))) == 2
    assert run(un("Floor", lit(D("-1.1")))) == -2
    assert run(un("Truncate", lit(D("-1.9")))) == -1
    assert run({"type": "Round", "operand": lit(D("3.14159")), "precision": lit(2)}) == D("3.14")
    assert run({"type": "Round", "operand": lit(D("0.5"))}) == D("1")
    assert run(un("Abs", lit(-5))) == 5
    assert run(un("Negate", qty(D("3"), "mg"))) == Quantity(D("-3"), "mg")
    assert run(op("Power", lit(2), lit(10))) == 1024


def test_successor_predecessor_and_limits() -> None:
    assert run(un("Successor", lit(1))) == 2
    assert run(un("Predecessor", lit(D("1.0")))) == D("0.99999999")
    assert run({"type": "MaxValue", "valueType": "{urn:hl7-org:elm-types:r1}Integer"}) == 2**31 - 1
    with pytest.raises(CqlEvaluationError):
        run(un("Successor", {"type": "MaxValue", "valueType": "{urn:hl7-org:elm-types:r1}Integer"}))


def test_quantity_arithmetic_converts_units() -> None:
    assert run(op("Add", qty(D("1"), "g"), qty(D("500"), "mg"))) == Quantity(D("1.5"), "g")
    assert run(op("Subtract", qty(D("2"), "m"), qty(D("50"), "cm"))) == Quantity(D("1.5"), "m")
    assert run(op("Multiply", qty(D("2"), "m"), qty(D("3"), "m"))).unit == "m.m"
    assert run(op("Divide", qty(D("10"), "mg"), qty(D("2"), "mg"))) == Quantity(D("5"), "1")


def test_quantity_comparison_across_units() -> None:
    assert run(op("Less", qty(D("139"), "mm[Hg]"), qty(D("140"), "mm[Hg]"))) is True
    assert run(op("Equal", qty(D("1"), "m"), qty(D("100"), "cm"))) is True
    assert run(op("Greater", qty(D("9.1"), "%"), qty(D("9"), "%"))) is True
    assert run(op("Equal", qty(D("1"), "kPa"), qty(D("7.50061683"), "mm[Hg]"))) is False
    # incommensurable units cannot be compared
    assert run(op("Less", qty(D("1"), "m"), qty(D("1"), "g"))) is None
    assert run(op("Equal", qty(D("1"), "m"), qty(D("1"), "g"))) is None


def test_calendar_durations_versus_ucum_durations() -> None:
    assert q.equal(Quantity(1, "day"), Quantity(24, "h")) is True
    assert q.equal(Quantity(1, "week"), Quantity(7, "days")) is True
    assert q.equal(Quantity(1, "year"), Quantity(12, "months")) is True
    # years/months are not comparable to definite durations...
    assert q.equal(Quantity(1, "year"), Quantity(1, "a")) is None
    assert q.equal(Quantity(1, "month"), Quantity(30, "days")) is None
    # ...but are equivalent to their UCUM counterparts
    assert q.equivalent(Quantity(1, "year"), Quantity(1, "a")) is True
    assert q.equivalent(Quantity(1, "month"), Quantity(1, "mo")) is True


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        ("1", "mm[Hg]", "kPa", "0.133322"),
        ("1", "kg", "g", "1000"),
        ("250", "mg/dL", "g/L", "2.5"),
        ("1", "wk", "d", "7"),
        ("1", "a", "d", "365.25"),
        ("5", "%", "1", "0.05"),
        ("1", "10*3/uL", "10*9/L", "1"),
        ("37", "Cel", "K", "310.15"),
        ("212", "[degF]", "Cel", "100"),
        ("1", "[lb_av]", "kg", "0.45359237"),
        ("2", "[iU]/mL", "[iU]/L", "2000"),
    ],
)
def test_ucum_conversions(value: str, source: str, target: str, expected: str) -> None:
    assert ucum.convert(D(value), source, target) == D(expected)


def test_ucum_rejects_incommensurable_or_unknown_units() -> None:
    assert ucum.convert(D(1), "mmol/L", "mg/dL") is None  # needs a molar mass
    assert ucum.convert(D(1), "[iU]", "mg") is None
    assert ucum.convert(D(1), "foo", "m") is None
    assert not ucum.is_valid("m//s")
    assert ucum.is_valid("mL/min/{1.73_m2}")


def test_to_quantity_and_convert_quantity() -> None:
    assert run(un("ToQuantity", lit("5.5 'mg'"))) == Quantity(D("5.5"), "mg")
    assert run(un("ToQuantity", lit("5 'not a unit'"))) is None
    node = {"type": "ConvertQuantity", "operand": [qty(D("5"), "mg"), lit("g")]}
    assert run(node) == Quantity(D("0.005"), "g")
