"""Server time in the forms FHIR and HTTP need, from one source so tests can reason about it."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime


def now() -> datetime:
    return datetime.now(UTC)


def instant(moment: datetime) -> str:
    """A FHIR `instant` (UTC, microseconds): what meta.lastUpdated carries."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def micros(moment: datetime) -> int:
    """Microseconds since the epoch: the sortable form stored beside each version."""
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def parse_instant(text: str) -> datetime:
    """Parse a stored FHIR instant (always produced by `instant`)."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def http_date(fhir_instant: str) -> str:
    """RFC 9110 HTTP-date for Last-Modified, from a stored meta.lastUpdated."""
    return format_datetime(parse_instant(fhir_instant), usegmt=True)
