"""CQL Date, DateTime and Time values: partial precision, timezone offsets and calendar arithmetic.

A value keeps only the components it was given (`fields`), so `@2014` and `@2014-01-01` stay
different values: comparisons between them may be unknown (null), and durations between imprecise
values are uncertainties (CQL reference, "Date and Time Operators"). Seconds and milliseconds are
compared as one decimal component, as the specification requires.
"""

from __future__ import annotations

import calendar
import re
from datetime import date as _pydate
from datetime import datetime as _pydatetime
from datetime import timedelta
from decimal import Decimal
from functools import total_ordering

from fhirlead.cql.errors import CqlEvaluationError
from fhirlead.cql.uncertainty import Uncertainty

YEAR, MONTH, DAY, HOUR, MINUTE, SECOND, MILLISECOND = range(7)
WEEK = -1  # only a unit, never a stored precision

PRECISION_NAMES = ("year", "month", "day", "hour", "minute", "second", "millisecond")

# Unit spellings accepted for calendar arithmetic and for ELM `precision` attributes.
_UNIT_INDEX: dict[str, int] = {}
for _i, _name in enumerate(PRECISION_NAMES):
    _UNIT_INDEX[_name] = _i
    _UNIT_INDEX[_name + "s"] = _i
    _UNIT_INDEX[_name.capitalize()] = _i
_UNIT_INDEX.update(
    {
        "week": WEEK,
        "weeks": WEEK,
        "Week": WEEK,
        "wk": WEEK,
        "d": DAY,
        "h": HOUR,
        "min": MINUTE,
        "s": SECOND,
        "ms": MILLISECOND,
    }
)
# UCUM `a` and `mo` are definite durations, not calendar units: CQL forbids them in date arithmetic.

_MIN_FIELDS = (1, 1, 1, 0, 0, 0, 0)
_MAX_TIME = (23, 59, 59, 999)


def unit_index(unit: str) -> int:
    """The precision index of a calendar unit (`year`, `days`, `Day`, `wk`...)."""
    try:
        return _UNIT_INDEX[unit]
    except KeyError:
        raise CqlEvaluationError(
            f"'{unit}' is not a calendar duration unit for date/time arithmetic"
        ) from None


def precision_index(precision: str | None) -> int | None:
    """ELM precision attribute (e.g. 'Day') to an index; None stays None."""
    if precision is None:
        return None
    return unit_index(precision)


def _days_in_month(year: int, month: int) -> int:
    return calendar.monthrange(year, month)[1]


def _cmp_key(fields: tuple[int, ...]) -> tuple[int, ...]:
    """Fold seconds and milliseconds into one component (milliseconds of the minute)."""
    if len(fields) >= 6:
        ms = fields[6] if len(fields) > 6 else 0
        return (*fields[:5], fields[5] * 1000 + ms)
    return fields


def _compare_fields(ka: tuple[int, ...], kb: tuple[int, ...], limit: int, qualified: bool) -> int | None:
    """Component-wise comparison on folded keys up to `limit` (index into the folded key)."""
    la, lb = len(ka), len(kb)
    for i in range(limit + 1):
        if i < la:
            if i < lb:
                x, y = ka[i], kb[i]
                if x != y:
                    return -1 if x < y else 1
            else:
                return None
        elif i < lb:
            return None
        else:
            return None if qualified else 0
    return 0


def _fold_limit(precision: int | None) -> int:
    if precision is None or precision >= SECOND:
        return 5
    return precision


@total_ordering
class Date:
    """A CQL Date: year, optionally month and day."""

    __slots__ = ("fields",)

    def __init__(self, *fields: int) -> None:
        self.fields = fields

    @property
    def precision(self) -> int:
        return len(self.fields) - 1

    def __repr__(self) -> str:
        return "@" + _format_date(self.fields)

    def iso(self) -> str:
        return _format_date(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Date) and self.fields == other.fields

    def __lt__(self, other: Date) -> bool:
        return self.fields < other.fields

    def __hash__(self) -> int:
        return hash(("Date", self.fields))

    def to_datetime(self, tz: int) -> DateTime:
        return DateTime(self.fields, tz)

    def compare(self, other: Date | DateTime, precision: int | None = None) -> int | None:
        if isinstance(other, DateTime):
            return self.to_datetime(other.tz).compare(other, precision)
        if precision is not None and precision > DAY:
            raise CqlEvaluationError("Date comparisons support year, month and day precision only")
        limit = DAY if precision is None else precision
        return _compare_fields(self.fields, other.fields, limit, precision is not None)

    def add(self, amount: Decimal | int, unit: str) -> Date:
        u = unit_index(unit)
        if u > DAY:
            raise CqlEvaluationError(f"cannot add {unit} to a Date")
        return Date(*_add_calendar(self.fields, amount, u))

    def low_fields(self) -> tuple[int, ...]:
        return tuple(self.fields) + _MIN_FIELDS[len(self.fields) : 3]

    def high_fields(self) -> tuple[int, ...]:
        f = list(self.fields)
        if len(f) < 2:
            f.append(12)
        if len(f) < 3:
            f.append(_days_in_month(f[0], f[1]))
        return tuple(f)


@total_ordering
class DateTime:
    """A CQL DateTime: components down to the given precision plus a timezone offset in minutes."""

    __slots__ = ("fields", "tz")

    def __init__(self, fields: tuple[int, ...], tz: int) -> None:
        self.fields = fields
        self.tz = tz

    @property
    def precision(self) -> int:
        return len(self.fields) - 1

    def __repr__(self) -> str:
        return "@" + self.iso()

    def iso(self) -> str:
        text = _format_date(self.fields[:3])
        if len(self.fields) > 3:
            text += "T" + _format_time(self.fields[3:]) + _format_tz(self.tz)
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DateTime) and self.compare(other) == 0

    def __lt__(self, other: DateTime) -> bool:
        return self.compare(other) == -1

    def __hash__(self) -> int:
        # Equal instants may be written at different offsets and precisions; a coarse hash stays valid.
        return hash("DateTime")

    def shifted(self, tz: int) -> DateTime:
        """The same instant expressed at another offset; partial values shift from their low point."""
        if tz == self.tz:
            return self
        n = len(self.fields)
        full = tuple(self.fields) + _MIN_FIELDS[n:]
        moment = _pydatetime(*full[:6], full[6] * 1000) + timedelta(minutes=tz - self.tz)
        out = (
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond // 1000,
        )
        return DateTime(out[:n], tz)

    def compare(self, other: DateTime | Date, precision: int | None = None) -> int | None:
        """-1/0/1, or None when the comparison at this precision is unknown."""
        if isinstance(other, Date):
            other = other.to_datetime(self.tz)
        me = self
        if other.tz != me.tz and (precision is None or precision >= HOUR):
            me, other = same_offset(me, other)
        return _compare_fields(
            _cmp_key(me.fields), _cmp_key(other.fields), _fold_limit(precision), precision is not None
        )

    def to_date(self) -> Date:
        return Date(*self.fields[:3])

    def add(self, amount: Decimal | int, unit: str) -> DateTime:
        u = unit_index(unit)
        if u <= DAY:
            return DateTime(_add_calendar(self.fields, amount, u), self.tz)
        n = len(self.fields)
        if u > n - 1:
            # The quantity is finer than the value: convert it down to the value's precision.
            return self.add(_convert_down(amount, u, n - 1), PRECISION_NAMES[n - 1])
        if u < SECOND:
            amount = int(amount)
        full = tuple(self.fields) + _MIN_FIELDS[n:]
        base = _pydatetime(*full[:6], full[6] * 1000)
        step = {
            HOUR: timedelta(hours=1),
            MINUTE: timedelta(minutes=1),
            SECOND: timedelta(seconds=1),
            MILLISECOND: timedelta(milliseconds=1),
        }[u]
        try:
            moment = base + step * (float(amount) if not isinstance(amount, int) else amount)
        except OverflowError as exc:
            raise CqlEvaluationError("DateTime arithmetic out of range") from exc
        ms = round(moment.microsecond / 1000)
        out = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second, ms)
        return DateTime(out[:n], self.tz)

    def low_fields(self) -> tuple[int, ...]:
        return tuple(self.fields) + _MIN_FIELDS[len(self.fields) :]

    def high_fields(self) -> tuple[int, ...]:
        f = list(self.fields)
        if len(f) < 2:
            f.append(12)
        if len(f) < 3:
            f.append(_days_in_month(f[0], f[1]))
        while len(f) < 7:
            f.append(_MAX_TIME[len(f) - 3])
        return tuple(f)


@total_ordering
class Time:
    """A CQL Time of day: hour, optionally minute, second and millisecond."""

    __slots__ = ("fields",)

    def __init__(self, *fields: int) -> None:
        self.fields = fields

    @property
    def precision(self) -> int:
        return len(self.fields) - 1 + HOUR

    def __repr__(self) -> str:
        return "@T" + _format_time(self.fields)

    def iso(self) -> str:
        return _format_time(self.fields)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Time) and self.compare(other) == 0

    def __lt__(self, other: Time) -> bool:
        return self.compare(other) == -1

    def __hash__(self) -> int:
        return hash(("Time", _cmp_key((0, 0, 0, *self.fields))))

    def compare(self, other: Time, precision: int | None = None) -> int | None:
        ka = _cmp_key((0, 0, 0, *self.fields))[3:]
        kb = _cmp_key((0, 0, 0, *other.fields))[3:]
        limit = 2 if precision is None or precision >= SECOND else precision - HOUR
        return _compare_fields(ka, kb, limit, precision is not None)

    def add(self, amount: Decimal | int, unit: str) -> Time:
        u = unit_index(unit)
        if u < HOUR:
            raise CqlEvaluationError(f"cannot add {unit} to a Time")
        n = len(self.fields)
        prec = n - 1 + HOUR
        if u > prec:
            return self.add(_convert_down(amount, u, prec), PRECISION_NAMES[prec])
        ms_per = {HOUR: 3_600_000, MINUTE: 60_000, SECOND: 1000, MILLISECOND: 1}[u]
        full = tuple(self.fields) + (0, 0, 0, 0)[n:]
        total = ((full[0] * 60 + full[1]) * 60 + full[2]) * 1000 + full[3]
        step = int(amount) * ms_per if u < SECOND else round(Decimal(amount) * ms_per)
        total = (total + step) % 86_400_000
        out = (total // 3_600_000, total // 60_000 % 60, total // 1000 % 60, total % 1000)
        return Time(*out[:n])


def same_offset(a: DateTime, b: DateTime) -> tuple[DateTime, DateTime]:
    """Express two values at one offset for comparison.

    A value without a time of day stands for a whole calendar day at its own offset and cannot be
    shifted without losing that meaning, so the value that has a time moves into its offset; when
    both have times, the second moves to the first's offset (the instants are unchanged either way).
    """
    if len(b.fields) > HOUR:
        return a, b.shifted(a.tz)
    if len(a.fields) > HOUR:
        return a.shifted(b.tz), b
    return a, b


# ---------------------------------------------------------------------------------------------- parsing

_DT_RE = re.compile(
    r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?)?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_TIME_RE = re.compile(r"^T?(\d{2})(?::(\d{2})(?::(\d{2})(?:\.(\d+))?)?)?$")
_parse_cache: dict[tuple[str, int], DateTime | None] = {}


def _tz_minutes(text: str) -> int:
    if text == "Z":
        return 0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:]))


def _parts(m: re.Match[str]) -> tuple[int, ...]:
    out: list[int] = []
    for i, group in enumerate(m.groups()[:7]):
        if group is None:
            break
        out.append(int((group + "00")[:3]) if i == 6 else int(group))
    return tuple(out)


def parse_datetime(text: str, default_tz: int = 0) -> DateTime | None:
    """ISO-8601 / FHIR dateTime or instant text to a DateTime; None if it is not one."""
    key = (text, default_tz)
    try:
        return _parse_cache[key]
    except KeyError:
        pass
    m = _DT_RE.match(text)
    value: DateTime | None = None
    if m is not None:
        fields = _parts(m)
        tz = _tz_minutes(m.group(8)) if m.group(8) else default_tz
        if _valid(fields):
            value = DateTime(fields, tz)
    if len(_parse_cache) > 200_000:
        _parse_cache.clear()
    _parse_cache[key] = value
    return value


def clear_parse_cache() -> None:
    """Forget parsed date/time strings (the cache is bounded; this is for benchmarks and tests)."""
    _parse_cache.clear()


def parse_date(text: str) -> Date | None:
    """ISO-8601 date text (a time part, if any, is ignored) to a Date; None if invalid."""
    m = _DT_RE.match(text)
    if m is None:
        return None
    fields = _parts(m)[:3]
    return Date(*fields) if _valid(fields) else None


def parse_time(text: str) -> Time | None:
    m = _TIME_RE.match(text)
    if m is None:
        return None
    out: list[int] = []
    for i, group in enumerate(m.groups()):
        if group is None:
            break
        out.append(int((group + "00")[:3]) if i == 3 else int(group))
    if out[0] > 23 or (len(out) > 1 and out[1] > 59) or (len(out) > 2 and out[2] > 59):
        return None
    return Time(*out)


def _valid(fields: tuple[int, ...]) -> bool:
    n = len(fields)
    if n > 1 and not 1 <= fields[1] <= 12:
        return False
    if n > 2 and not 1 <= fields[2] <= _days_in_month(fields[0], fields[1]):
        return False
    if n > 3 and fields[3] > 23:
        return False
    return not (n > 4 and (fields[4] > 59 or (n > 5 and fields[5] > 59)))


def _format_date(fields: tuple[int, ...]) -> str:
    parts = [f"{fields[0]:04d}"] + [f"{x:02d}" for x in fields[1:3]]
    return "-".join(parts)


def _format_time(fields: tuple[int, ...]) -> str:
    text = ":".join(f"{x:02d}" for x in fields[:3])
    if len(fields) > 3:
        text += f".{fields[3]:03d}"
    return text


def _format_tz(tz: int) -> str:
    if tz == 0:
        return "Z"
    sign = "-" if tz < 0 else "+"
    return f"{sign}{abs(tz) // 60:02d}:{abs(tz) % 60:02d}"


# ------------------------------------------------------------------------------------------- arithmetic

_DOWN_FACTORS = {
    (MONTH, YEAR): 12,
    (DAY, MONTH): 30,
    (HOUR, DAY): 24,
    (MINUTE, HOUR): 60,
    (SECOND, MINUTE): 60,
    (MILLISECOND, SECOND): 1000,
}


def _convert_down(amount: Decimal | int, unit: int, target: int) -> int:
    """Convert a quantity in a finer unit to whole units of a coarser precision (truncating)."""
    value = Decimal(amount)
    if unit == WEEK:
        value *= 7
        unit = DAY
    while unit > target:
        value /= _DOWN_FACTORS[(unit, unit - 1)]
        unit -= 1
    return int(value)


def _add_calendar(fields: tuple[int, ...], amount: Decimal | int, unit: int) -> tuple[int, ...]:
    """Add whole years, months, weeks or days, respecting month lengths."""
    n = len(fields)
    prec = n - 1
    if unit == WEEK:
        amount, unit = int(amount) * 7, DAY
    if unit > prec:
        amount = _convert_down(amount, unit, prec)
        unit = prec
    amount = int(amount)
    f = list(fields)
    if unit == YEAR:
        f[0] += amount
    elif unit == MONTH:
        total = f[0] * 12 + (f[1] - 1) + amount
        f[0], f[1] = divmod(total, 12)
        f[1] += 1
    else:
        try:
            d = _pydate(f[0], f[1], f[2]) + timedelta(days=amount)
        except OverflowError as exc:
            raise CqlEvaluationError("Date arithmetic out of range") from exc
        f[0], f[1], f[2] = d.year, d.month, d.day
    if not 1 <= f[0] <= 9999:
        raise CqlEvaluationError("Date arithmetic out of range")
    if n > 2:
        f[2] = min(f[2], _days_in_month(f[0], f[1]))
    return tuple(f)


# -------------------------------------------------------------------------------- duration & difference


def _ms_since_epoch(full: tuple[int, ...]) -> int:
    d = _pydate(full[0], full[1], full[2]).toordinal()
    return ((d * 24 + full[3]) * 60 + full[4]) * 60_000 + full[5] * 1000 + full[6]


def _whole_between(a: tuple[int, ...], b: tuple[int, ...], unit: int) -> int:
    """Whole calendar periods from fully specified `a` to `b` (negative when b precedes a)."""
    if a > b:
        return -_whole_between(b, a, unit)
    if unit == YEAR:
        years = b[0] - a[0]
        return years - 1 if b[1:] < a[1:] else years
    if unit == MONTH:
        months = (b[0] - a[0]) * 12 + b[1] - a[1]
        return months - 1 if b[2:] < a[2:] else months
    if len(a) == 3:
        days = _pydate(*b).toordinal() - _pydate(*a).toordinal()
        return days // 7 if unit == WEEK else days
    delta = _ms_since_epoch(b) - _ms_since_epoch(a)
    per = {WEEK: 604_800_000, DAY: 86_400_000, HOUR: 3_600_000, MINUTE: 60_000, SECOND: 1000, MILLISECOND: 1}[
        unit
    ]
    return delta // per


def _fill_pair(x: DateTime | Date, y: DateTime | Date, width: int) -> tuple[tuple, tuple, tuple, tuple]:
    """Low/high completions of x and y; components missing from both are filled identically."""
    shared = max(len(x.fields), len(y.fields))

    def fill(v: DateTime | Date, high: bool) -> tuple[int, ...]:
        f = list(v.fields)
        while len(f) < shared:
            idx = len(f)
            if not high:
                f.append(_MIN_FIELDS[idx])
            elif idx == 1:
                f.append(12)
            elif idx == 2:
                f.append(_days_in_month(f[0], f[1]))
            else:
                f.append(_MAX_TIME[idx - 3])
        while len(f) < width:
            f.append(_MIN_FIELDS[len(f)])
        return tuple(f)

    return fill(x, False), fill(x, True), fill(y, False), fill(y, True)


def duration_between(a: Date | DateTime, b: Date | DateTime, unit: str) -> int | Uncertainty:
    """Whole calendar periods between two values; an Uncertainty when precision is insufficient."""
    u = unit_index(unit)
    a, b = _align(a, b, u)
    width = 3 if isinstance(a, Date) else 7
    a_lo, a_hi, b_lo, b_hi = _fill_pair(a, b, width)
    low = _whole_between(a_hi, b_lo, u)
    high = _whole_between(a_lo, b_hi, u)
    return low if low == high else Uncertainty(low, high)


def difference_between(a: Date | DateTime, b: Date | DateTime, unit: str) -> int | Uncertainty:
    """Number of `unit` boundaries crossed between two values (CQL `difference in ... between`)."""
    u = unit_index(unit)
    a, b = _align(a, b, u)
    width = 3 if isinstance(a, Date) else 7
    a_lo, a_hi, b_lo, b_hi = _fill_pair(a, b, width)
    results = {
        _whole_between(_truncate(p, u), _truncate(q, u), u) for p in (a_lo, a_hi) for q in (b_lo, b_hi)
    }
    low, high = min(results), max(results)
    return low if low == high else Uncertainty(low, high)


def _truncate(full: tuple[int, ...], unit: int) -> tuple[int, ...]:
    if unit == WEEK:
        d = _pydate(*full[:3])
        d -= timedelta(days=(d.weekday() + 1) % 7)  # back to Sunday
        return (d.year, d.month, d.day, *_MIN_FIELDS[3 : len(full)])
    keep = unit + 1
    return tuple(full[:keep]) + _MIN_FIELDS[keep : len(full)]


def _align(a: Date | DateTime, b: Date | DateTime, unit: int) -> tuple[Date | DateTime, Date | DateTime]:
    if isinstance(a, DateTime) or isinstance(b, DateTime):
        if isinstance(a, Date):
            a = a.to_datetime(b.tz)  # type: ignore[union-attr]
        if isinstance(b, Date):
            b = b.to_datetime(a.tz)
        if a.tz != b.tz and unit >= HOUR:  # type: ignore[union-attr]
            a, b = same_offset(a, b)  # type: ignore[arg-type]
    elif unit > DAY:
        raise CqlEvaluationError("Date values only support year, month, week and day durations")
    return a, b


def component(value: Date | DateTime | Time, precision: int) -> int | None:
    """`<precision> from value`: the component, or None when the value is not that precise."""
    fields = value.fields
    idx = precision - HOUR if isinstance(value, Time) else precision
    return fields[idx] if 0 <= idx < len(fields) else None


def min_datetime(tz: int = 0) -> DateTime:
    return DateTime((1, 1, 1, 0, 0, 0, 0), tz)


def max_datetime(tz: int = 0) -> DateTime:
    return DateTime((9999, 12, 31, 23, 59, 59, 999), tz)


MIN_DATE = Date(1, 1, 1)
MAX_DATE = Date(9999, 12, 31)
MIN_TIME = Time(0, 0, 0, 0)
MAX_TIME = Time(23, 59, 59, 999)


def successor(value: Date | DateTime | Time) -> Date | DateTime | Time:
    """Add one unit of the value's own precision (CQL `successor of`)."""
    if isinstance(value, Time):
        if value.compare(MAX_TIME) == 0:
            raise CqlEvaluationError("successor of the maximum Time")
        return value.add(1, PRECISION_NAMES[value.precision])
    if isinstance(value, DateTime) and value.fields == max_datetime().fields:
        raise CqlEvaluationError("successor of the maximum DateTime")
    return value.add(1, PRECISION_NAMES[value.precision])


def predecessor(value: Date | DateTime | Time) -> Date | DateTime | Time:
    """Subtract one unit of the value's own precision (CQL `predecessor of`)."""
    if isinstance(value, Time):
        if value.compare(MIN_TIME) == 0:
            raise CqlEvaluationError("predecessor of the minimum Time")
        return value.add(-1, PRECISION_NAMES[value.precision])
    if isinstance(value, DateTime) and value.fields == min_datetime().fields:
        raise CqlEvaluationError("predecessor of the minimum DateTime")
    return value.add(-1, PRECISION_NAMES[value.precision])


def datetime_from_python(moment: _pydatetime, tz: int) -> DateTime:
    """A fully specified DateTime for a Python datetime (used for Now())."""
    return DateTime(
        (
            moment.year,
            moment.month,
            moment.day,
            moment.hour,
            moment.minute,
            moment.second,
            moment.microsecond // 1000,
        ),
        tz,
    )
