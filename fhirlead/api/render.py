"""Turning a FhirResponse or FhirError into an HTTP response: format, pretty printing, headers.

Stored resources arrive as bytes and go out untouched unless the client asked for `_pretty`; only
then is the JSON re-indented.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.responses import Response, StreamingResponse

from fhirlead import fhirjson
from fhirlead.api.messages import FHIR_JSON, FhirRequest, FhirResponse
from fhirlead.errors import FhirError, Issue, log_unexpected

log = logging.getLogger(__name__)

# Media types a client may ask for (Accept or _format) and get JSON back.
ACCEPTABLE = frozenset({FHIR_JSON, "application/json", "json", "text/json", "*/*", "application/*"})
# _format values that name a FHIR format this server does not produce.
OTHER_FORMATS = frozenset({"xml", "text/xml", "application/xml", "application/fhir+xml", "ttl",
                           "application/fhir+turtle", "text/turtle", "html", "text/html"})


def negotiate(request: FhirRequest) -> None:
    """Refuse (406) a request whose `_format` or `Accept` admits no JSON FHIR representation."""
    requested = request.param("_format")
    if requested is not None:
        kind = requested.split(";")[0].strip().lower()
        if kind in ACCEPTABLE:
            return
        reason = "is not supported" if kind in OTHER_FORMATS else "is not a known format"
        raise FhirError(406, [Issue("not-supported", f"_format '{requested}' {reason}: this server speaks JSON")])
    accept = request.header("accept")
    if not accept:
        return
    kinds = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    if not kinds & ACCEPTABLE:
        raise FhirError(406, [Issue("not-supported", f"Cannot produce any of '{accept}': this server speaks JSON")])


def wants_pretty(request: FhirRequest) -> bool:
    return (request.param("_pretty") or "").lower() == "true"


def to_bytes(body: bytes | dict[str, Any] | None, pretty: bool) -> bytes:
    if body is None:
        return b""
    if pretty:
        return fhirjson.dumps_pretty(body)
    return body if isinstance(body, bytes) else fhirjson.dumps(body)


def http_response(response: FhirResponse, pretty: bool) -> Response:
    if response.stream is not None:  # sent as made: `_pretty` does not apply
        return StreamingResponse(_guarded(response.stream), status_code=response.status, headers=response.headers,
                                 media_type=response.media_type + "; charset=utf-8")
    content = to_bytes(response.body, pretty)
    media_type = response.media_type + "; charset=utf-8" if response.body is not None else None
    return Response(content, status_code=response.status, headers=response.headers, media_type=media_type)


class StreamAborted(Exception):
    """A streamed answer failed after its status was sent: the connection is dropped, so the client sees
    a broken transfer rather than a body that merely looks complete."""


async def _guarded(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield chunk
    except FhirError as error:  # its message may name a patient: only its kind is logged
        log.warning("a streamed answer was cut short by a %d error (%s)", error.status, error.issues[0].code)
        raise StreamAborted("the streamed answer was cut short") from None
    except Exception as error:
        log_unexpected(log, error, "streaming an answer")
        raise StreamAborted("the streamed answer was cut short") from None


def error_response(error: FhirError, pretty: bool = False) -> Response:
    return http_response(FhirResponse(error.status, error.outcome(), dict(error.headers)), pretty)
