"""The CQL Interval value: two boundaries, each open or closed, either possibly null.

A null closed boundary means "from the beginning/to the end of time"; a null open boundary means
"unknown". Operators live in `fhirlead.cql.ops.intervals`; this module only holds the value.
"""

from __future__ import annotations

from typing import Any


class Interval:
    """Interval[low, high] with closedness flags; `point_type` names the point type when known."""

    __slots__ = ("high", "high_closed", "low", "low_closed", "point_type")

    def __init__(
        self,
        low: Any,
        high: Any,
        low_closed: bool = True,
        high_closed: bool = True,
        point_type: str | None = None,
    ) -> None:
        self.low = low
        self.high = high
        self.low_closed = low_closed
        self.high_closed = high_closed
        self.point_type = point_type

    def __repr__(self) -> str:
        return (
            f"{'[' if self.low_closed else '('}{self.low!r}, {self.high!r}{']' if self.high_closed else ')'}"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Interval)
            and self.low_closed == other.low_closed
            and self.high_closed == other.high_closed
            and self.low == other.low
            and self.high == other.high
        )

    def __hash__(self) -> int:
        return hash("Interval")
