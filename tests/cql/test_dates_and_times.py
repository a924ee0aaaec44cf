"""Date, DateTime and Time: precision, timezone offsets, arithmetic, durations and uncertainty
(CQL reference: Date and Time Operators; Author's guide: Date/Time arithmetic)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhirlead.cql import datetime as dtm
from fhirlead.cql.datetime import Date, DateTime, Time, parse_datetime
from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.uncertainty import Uncertainty
from tests.cql.elm import date, dt, lit, null, op, qty, run, time, un


def test_parse_fhir_datetimes() -> None:
    assert parse_datetime("2026-03-04T05:06:07.8+02:00").fields == (2026, 3, 4, 5, 6, 7, 800)
    assert parse_datetime("2026-03-04T05:06:07.8+02:00").tz == 120
    assert parse_datetime("2026-03").fields == (2026, 3)
    assert parse_datetime("2026-03-04T05:06:07", default_tz=-300).tz == -300
    assert parse_datetime("2026-02-30") is None
    assert parse_datetime("not a date") is None


def test_comparison_at_different_precisions_is_unknown() -> None:
    assert run(op("Equal", dt(2012), dt(2012, 1))) is None
    assert run(op("Less", dt(2012, 1, 1), dt(2012, 1, 2))) is True
    assert run(op("Less", dt(2012), dt(2012, 6))) is None
    assert run(op("Less", dt(2011), dt(2012, 6))) is True  # decided before the precision runs out
    assert run(op("Equal", date(2012, 1), date(2012, 1))) is True


def test_seconds_and_milliseconds_compare_as_one_decimal() -> None:
    assert run(op("Equal", dt(2012, 1, 1, 10, 0, 0), dt(2012, 1, 1, 10, 0, 0, 0))) is True
    assert run(op("Equal", time(10, 0, 0), time(10, 0, 0, 0))) is True
    assert run(op("Less", dt(2012, 1, 1, 10, 0, 0), dt(2012, 1, 1, 10, 0, 0, 1))) is True


def test_timezones_are_normalised_for_time_precision_comparisons() -> None:
    assert run(op("Equal", dt(2012, 1, 1, 10, 0, 0, tz=-5), dt(2012, 1, 1, 15, 0, 0, tz=0))) is True
    # 23:00 at -05:00 is 04:00Z the next day
    assert run(op("Less", dt(2012, 1, 1, 23, 0, 0, tz=-5), dt(2012, 1, 2, 3, 0, 0, tz=0))) is False
    assert run(op("Less", dt(2012, 1, 1, 23, 0, 0, tz=-5), dt(2012, 1, 2, 5, 0, 0, tz=0))) is True


def test_comparing_a_day_with_an_instant_at_another_offset_is_symmetric() -> None:
    # 10:00 at -05:00 is 15:00Z on the same day: within the day, but the time of day is unknown
    day, instant = dt(2026, 1, 1, tz=0), dt(2026, 1, 1, 10, 0, tz=-5)
    assert run(op("Equal", day, instant)) is None
    assert run(op("Equal", instant, day)) is None
    assert run(op("Less", dt(2025, 12, 31, tz=0), instant)) is True
    assert run(op("Greater", instant, dt(2025, 12, 31, tz=0))) is True


def test_timezones_are_not_normalised_for_day_precision_comparisons() -> None:
    # 23:00 at -05:00 is 04:00 the next day in UTC, but "same day as" compares calendar days as written
    late = dt(2020, 1, 1, 23, 0, 0, tz=-5)
    assert run(op("SameAs", late, dt(2020, 1, 1, 12, 0, 0, tz=0), precision="Day")) is True
    assert run(op("SameAs", late, dt(2020, 1, 2, 1, 0, 0, tz=0), precision="Day")) is False
    assert run(op("SameAs", late, dt(2020, 1, 2, 4, 0, 0, tz=0), precision="Hour")) is True


def test_precision_qualified_comparisons() -> None:
    a, b = dt(2012, 1, 1, 10, 30), dt(2012, 1, 1, 10, 45)
    assert run(op("SameAs", a, b, precision="Hour")) is True
    assert run(op("SameAs", a, b, precision="Minute")) is False
    assert run(op("Before", a, b, precision="Hour")) is False
    assert run(op("SameOrBefore", a, b, precision="Hour")) is True
    assert run(op("After", dt(2012, 2), dt(2012, 1, 15), precision="Month")) is True
    # the precision asked for is finer than both values: unknown
    assert run(op("SameAs", dt(2012, 1, 1), dt(2012, 1, 1), precision="Hour")) is None
    assert run(op("SameAs", dt(2012, 1, 1), null(), precision="Day")) is None


def test_date_and_datetime_mix_converts_the_date() -> None:
    assert run(op("SameAs", date(2012, 1, 1), dt(2012, 1, 1, 0, 0), precision="Day")) is True
    assert run(un("ToDateTime", date(2012, 1, 1))) == DateTime((2012, 1, 1), 0)


def test_calendar_arithmetic() -> None:
    assert run(op("Add", date(2012, 1, 31), qty(1, "month"))) == Date(2012, 2, 29)
    assert run(op("Add", date(2013, 1, 31), qty(1, "month"))) == Date(2013, 2, 28)
    assert run(op("Add", date(2012, 2, 29), qty(1, "year"))) == Date(2013, 2, 28)
    assert run(op("Subtract", dt(2026, 1, 1, 0, 0, 0, 0), qty(14, "days"))) == DateTime(
        (2025, 12, 18, 0, 0, 0, 0), 0
    )
    assert run(op("Add", dt(2026, 1, 1, 23, 30), qty(1, "hour"))) == DateTime((2026, 1, 2, 0, 30), 0)
    assert run(op("Add", date(2026, 1, 1), qty(2, "weeks"))) == Date(2026, 1, 15)
    assert run(op("Add", time(23, 30), qty(1, "hour"))) == Time(0, 30)


def test_arithmetic_on_partial_values_truncates_the_quantity() -> None:
    assert run(op("Add", dt(2014), qty(24, "months"))) == DateTime((2016,), 0)
    assert run(op("Add", dt(2014), qty(18, "months"))) == DateTime((2015,), 0)
    assert run(op("Add", date(2014, 1, 1), qty(Decimal("1.9"), "days"))) == Date(2014, 1, 2)


def test_definite_duration_years_cannot_be_added() -> None:
    with pytest.raises(CqlEvaluationError):
        run(op("Add", date(2014, 1, 1), qty(1, "a")))


def test_duration_between_counts_whole_periods() -> None:
    def duration(a: dict, b: dict, unit: str) -> object:
        return run(op("DurationBetween", a, b, precision=unit))

    assert duration(date(2000, 1, 1), date(2015, 1, 1), "Year") == 15
    assert duration(date(2000, 6, 15), date(2015, 6, 14), "Year") == 14
    assert duration(date(2012, 1, 31), date(2012, 2, 29), "Month") == 0
    assert duration(dt(2012, 1, 1, 23, 0), dt(2012, 1, 2, 1, 0), "Day") == 0
    assert duration(dt(2012, 1, 1, 10, 0), dt(2012, 1, 1, 9, 0), "Hour") == -1


def test_difference_between_counts_boundaries() -> None:
    def difference(a: dict, b: dict, unit: str) -> object:
        return run(op("DifferenceBetween", a, b, precision=unit))

    assert difference(dt(2012, 1, 1, 23, 0), dt(2012, 1, 2, 1, 0), "Day") == 1
    assert difference(date(2012, 1, 1), date(2012, 2, 1), "Month") == 1
    assert difference(date(2012, 12, 31), date(2013, 1, 1), "Year") == 1
    # weeks start on Sunday: Sat 2024-01-06 -> Sun 2024-01-07 crosses one boundary
    assert difference(date(2024, 1, 6), date(2024, 1, 7), "Week") == 1


def test_imprecise_values_give_uncertainty() -> None:
    assert run(op("DifferenceBetween", date(2012, 1, 2), date(2012), precision="Month")) == Uncertainty(0, 11)
    age = run(op("DurationBetween", date(2000), date(2020, 6, 1), precision="Year"))
    assert age == Uncertainty(19, 20)
    # comparisons against an uncertainty are decided only when every possible value agrees
    assert (
        run(
            op(
                "GreaterOrEqual",
                op("DurationBetween", date(2000), date(2020, 6, 1), precision="Year"),
                lit(18),
            )
        )
        is True
    )
    assert (
        run(
            op(
                "GreaterOrEqual",
                op("DurationBetween", date(2000), date(2020, 6, 1), precision="Year"),
                lit(20),
            )
        )
        is None
    )


def test_calculate_age_at() -> None:
    assert run(op("CalculateAgeAt", date(2000, 1, 1), date(2015, 1, 1), precision="Year")) == 15
    assert run(op("CalculateAgeAt", date(1951, 12, 31), date(2026, 12, 31), precision="Year")) == 75
    assert run(op("CalculateAgeAt", date(1952, 1, 1), date(2026, 12, 31), precision="Year")) == 74
    assert run(op("CalculateAgeAt", date(2000, 1, 1), null(), precision="Year")) is None


def test_components_and_conversions() -> None:
    value = dt(2026, 3, 4, 5, 6, 7, 8, tz=-5)
    assert run(un("DateTimeComponentFrom", value, precision="Month")) == 3
    assert run(un("DateTimeComponentFrom", dt(2026), precision="Month")) is None
    assert run(un("DateFrom", value)) == Date(2026, 3, 4)
    assert run(un("TimezoneOffsetFrom", value)) == Decimal(-5)
    assert run(un("ToDate", lit("2014-01-01T12:30:00"))) == Date(2014, 1, 1)
    assert run(un("ToDateTime", lit("2014-01-01T14:30:00.0Z"))) == DateTime((2014, 1, 1, 14, 30, 0, 0), 0)
    assert run(un("ToDateTime", lit("2014-13-01"))) is None


def test_successor_and_predecessor_use_the_value_precision() -> None:
    assert dtm.successor(Date(2012, 12, 31)) == Date(2013, 1, 1)
    assert dtm.predecessor(DateTime((2026, 1, 1, 0, 0, 0, 0), 0)) == DateTime(
        (2025, 12, 31, 23, 59, 59, 999), 0
    )
    assert dtm.successor(DateTime((2026, 1), 0)) == DateTime((2026, 2), 0)


def test_invalid_constructed_datetime_raises() -> None:
    with pytest.raises(CqlEvaluationError):
        run(dt(2026, 2, 30))
