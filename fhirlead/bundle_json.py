"""Assembling Bundle JSON from stored resource bytes without parsing them again.

Search and history Bundles can hold hundreds of resources that are already serialised in the store;
splicing their bytes into the Bundle skeleton keeps those responses from a parse/serialise round trip.
"""

from __future__ import annotations

from typing import Any

from fhirlead import fhirjson


def entry(before: dict[str, Any], resource: bytes | None, after: dict[str, Any]) -> bytes:
    """`{**before, "resource": <resource bytes>, **after}` as JSON bytes (resource omitted when None)."""
    parts = [fhirjson.dumps(before)[:-1]] if before else [b"{"]
    if resource is not None:
        parts.append((b',"resource":' if before else b'"resource":') + resource)
    if after:
        tail = fhirjson.dumps(after)[1:]
        parts.append((b"," if before or resource is not None else b"") + tail)
    else:
        parts.append(b"}")
    return b"".join(parts)


def bundle(header: dict[str, Any], entries: list[bytes]) -> bytes:
    """`{**header, "entry": [...]}` as JSON bytes; no `entry` key when there are none (FHIR forbids [])."""
    head = fhirjson.dumps(header)
    if not entries:
        return head
    return head[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def to_bytes(value: bytes | dict[str, Any]) -> bytes:
    """Stored bytes pass through; a JSON value built in memory is serialised."""
    return value if isinstance(value, bytes) else fhirjson.dumps(value)
