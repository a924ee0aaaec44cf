"""date parameters (https://hl7.org/fhir/R4/search.html#date).

Every date, dateTime, instant, Period and Timing is indexed as a half-open range of microseconds since
the epoch (UTC): a partial date stands for its whole implicit range (`2020` = the year 2020), an open
Period end is "forever". Values without a time zone are read in the server's zone, UTC. Search values
are parsed the same way and compared range to range, prefix by prefix, as the specification defines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.query import RangeMatch

MIN_US = -(2**62)  # "since forever" (an open Period start)
MAX_US = 2**62  # "forever" (an open Period end)
DAY_US = 86_400_000_000
_EPOCH = date(1970, 1, 1).toordinal()

_DATE = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def _days(year: int, month: int, day: int) -> int:
    return date(year, month, day).toordinal() - _EPOCH


def parse_range(text: str) -> tuple[int, int] | None:
    """The implicit range [low, high) of a FHIR date/dateTime/instant (also as a search value), or None."""
    match = _DATE.fullmatch(text)
    if match is None:
        return None
    year_s, month_s, day_s, hour_s, minute_s, second_s, fraction, zone = match.groups()
    year = int(year_s)
    try:
        if month_s is None:
            return _days(year, 1, 1) * DAY_US, _days(year + 1, 1, 1) * DAY_US if year < 9999 else MAX_US
        month = int(month_s)
        if day_s is None:
            next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
            end = _days(next_year, next_month, 1) * DAY_US if next_year <= 9999 else MAX_US
            return _days(year, month, 1) * DAY_US, end
        start_day = _days(year, month, int(day_s)) * DAY_US
    except ValueError:
        return None
    if hour_s is None:
        return start_day, start_day + DAY_US
    hour, minute = int(hour_s), int(minute_s)
    if hour > 23 or minute > 59:
        return None
    low = start_day + (hour * 3600 + minute * 60) * 1_000_000
    if second_s is None:
        width = 60_000_000
    else:
        second = int(second_s)
        if second > 60:
            return None
        low += second * 1_000_000
        width = 1_000_000
        if fraction:
            digits = fraction[1:]
            low += int(digits[:6].ljust(6, "0"))
            width = max(1, 10 ** max(0, 6 - len(digits)))
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        offset = (int(zone[1:3]) * 60 + int(zone[4:6])) * 60_000_000
        low -= sign * offset
    return low, low + width


# -- write time --------------------------------------------------------------------------------


def _add_text(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str):
        found = parse_range(value)
        if found is not None:
            out.date.append((key, found[0], found[1]))


def _add_period(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    start, end = value.get("start"), value.get("end")
    low = parse_range(start)[0] if isinstance(start, str) and parse_range(start) else None
    high = parse_range(end)[1] if isinstance(end, str) and parse_range(end) else None
    if low is None and high is None:
        return
    out.date.append((key, MIN_US if low is None else low, MAX_US if high is None else high))


def _add_timing(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    for event in value.get("event") or ():
        _add_text(key, event, out)
    repeat = value.get("repeat")
    if isinstance(repeat, dict) and "boundsPeriod" in repeat:
        _add_period(key, repeat["boundsPeriod"], out)


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str):
        _add_text(key, value, out)
    elif isinstance(value, dict):
        if "start" in value or "end" in value:
            _add_period(key, value, out)
        elif "event" in value or "repeat" in value:
            _add_timing(key, value, out)
        else:
            for name, inner in value.items():
                if name.startswith("value") and name[5:] in (
                    "Date",
                    "DateTime",
                    "Instant",
                    "Period",
                    "Timing",
                ):
                    CONVERTERS[name[5].lower() + name[6:]](key, inner, out)


CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    "date": _add_text,
    "dateTime": _add_text,
    "instant": _add_text,
    "Period": _add_period,
    "Timing": _add_timing,
}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension", "Resource"):
        return _add_dynamic
    return None


# -- query time --------------------------------------------------------------------------------


def split_prefix(raw: str) -> tuple[str, str]:
    """`ge2020` -> ("ge", "2020"); no prefix -> "eq"."""
    head = raw[:2]
    if (
        head in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
        and len(raw) > 2
        and not raw[2].isalpha()
    ):
        return head, raw[2:]
    return "eq", raw


def search_range(text: str, name: str) -> tuple[int, int]:
    found = parse_range(text.strip())
    if found is None:
        raise bad_request(
            f"Invalid date '{text}' for parameter '{name}': expected YYYY, YYYY-MM, YYYY-MM-DD or "
            "YYYY-MM-DDThh:mm[:ss[.fff]][Z|(+|-)hh:mm]",
            name,
        )
    return found


def parse(key: str, raw: str, name: str, now_us: int | None = None) -> RangeMatch:
    """A date search value (with its prefix) as a range predicate. `ap` widens the range by 10% of the
    distance between now and the value, as the specification recommends; "now" is today's start (UTC),
    so the range stays the same from one request to the next and a search's paging cursors (bound to
    its ranges) stay valid all day."""
    prefix, text = split_prefix(raw)
    low, high = search_range(text, name)
    if prefix == "ap":
        now = time.time_ns() // 1000 if now_us is None else now_us
        now -= now % DAY_US
        gap = abs(now - low) // 10
        low, high = low - gap, high + gap
    return RangeMatch(key, "date", prefix, low, high)
