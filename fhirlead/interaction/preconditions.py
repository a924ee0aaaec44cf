"""Version preconditions: `If-Match` (https://hl7.org/fhir/R4/http.html#concurrency)."""

from __future__ import annotations

import re

from fhirlead.errors import FhirError, Issue, bad_request
from fhirlead.storage.port import VersionConflict

ETAG = re.compile(r'(?:W/)?"([0-9]{1,18})"')  # ASCII digits: regex \d also matches "²"


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match: W/"n"` header names (None when absent); malformed → 400."""
    if if_match is None:
        return None
    found = ETAG.fullmatch(if_match.strip())
    if found is None:
        raise bad_request(f"Malformed If-Match '{if_match}': expected W/\"<versionId>\"")
    return int(found.group(1))


def conflict(error: VersionConflict) -> FhirError:
    current = "it does not exist" if error.current is None else f"the current version is {error.current}"
    message = f"Version {error.expected} of {error.reference} was expected but {current}"
    return FhirError(412, [Issue("conflict", message)])
