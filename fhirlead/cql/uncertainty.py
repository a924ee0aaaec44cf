"""Uncertainty: the range of possible values of a calculation on imprecise dates.

`duration in years between @2000 and @2020-06-01` is "19 or 20": CQL represents that as an
uncertainty, and comparisons against it are true or false only when every possible value agrees.
"""

from __future__ import annotations

from typing import Any


class Uncertainty:
    """A closed range [low, high] of integers standing for one unknown value."""

    __slots__ = ("high", "low")

    def __init__(self, low: Any, high: Any) -> None:
        self.low = low
        self.high = high

    def __repr__(self) -> str:
        return f"Uncertainty[{self.low}, {self.high}]"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Uncertainty) and (self.low, self.high) == (other.low, other.high)

    def __hash__(self) -> int:
        return hash(("Uncertainty", self.low, self.high))


def bounds(x: Any) -> tuple[Any, Any]:
    """(low, high) for an Uncertainty, or (x, x) for a plain value."""
    if type(x) is Uncertainty:
        return x.low, x.high
    return x, x


def combine(op: Any, a: Any, b: Any) -> Any:
    """Apply a monotone binary arithmetic op to uncertain operands (e.g. age + 1)."""
    a_lo, a_hi = bounds(a)
    b_lo, b_hi = bounds(b)
    results = [op(x, y) for x in (a_lo, a_hi) for y in (b_lo, b_hi)]
    low, high = min(results), max(results)
    return low if low == high else Uncertainty(low, high)
