"""Sending one stored version back: conditional read headers, `_summary`/`_elements`, ETag.

The stored bytes go out as they are unless the client asked for a subset.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from fhirlead import fhirjson, subsetting
from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.clock import parse_instant
from fhirlead.errors import FhirError, Issue
from fhirlead.interaction.outcome import version_headers
from fhirlead.storage.port import ResourceVersion


def gone(version: ResourceVersion) -> FhirError:
    return FhirError(410, [Issue("deleted", f"{version.reference} was deleted (version {version.version})")],
                     version_headers(version))


def not_modified(request: FhirRequest, version: ResourceVersion) -> bool:
    """Conditional read (https://hl7.org/fhir/R4/http.html#cread): If-None-Match / If-Modified-Since."""
    if_none_match = request.header("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return f'"{version.version}"' in tags or "*" in tags
    if_modified_since = request.header("if-modified-since")
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError):
            return False
        return parse_instant(version.last_updated).replace(microsecond=0) <= since
    return False


def send_version(request: FhirRequest, version: ResourceVersion) -> FhirResponse:
    headers = version_headers(version)
    if not_modified(request, version):
        return FhirResponse(304, None, headers)
    mode, names = subsetting.requested(request.param("_summary"), request.param("_elements"))
    if mode in (None, "false") and not names:
        return FhirResponse(200, version.body, headers)
    return FhirResponse(200, subsetting.apply(fhirjson.loads(version.body), mode, names), headers)
