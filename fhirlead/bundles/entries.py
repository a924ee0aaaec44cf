"""Reading the entries of a batch or transaction Bundle into plain requests.

Each entry's `request.url` is relative to the base (`Patient`, `Patient/1`, `Patient?identifier=x`,
`Patient/1/_history/2`); an absolute URL on this server's base is accepted too. Problems are reported
as FhirErrors that name the entry by index and fullUrl, so a client can find it in a large Bundle.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhirlead import fhirjson
from fhirlead.definitions import resource_types
from fhirlead.errors import FhirError, Issue

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Processing order of a transaction (https://hl7.org/fhir/R4/http.html#trules).
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
JSON_PATCH = "application/json-patch+json"


@dataclass
class Entry:
    """One Bundle entry as a request."""

    index: int
    full_url: str
    method: str
    url: str  # as given, relative to the base
    path: str  # the part before '?'
    params: list[tuple[str, str]]
    resource: dict[str, Any] | None
    if_none_exist: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    segments: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How errors name this entry: `Bundle.entry[3] (fullUrl urn:uuid:…)`."""
        named = f" (fullUrl {self.full_url})" if self.full_url else ""
        return f"Bundle.entry[{self.index}]{named}"

    @property
    def type_(self) -> str:
        return self.segments[0] if self.segments else ""

    @property
    def id_(self) -> str | None:
        """The id an instance URL (`Type/id`) names, None for type-level URLs."""
        return self.segments[1] if len(self.segments) == 2 else None

    @property
    def conditional(self) -> bool:
        return len(self.segments) == 1 and bool(self.params)

    def error(self, status: int, code: str, text: str) -> FhirError:
        return FhirError(status, [Issue(code, f"{self.label}: {text}", expression=(f"Bundle.entry[{self.index}]",))])

    def patch_document(self) -> Any:
        """A PATCH entry's JSON Patch, carried as a Binary resource (R4 has no other JSON form)."""
        resource = self.resource or {}
        if resource.get("resourceType") != "Binary" or resource.get("contentType") != JSON_PATCH:
            raise self.error(400, "invalid", f"a PATCH entry's resource must be a Binary with contentType {JSON_PATCH}")
        try:
            return fhirjson.loads_untrusted(base64.b64decode(resource.get("data", ""), validate=True))
        except (binascii.Error, ValueError) as error:
            raise self.error(400, "invalid", f"the Binary does not hold a JSON Patch document: {error}") from None


def bundle_error(text: str, *expression: str) -> FhirError:
    return FhirError(400, [Issue("invalid", text, expression=expression)])


def read_bundle(body: Any, base_url: str) -> tuple[str, list[Entry | FhirError]]:
    """The Bundle's type (`batch` or `transaction`) and its entries; a malformed Bundle is a 400.

    A malformed entry is returned as its error: a batch answers it in that entry alone, a transaction
    fails as a whole (`entries_of_transaction`).
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise bundle_error("POST to the base takes a Bundle of type batch or transaction")
    kind = body.get("type")
    if kind not in ("batch", "transaction"):
        raise bundle_error(f"Bundle.type must be 'batch' or 'transaction', not {kind!r}", "Bundle.type")
    raw = body.get("entry", [])
    if not isinstance(raw, list):
        raise bundle_error("Bundle.entry must be an array", "Bundle.entry")
    _unique_full_urls(raw)
    return kind, [_read_or_fail(index, item, base_url) for index, item in enumerate(raw)]


def _unique_full_urls(raw: list[Any]) -> None:
    """bdl-7 (https://hl7.org/fhir/R4/bundle.html#bundle-unique): "FullUrl must be unique in a bundle":
    two entries of one fullUrl would make every reference to it ambiguous (the exception for entries of
    different versions is for history Bundles, which are not posted)."""
    first: dict[str, int] = {}
    for index, item in enumerate(raw):
        full_url = item.get("fullUrl") if isinstance(item, dict) else None
        if not isinstance(full_url, str):
            continue
        if full_url in first:
            raise bundle_error(f"Bundle.entry[{index}] repeats the fullUrl {full_url} of Bundle.entry"
                               f"[{first[full_url]}]: a fullUrl must be unique in a Bundle (bdl-7)",
                               f"Bundle.entry[{index}].fullUrl")
        first[full_url] = index


def _read_or_fail(index: int, item: Any, base_url: str) -> Entry | FhirError:
    try:
        return read_entry(index, item, base_url)
    except FhirError as error:
        return error


def entries_of_transaction(entries: list[Entry | FhirError]) -> list[Entry]:
    """A transaction's entries, raising the first malformed one's error."""
    for item in entries:
        if isinstance(item, FhirError):
            raise item
    return [item for item in entries if isinstance(item, Entry)]


def read_entry(index: int, item: Any, base_url: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(item, dict):
        raise bundle_error(f"{where} must be an object", where)
    request = item.get("request")
    full_url = item.get("fullUrl", "") if isinstance(item.get("fullUrl", ""), str) else ""
    named = f"{where}{f' (fullUrl {full_url})' if full_url else ''}"
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        raise bundle_error(f"{named} has no request.url", f"{where}.request")
    method = request.get("method")
    if method not in METHODS:
        raise bundle_error(f"{named}: request.method must be one of {', '.join(METHODS)}", f"{where}.request.method")
    resource = item.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise bundle_error(f"{named}: resource must be a JSON object", f"{where}.resource")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise bundle_error(f"{named}: a {method} entry needs a resource", f"{where}.resource")
    url = request["url"]
    path, params = split_url(url, base_url)
    segments = [segment for segment in path.split("/") if segment]
    entry = Entry(
        index, full_url, method, url, path, params, resource,
        request.get("ifNoneExist"), request.get("ifMatch"), request.get("ifNoneMatch"),
        request.get("ifModifiedSince"), segments,
    )
    check_target(entry)
    return entry


def split_url(url: str, base_url: str) -> tuple[str, list[tuple[str, str]]]:
    """`Patient/1?x=y` → ("Patient/1", [("x", "y")]); this server's absolute URLs become relative."""
    if base_url and url.startswith(base_url + "/"):
        url = url[len(base_url) + 1:]
    parts = urlsplit(url)
    return parts.path.strip("/"), parse_qsl(parts.query, keep_blank_values=True)


def check_target(entry: Entry) -> None:
    """Writes must name a known type, at the URL shapes the spec allows for their method."""
    if entry.method in ("GET", "HEAD"):
        return  # routed like any HTTP request; errors come from the router
    if not entry.segments or entry.type_ not in resource_types():
        raise entry.error(404, "not-found", f"unknown resource type in request.url '{entry.url}'")
    shape_ok = {
        "POST": len(entry.segments) == 1,
        "PUT": entry.id_ is not None or entry.conditional,
        "PATCH": entry.id_ is not None or entry.conditional,
        "DELETE": entry.id_ is not None or entry.conditional,
    }[entry.method]
    if not shape_ok:
        raise entry.error(400, "invalid", f"request.url '{entry.url}' is not a valid target for {entry.method}")
    resource = entry.resource
    if entry.method in ("POST", "PUT") and resource is not None and resource.get("resourceType") != entry.type_:
        raise entry.error(400, "invalid",
                          f"the resource is a {resource.get('resourceType')!r} but request.url names {entry.type_}")
