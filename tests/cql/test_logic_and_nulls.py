"""Three-valued logic, nullological operators and conditionals (CQL reference: Logical, Nullological,
Conditional operators)."""

from __future__ import annotations

import pytest

from fhirlead.cql.errors import CqlEvaluationError
from tests.cql.elm import lit, lst, null, op, run, un

T, F, N = True, False, None


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(T, T, T), (T, F, F), (T, N, N), (F, T, F), (F, F, F), (F, N, F), (N, T, N), (N, F, F), (N, N, N)],
)
def test_and_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert run(op("And", lit(a), lit(b))) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(T, T, T), (T, F, T), (T, N, T), (F, T, T), (F, F, F), (F, N, N), (N, T, T), (N, F, N), (N, N, N)],
)
def test_or_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert run(op("Or", lit(a), lit(b))) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(T, T, F), (T, F, T), (T, N, N), (F, T, T), (F, F, F), (F, N, N), (N, T, N), (N, F, N), (N, N, N)],
)
def test_xor_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert run(op("Xor", lit(a), lit(b))) is expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(T, T, T), (T, F, F), (T, N, N), (F, T, T), (F, F, T), (F, N, T), (N, T, T), (N, F, N), (N, N, N)],
)
def test_implies_truth_table(a: bool | None, b: bool | None, expected: bool | None) -> None:
    assert run(op("Implies", lit(a), lit(b))) is expected


@pytest.mark.parametrize(("a", "expected"), [(T, F), (F, T), (N, N)])
def test_not(a: bool | None, expected: bool | None) -> None:
    assert run(un("Not", lit(a))) is expected


def test_and_does_not_evaluate_right_side_when_left_is_false() -> None:
    failing = {"type": "SingletonFrom", "operand": lst(lit(1), lit(2))}
    assert run(op("And", lit(False), op("Equal", failing, lit(1)))) is False
    with pytest.raises(CqlEvaluationError):
        run(op("And", lit(True), op("Equal", failing, lit(1))))


def test_is_null_is_true_is_false() -> None:
    assert run(un("IsNull", null())) is True
    assert run(un("IsNull", lit(0))) is False
    assert run(un("IsTrue", null())) is False
    assert run(un("IsFalse", lit(False))) is True


def test_coalesce_returns_first_non_null() -> None:
    assert run(op("Coalesce", null(), null(), lit("x"), lit("y"))) == "x"
    assert run(op("Coalesce", null(), null())) is None
    # the single-list overload looks inside the list
    assert run(op("Coalesce", lst(null(), lit(3), lit(4)))) == 3


def test_if_treats_null_condition_as_false() -> None:
    node = {"type": "If", "condition": null(), "then": lit(1), "else": lit(2)}
    assert run(node) == 2


def test_case_with_and_without_comparand() -> None:
    searched = {
        "type": "Case",
        "caseItem": [{"when": lit(False), "then": lit("a")}, {"when": lit(True), "then": lit("b")}],
        "else": lit("c"),
    }
    assert run(searched) == "b"
    selected = {
        "type": "Case",
        "comparand": lit(2),
        "caseItem": [{"when": lit(1), "then": lit("one")}, {"when": lit(2), "then": lit("two")}],
        "else": lit("other"),
    }
    assert run(selected) == "two"
    nothing = {
        "type": "Case",
        "comparand": null(),
        "caseItem": [{"when": null(), "then": lit("x")}],
        "else": lit("else"),
    }
    assert run(nothing) == "else"  # null = null is null, not true


def test_message_error_raises_and_other_severities_pass_through() -> None:
    def message(severity: str) -> dict:
        return {
            "type": "Message",
            "source": lit(5),
            "condition": lit(True),
            "code": lit("C1"),
            "severity": lit(severity),
            "message": lit("boom"),
        }

    with pytest.raises(CqlEvaluationError, match="boom"):
        run(message("Error"))
    assert run(message("Warning")) == 5
