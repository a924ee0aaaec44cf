"""The instants the store writes (meta.lastUpdated) and reads back: R4's `instant` (UTC, microseconds,
a four-digit year: https://hl7.org/fhir/R4/datatypes.html#instant)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from fhirlead.clock import http_date, instant, parse_instant


@pytest.mark.parametrize(("moment", "text"), [
    (datetime(2026, 12, 5, 14, 0, tzinfo=UTC), "2026-12-05T14:00:00.000000Z"),
    (datetime(2026, 12, 5, 19, 30, 0, 123, tzinfo=timezone(timedelta(hours=5, minutes=30))),
     "2026-12-05T14:00:00.000123Z"),
    (datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "0999-01-02T03:04:05.000006Z"),
])
def test_instants_are_utc_with_microseconds_and_read_back_unchanged(moment: datetime, text: str) -> None:
    assert instant(moment) == text
    assert parse_instant(text) == moment


def test_last_modified_is_an_imf_fixdate() -> None:
    assert http_date("2026-12-05T14:00:00.000123Z") == "Sat, 05 Dec 2026 14:00:00 GMT"
