"""Equality (=), equivalence (~) and ordering across types (CQL reference: Comparison Operators)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhirlead.cql.errors import CqlEvaluationError
from tests.cql.elm import code, concept, interval, lit, lst, null, op, qty, run, tup

D = Decimal


def test_equal_with_null_is_null_and_equivalent_is_never_null() -> None:
    assert run(op("Equal", lit(1), null())) is None
    assert run(op("Equivalent", lit(1), null())) is False
    assert run(op("Equivalent", null(), null())) is True
    assert run(op("NotEqual", lit(1), lit(2))) is True
    assert run(op("NotEqual", lit(1), null())) is None


def test_string_equality_is_exact_and_equivalence_ignores_case_and_whitespace() -> None:
    assert run(op("Equal", lit("Abc"), lit("abc"))) is False
    assert run(op("Equivalent", lit("Abc  def"), lit("abc def"))) is True
    assert run(op("Equivalent", lit("abc"), lit("abd"))) is False


def test_decimal_equality_ignores_trailing_zeros_and_equivalence_uses_least_precision() -> None:
    assert run(op("Equal", lit(D("1.0")), lit(D("1.00")))) is True
    assert run(op("Equal", lit(1), lit(D("1.0")))) is True
    assert run(op("Equivalent", lit(D("1.01")), lit(D("1.0")))) is True
    assert run(op("Equivalent", lit(D("1.1")), lit(D("1.2")))) is False


def test_ordering_and_null() -> None:
    assert run(op("Less", lit(1), lit(2))) is True
    assert run(op("GreaterOrEqual", lit("b"), lit("a"))) is True
    assert run(op("LessOrEqual", lit(2), null())) is None
    with pytest.raises(CqlEvaluationError):
        run(op("Less", lit("a"), lit(1)))


def test_code_equality_and_equivalence() -> None:
    a = code("8480-6", "http://loinc.org", "Systolic")
    b = code("8480-6", "http://loinc.org")
    assert run(op("Equal", a, a)) is True
    # equality compares every element (display differs -> null because b has none)
    assert run(op("Equal", a, b)) is None
    # equivalence: code and system only
    assert run(op("Equivalent", a, b)) is True
    assert run(op("Equivalent", a, code("8462-4", "http://loinc.org"))) is False
    assert run(op("Equivalent", a, code("8480-6", "http://snomed.info/sct"))) is False


def test_concept_equivalence_is_a_non_empty_intersection() -> None:
    c1 = concept(code("1", "s"), code("2", "s"))
    c2 = concept(code("2", "s"), code("3", "s"))
    c3 = concept(code("4", "s"))
    assert run(op("Equivalent", c1, c2)) is True
    assert run(op("Equivalent", c1, c3)) is False
    assert run(op("Equivalent", c1, {"type": "ToConcept", "operand": code("1", "s")})) is True


def test_list_equality() -> None:
    assert run(op("Equal", lst(lit(1), lit(2)), lst(lit(1), lit(2)))) is True
    assert run(op("Equal", lst(lit(1), lit(2)), lst(lit(2), lit(1)))) is False
    assert run(op("Equal", lst(lit(1), null()), lst(lit(1), null()))) is True  # null elements compare equal
    assert run(op("Equivalent", lst(lit("A")), lst(lit("a")))) is True


def test_tuple_equality() -> None:
    t1 = tup(a=lit(1), b=lit("x"))
    assert run(op("Equal", t1, tup(a=lit(1), b=lit("x")))) is True
    assert run(op("Equal", t1, tup(a=lit(1), b=lit("y")))) is False
    assert run(op("Equal", tup(a=lit(1), b=null()), tup(a=lit(1), b=null()))) is True
    assert run(op("Equivalent", tup(a=lit("X")), tup(a=lit("x")))) is True


def test_interval_equality() -> None:
    assert run(op("Equal", interval(lit(1), lit(5)), interval(lit(1), lit(6), True, False))) is True
    assert run(op("Equal", interval(lit(1), lit(5)), interval(lit(1), lit(6)))) is False


def test_quantity_equivalence_converts_units() -> None:
    assert run(op("Equivalent", qty(D("100"), "cm"), qty(D("1"), "m"))) is True
    assert run(op("Equivalent", qty(D("1"), "m"), qty(D("1"), "g"))) is False
