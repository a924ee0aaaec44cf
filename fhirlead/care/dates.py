"""FHIR dates as the care rules need them: the day an event happened (for due dates and attribution) and
the instant a window closes (for timers).

R4 `date` and `dateTime` may be partial (`2026`, `2026-03`, `2026-03-10`) and a `dateTime` with a time
carries its offset (https://hl7.org/fhir/R4/datatypes.html#dateTime). A window's end is inclusive
(https://hl7.org/fhir/R4/datatypes-definitions.html#Period.end): a window ending `2026-03-10` is open
all that day, so it closes at the start of the next day (UTC, as the value carries no zone); a partial
end closes when the month or year it names is over.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def parse(value: object) -> tuple[date, datetime] | None:
    """(the day as written, the instant the value's precision ends) of a FHIR date/dateTime/instant;
    None for anything else."""
    if not isinstance(value, str):
        return None
    if "T" in value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.date(), moment
    found = _DATE.match(value)
    if not found:
        return None
    year, month, day = int(found[1]), int(found[2] or 1), int(found[3] or 1)
    try:
        first = date(year, month, day)
    except ValueError:
        return None
    if found[3]:
        end = first + timedelta(days=1)
    elif found[2]:
        end = date(year + (month == 12), month % 12 + 1, 1)
    else:
        end = date(year + 1, 1, 1)
    return first, datetime(end.year, end.month, end.day, tzinfo=UTC)


def day_of(value: object) -> date | None:
    """The day a FHIR date/dateTime names (its first day when partial)."""
    parsed = parse(value)
    return parsed[0] if parsed else None


def closes_at(value: object) -> datetime | None:
    """The instant a window whose inclusive end is `value` is over."""
    parsed = parse(value)
    return parsed[1] if parsed else None


def epoch_micros(moment: datetime) -> int:
    """Microseconds since the epoch, never negative (a timer key's sortable part)."""
    return max(0, int(moment.timestamp() * 1_000_000))
