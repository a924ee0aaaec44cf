"""FhirRequest and FhirResponse: the HTTP exchange as plain values handlers work with.

Handlers never touch Starlette objects; they take a FhirRequest and return a FhirResponse, which
`fhirlead.api.render` turns into bytes on the wire. This keeps interactions testable and reusable from
batch/transaction processing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fhirlead import fhirjson
from fhirlead.errors import FhirError, Issue, bad_request

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"
JSON_TYPES = frozenset({FHIR_JSON, "application/json", "text/json"})


@dataclass
class FhirRequest:
    """One interaction as the server sees it, whether it came over HTTP or inside a Bundle."""

    method: str
    base_url: str  # the FHIR base, e.g. http://localhost:8080/fhir (no trailing slash)
    path: str = ""  # below the base, e.g. "Patient/123/_history" (for self and paging links)
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    content_type: str = ""  # media type without parameters, lower case
    # What the caller's access token allows (`fhirlead.auth.enforce.Policy`); None when authorization is off.
    access: Any = field(default=None, repr=False)
    _parsed: Any = field(default=None, repr=False)

    def param(self, name: str) -> str | None:
        """The last value of a query parameter (FHIR result parameters are single-valued)."""
        found = None
        for key, value in self.params:
            if key == name:
                found = value
        return found

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def prefer(self, token: str) -> str | None:
        """The value of a `Prefer` preference, e.g. prefer("return") -> "minimal"."""
        for part in (self.headers.get("prefer") or "").split(","):
            key, _, value = part.strip().partition("=")
            if key.strip().lower() == token:
                return value.strip().strip('"').lower()
        return None

    def json_body(self) -> Any:
        """The body parsed as JSON (once). Malformed JSON is a 400."""
        if self._parsed is None:
            if not self.body.strip():
                raise bad_request("The request has no body")
            try:
                self._parsed = fhirjson.loads_untrusted(self.body)
            except (fhirjson.TooDeep, fhirjson.DuplicateKey) as error:
                raise bad_request(f"The body is refused: {error}") from None
            except fhirjson.JsonError as error:
                raise bad_request(f"The body is not valid JSON: {error}") from None
        return self._parsed

    def resource_body(self) -> dict[str, Any]:
        """The body as a resource: a JSON object in a JSON media type."""
        if self.content_type and self.content_type not in JSON_TYPES:
            raise FhirError(
                415,
                [Issue("not-supported", f"Unsupported media type '{self.content_type}': send {FHIR_JSON}")],
            )
        body = self.json_body()
        if not isinstance(body, dict):
            raise bad_request("The body must be a JSON object (a FHIR resource)")
        return body


@dataclass
class FhirResponse:
    """What a handler answers. `body` is ready bytes (e.g. a stored resource) or a JSON value; or
    `stream` yields the body's bytes as they are made (an answer too large to hold, e.g. `$care-gaps`
    over a panel): its status is sent before it runs, so a handler fails before returning where it can."""

    status: int
    body: bytes | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = FHIR_JSON
    stream: AsyncIterator[bytes] | None = None

    async def collected(self) -> FhirResponse:
        """This answer with its stream read into `body` (where it must be embedded, e.g. a batch entry)."""
        if self.stream is None:
            return self
        body = b"".join([chunk async for chunk in self.stream])
        return FhirResponse(self.status, body, self.headers, self.media_type)
