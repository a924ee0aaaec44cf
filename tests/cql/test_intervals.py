"""Interval operators and interval timing phrases (CQL reference: Interval Operators; Author's guide:
Timing and Interval Operators), including null boundaries and precision-qualified forms."""

from __future__ import annotations

from decimal import Decimal

from fhirlead.cql.datetime import DateTime
from fhirlead.cql.interval import Interval
from tests.cql.elm import date, dt, interval, lit, lst, null, op, qty, run, un


def iv(a: int | None, b: int | None, lc: bool = True, hc: bool = True) -> dict:
    return interval(lit(a) if a is not None else None, lit(b) if b is not None else None, lc, hc)


MP = interval(dt(2026, 1, 1, 0, 0, 0, 0), dt(2026, 12, 31, 23, 59, 59, 999))


def test_membership_with_open_and_closed_boundaries() -> None:
    assert run(op("In", lit(3), iv(1, 5))) is True
    assert run(op("In", lit(5), iv(1, 5, hc=False))) is False
    assert run(op("In", lit(1), iv(1, 5, lc=False))) is False
    assert run(op("Contains", iv(1, 5), lit(5))) is True
    assert run(op("In", null(), iv(1, 5))) is None


def test_null_boundaries() -> None:
    # a closed null boundary is the beginning/end of time...
    assert run(op("In", lit(-1000), iv(None, 5))) is True
    assert run(op("In", lit(10**6), iv(1, None))) is True
    # ...an open null boundary is unknown
    assert run(op("In", lit(3), iv(None, 5, lc=False))) is None
    assert run(op("In", lit(6), iv(None, 5, lc=False))) is False
    assert run(un("Start", iv(None, 5, lc=False))) is None
    assert run(un("Start", iv(None, 5))) == -(2**31)
    assert run(un("End", iv(1, None, hc=False))) is None


def test_start_and_end_of_open_intervals() -> None:
    assert run(un("Start", iv(1, 5, lc=False))) == 2
    assert run(un("End", iv(1, 5, hc=False))) == 4
    assert run(un("End", interval(dt(2026, 1, 1), dt(2026, 2, 1), True, False))) == DateTime((2026, 1, 31), 0)


def test_overlaps_family() -> None:
    assert run(op("Overlaps", iv(1, 5), iv(4, 7))) is True
    assert run(op("Overlaps", iv(1, 5), iv(6, 7))) is False
    assert run(op("Overlaps", iv(1, 5, hc=False), iv(5, 7))) is False
    assert run(op("OverlapsBefore", iv(1, 5), iv(4, 7))) is True
    assert run(op("OverlapsBefore", iv(4, 7), iv(1, 5))) is False
    assert run(op("OverlapsAfter", iv(4, 7), iv(1, 5))) is True
    # unknown start (at most 5): overlaps [4, 7] for any start; [1, 3] only if it starts by 3
    assert run(op("Overlaps", iv(None, 5, lc=False), iv(4, 7))) is True
    assert run(op("Overlaps", iv(None, 5, lc=False), iv(1, 3))) is None
    assert run(op("Overlaps", iv(None, 5, lc=False), iv(6, 9))) is False
    assert run(op("Overlaps", iv(1, 5), null())) is None


def test_includes_and_proper_includes() -> None:
    assert run(op("Includes", iv(1, 10), iv(3, 5))) is True
    assert run(op("Includes", iv(1, 10), iv(3, 11))) is False
    assert run(op("IncludedIn", iv(3, 5), iv(1, 10))) is True
    assert run(op("ProperIncludes", iv(1, 10), iv(1, 10))) is False
    assert run(op("ProperIncludes", iv(1, 10), iv(1, 9))) is True
    assert run(op("IncludedIn", lit(5), iv(1, 10))) is True  # point overload


def test_starts_ends_meets_before_after() -> None:
    assert run(op("Starts", iv(1, 3), iv(1, 10))) is True
    assert run(op("Starts", iv(2, 3), iv(1, 10))) is False
    assert run(op("Ends", iv(5, 10), iv(1, 10))) is True
    assert run(op("Meets", iv(1, 5), iv(6, 10))) is True
    assert run(op("MeetsBefore", iv(1, 5), iv(7, 10))) is False
    assert run(op("MeetsAfter", iv(6, 10), iv(1, 5))) is True
    assert run(op("Before", iv(1, 5), iv(6, 10))) is True
    assert run(op("After", iv(6, 10), iv(1, 5))) is True
    assert run(op("Before", lit(0), iv(1, 5))) is True  # point before interval
    assert run(op("SameAs", iv(1, 5), iv(1, 6, hc=False))) is True


def test_set_operations() -> None:
    assert run(op("Union", iv(1, 5), iv(3, 7))) == Interval(1, 7)
    assert run(op("Union", iv(1, 5), iv(6, 9))) == Interval(1, 9)  # meets
    assert run(op("Union", iv(1, 5), iv(7, 9))) is None
    assert run(op("Intersect", iv(1, 5), iv(3, 7))) == Interval(3, 5)
    assert run(op("Intersect", iv(1, 5), iv(6, 7))) is None
    assert run(op("Except", iv(1, 7), iv(5, 9))) == Interval(1, 5, True, False)
    assert run(op("Except", iv(1, 7), iv(3, 5))) is None  # would split in two


def test_width_collapse_expand() -> None:
    assert run(un("Width", iv(1, 5))) == 4
    assert run(op("Collapse", lst(iv(1, 5), iv(3, 7), iv(9, 10)), null())) == [
        Interval(1, 7),
        Interval(9, 10),
    ]
    assert run(op("Collapse", lst(iv(6, 7), iv(1, 5)), null())) == [Interval(1, 7)]
    assert run(op("Expand", lst(iv(1, 3)), null())) == [Interval(1, 1), Interval(2, 2), Interval(3, 3)]
    assert run(op("Expand", lst(iv(1, 6)), qty(2))) == [Interval(1, 2), Interval(3, 4), Interval(5, 6)]
    days = run(
        op(
            "Collapse",
            lst(
                interval(date(2026, 1, 1), date(2026, 1, 10)), interval(date(2026, 1, 11), date(2026, 1, 20))
            ),
            qty(1, "day"),
        )
    )
    assert len(days) == 1


def test_datetime_interval_phrases_with_precision() -> None:
    # "X during day of MP": the last day is included at day precision, not at unqualified precision
    last_day = dt(2026, 12, 31)
    assert run(op("In", last_day, MP, precision="Day")) is True
    assert run(op("In", last_day, MP)) is None
    assert run(op("In", dt(2027, 1, 1, 0, 0), MP, precision="Day")) is False
    # "ends during day of MP" with a period that ends on the last day
    period = interval(dt(2026, 12, 30, 10, 0), dt(2026, 12, 31, 18, 0))
    assert run(op("In", un("End", period), MP, precision="Day")) is True
    assert run(op("Overlaps", interval(dt(2025, 6, 1), dt(2026, 1, 1)), MP, precision="Day")) is True
    assert (
        run(op("IncludedIn", interval(dt(2026, 3, 1, 9, 0), dt(2026, 3, 1, 10, 0)), MP, precision="Day"))
        is True
    )


def test_offset_timing_phrase_14_days_or_less_before() -> None:
    # "X 14 days or less on or before day of start of E" == X in [start E - 14 days, start E] (day)
    start = dt(2026, 5, 15, 9, 0)
    window = interval(op("Subtract", start, qty(14, "days")), start)
    assert run(op("In", dt(2026, 5, 1, 23, 0), window, precision="Day")) is True
    assert run(op("In", dt(2026, 4, 30, 23, 0), window, precision="Day")) is False
    assert run(op("In", dt(2026, 5, 15, 23, 0), window, precision="Day")) is True


def test_offset_timing_phrase_3_days_or_more_before() -> None:
    # "X 3 days or more before day of Y" == X same day or before (Y - 3 days)
    y = dt(2026, 5, 10, 8, 0)
    limit = op("Subtract", y, qty(3, "days"))
    assert run(op("SameOrBefore", dt(2026, 5, 7, 23, 0), limit, precision="Day")) is True
    assert run(op("SameOrBefore", dt(2026, 5, 8, 0, 30), limit, precision="Day")) is False
    assert run(op("Before", dt(2026, 5, 7, 23, 0), limit, precision="Day")) is False


def test_decimal_and_quantity_intervals() -> None:
    assert run(op("In", lit(Decimal("2.5")), interval(lit(Decimal("1.0")), lit(Decimal("3.0"))))) is True
    assert run(op("In", qty(Decimal("100"), "cm"), interval(qty(1, "m"), qty(2, "m")))) is True
