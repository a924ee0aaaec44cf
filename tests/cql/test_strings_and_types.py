"""String operators, type tests/casts and conversions (CQL reference: String Operators, Type Operators)."""

from __future__ import annotations

from decimal import Decimal

from fhirlead.cql.datetime import Date
from tests.cql.elm import SYS, date, interval, lit, lst, null, op, qty, run, un


def test_concatenate_split_combine() -> None:
    assert run(op("Concatenate", lit("a"), lit("b"))) == "ab"
    assert run(op("Concatenate", lit("a"), null())) is None
    split = {"type": "Split", "stringToSplit": lit("Patient/123"), "separator": lit("/")}
    assert run(split) == ["Patient", "123"]
    assert run({"type": "Last", "source": split}) == "123"
    assert run({"type": "Combine", "source": lst(lit("a"), null(), lit("b")), "separator": lit("-")}) == "a-b"


def test_string_functions() -> None:
    assert run(un("Upper", lit("abc"))) == "ABC"
    assert run(op("StartsWith", lit("abc"), lit("ab"))) is True
    assert run(op("Matches", lit("12-34"), lit("\\d+-\\d+"))) is True
    assert (
        run({"type": "Substring", "stringToSub": lit("abcdef"), "startIndex": lit(2), "length": lit(2)})
        == "cd"
    )
    assert run({"type": "PositionOf", "pattern": lit("c"), "string": lit("abc")}) == 2
    assert run(un("Length", lit("abcd"))) == 4


def test_is_and_as_on_system_types() -> None:
    assert run({"type": "Is", "operand": lit(1), "isType": SYS + "Integer"}) is True
    assert run({"type": "Is", "operand": lit(True), "isType": SYS + "Integer"}) is False
    assert run({"type": "Is", "operand": null(), "isType": SYS + "Integer"}) is False
    interval_of_dates = {
        "type": "IntervalTypeSpecifier",
        "pointType": {"type": "NamedTypeSpecifier", "name": SYS + "Date"},
    }
    node = {
        "type": "Is",
        "operand": interval(date(2026, 1, 1), date(2026, 2, 1)),
        "isTypeSpecifier": interval_of_dates,
    }
    assert run(node) is True
    choice = {
        "type": "ChoiceTypeSpecifier",
        "choice": [
            {"type": "NamedTypeSpecifier", "name": SYS + "String"},
            {"type": "NamedTypeSpecifier", "name": SYS + "Quantity"},
        ],
    }
    assert run({"type": "As", "operand": qty(1, "mg"), "asTypeSpecifier": choice}) is not None
    assert run({"type": "As", "operand": lit(1), "asTypeSpecifier": choice}) is None


def test_conversions() -> None:
    assert run(un("ToDecimal", lit(2))) == Decimal(2)
    assert run(un("ToDecimal", lit("x"))) is None
    assert run(un("ToInteger", lit("42"))) == 42
    assert run(un("ToString", lit(Decimal("1.50")))) == "1.50"
    assert run(un("ToString", date(2026, 1, 2))) == "2026-01-02"
    assert run(un("ToBoolean", lit("yes"))) is True
    assert run(un("ToBoolean", lit("maybe"))) is None
    assert run(un("ToDate", lit("2026-01-02"))) == Date(2026, 1, 2)
    assert run(un("ConvertsToInteger", lit("x"))) is False
    assert run(un("ConvertsToDate", lit("2026-01-02"))) is True
