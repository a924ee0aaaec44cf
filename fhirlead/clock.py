"""Server time in the forms FHIR and HTTP need, from one source so tests can reason about it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

# What `instant` writes, in ASCII digits: read by the standard library's ISO parser, ~50 times cheaper than
# strptime (every read answers a Last-Modified); anything else goes through strptime as before.
_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def now() -> datetime:
    return datetime.now(UTC)


def instant(moment: datetime) -> str:
    """A FHIR `instant` (UTC, microseconds): what meta.lastUpdated carries."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"  # [:-6]: "+00:00"; half strftime's cost


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: the sortable form stored beside each version."""
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def parse_instant(text: str) -> datetime:
    """Parse a stored FHIR instant (always produced by `instant`)."""
    if _INSTANT.fullmatch(text):
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def http_date(fhir_instant: str) -> str:
    """RFC 9110 HTTP-date (IMF-fixdate) for Last-Modified, from a stored meta.lastUpdated."""
    moment = parse_instant(fhir_instant)
    return (f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} "
            f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} GMT")
