"""The MongoDB document shapes, and the conversions between them and the port's values.

The collections that hold the data (see `schema`; a Group's members are in `group_members`, see
`members`):

- `resources`: one document per resource, `_id` "Type/id": the current version's number, write time,
  method and deleted flag, `pk` (a creation-order integer: search's default order and paging key),
  the resource itself as a native sub-document (`resource`, None once deleted) so operators can query
  it with MongoDB's own tools, and `sort`: one scalar pair per search key (see `sort_values`).
- `history`: every version ever written, numbered by the global write sequence `seq`, the resource
  as a native sub-document (None for a delete).
- `search_index`: one small flat document per (resource, search key, value) of the current live
  version — the index rows of the SQLite backend. One document per value, not an array in the
  resource, because a Group with 100,000 members would otherwise outgrow MongoDB's 16 MB document
  limit, and because flat documents need no array-path queries, multikey indexes or array sorts
  (which the test stand-ins and some MongoDB-compatible servers answer wrongly).

`ResourceVersion.body` is `fhirjson.dumps(resource)` of the stored sub-document: BSON keeps key order
and number types, and FHIR decimals are stored as Decimal128, which keeps their digits (`1.50`), so the
bytes equal those the SQLite backend stores for the same write.

A resource that a native sub-document cannot hold exactly is stored out of line instead: its JSON bytes
in `bodies`, in chunks of BODY_CHUNK bytes keyed by the version's `seq`, and `body_seq` in place of
`resource`. That is a resource too big for a document (FHIR allows it: the official examples include a
30 MB Bundle, and MongoDB refuses documents over 16 MB), one nested deeper than MongoDB's 100 levels,
and one with a decimal Decimal128 cannot hold or would spell differently (more than 34 digits, an
exponent beyond ±6,000, `1e2` rather than `1E+2`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from bson.decimal128 import Decimal128

from fhirlead import fhirjson
from fhirlead.search.entries import KINDS, IndexEntries
from fhirlead.search.types.quantity import CANONICAL
from fhirlead.storage.port import ResourceVersion

# Value fields of a search_index document per kind, in the order of the entry tuple after its key.
FIELDS: dict[str, tuple[str, ...]] = {
    "string": ("norm", "exact"),
    "token": ("system", "code"),
    "number": ("lo", "hi"),
    "date": ("lo", "hi"),
    "quantity": ("system", "code", "unit", "lo", "hi"),
    "reference": ("rtype", "rid", "url", "version"),
    "uri": ("uri",),
}

_TEXT_HIGH = "\U0010ffff\U0010ffff"
_INT_HIGH, _INT_LOW = 2**63 - 1, -(2**63)
# kind -> missing-value sentinels (ascending, descending): resources without a value sort last
MISSING: dict[str, tuple[Any, Any]] = {
    "string": (_TEXT_HIGH, ""),
    "token": (_TEXT_HIGH, ""),
    "uri": (_TEXT_HIGH, ""),
    "reference": (_TEXT_HIGH, ""),
    "date": (_INT_HIGH, _INT_LOW),
    "number": (float("inf"), float("-inf")),
    "quantity": (float("inf"), float("-inf")),
}


def resource_key(type_: str, id_: str) -> str:
    return f"{type_}/{id_}"


def body_of(resource: dict[str, Any] | None) -> bytes | None:
    return None if resource is None else fhirjson.dumps(resource)


NATIVE_DEPTH = 90  # JSON levels of a resource sub-document; MongoDB refuses BSON nested over 100 deep


class _NotNative(Exception):
    pass


def native(resource: dict[str, Any]) -> dict[str, Any] | None:
    """`resource` as a BSON sub-document that reads back to the same JSON (decimals as Decimal128), or
    None when it cannot be one and must be stored out of line."""
    try:
        return _native(resource, 1)
    except _NotNative:
        return None


def _native(value: Any, level: int) -> Any:
    if isinstance(value, dict):
        if level > NATIVE_DEPTH:
            raise _NotNative
        return {key: _native(item, level + 1) for key, item in value.items()}
    if isinstance(value, list):
        if level > NATIVE_DEPTH:
            raise _NotNative
        return [_native(item, level + 1) for item in value]
    if isinstance(value, Decimal):
        if isinstance(value, fhirjson.ExactDecimal):
            raise _NotNative
        try:
            return Decimal128(value)
        except ArithmeticError:  # Inexact, Overflow: beyond 34 digits or the exponent range
            raise _NotNative from None
    return value


INLINE_LIMIT = 8 * 1024 * 1024  # JSON bytes above which a body is stored out of line
BODY_CHUNK = 4 * 1024 * 1024


def to_version(doc: dict[str, Any], body: bytes | None = None) -> ResourceVersion:
    """A `resources` or `history` document as the port's ResourceVersion (`body`: an out-of-line one)."""
    if body is None:
        body = body_of(doc.get("resource"))
    return ResourceVersion(doc["type"], doc["id"], doc["version"], doc["lastUpdated"], doc["method"], body)


def body_chunks(seq: int, body: bytes) -> list[dict[str, Any]]:
    return [
        {"seq": seq, "n": n, "data": body[start : start + BODY_CHUNK]}
        for n, start in enumerate(range(0, len(body), BODY_CHUNK))
    ]


def _url_base(rtype: str, rid: str, url: str) -> str | None:
    """The part of an absolute reference before `/Type/id`, so "is it on this server" (url equals
    base_url/Type/id) is one equality on a stored field instead of a comparison between fields."""
    tail = f"/{rtype}/{rid}"
    return url[: -len(tail)] if url and url.endswith(tail) else None


_FLOAT_MAX = 1.7976931348623157e308


def _finite(value: Any) -> Any:
    """±infinity (an open Range bound) as the largest finite double: it orders and compares the same
    against every search value, and stays valid JSON for MongoDB-compatible servers and exports."""
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return _FLOAT_MAX if value > 0 else -_FLOAT_MAX
    return value


def _value_doc(kind: str, values: tuple) -> dict[str, Any]:
    doc = dict(zip(FIELDS[kind], map(_finite, values), strict=True))
    if kind == "reference":
        doc["ubase"] = _url_base(doc["rtype"], doc["rid"], doc["url"])
    return doc


def index_documents(pk: int, type_: str, entries: IndexEntries, rep_base: int = 0) -> list[dict[str, Any]]:
    """The search_index documents of one resource version: plain entries with rep 0, composite
    components under `<key>#<n>` with one rep number (> 0) per repetition, as in the SQLite tables. A
    Group member's are numbered down from its negative `rep_base` (storage/group_members.py)."""
    docs: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for kind in KINDS:
        for entry in entries.of_kind(kind):
            marker = (kind, entry, 0)
            if marker in seen:
                continue
            seen.add(marker)
            docs.append({"pk": pk, "type": type_, "key": entry[0], "kind": kind, "rep": rep_base,
                         **_value_doc(kind, entry[1:])})
    step = -1 if rep_base < 0 else 1
    for number, (key, components) in enumerate(entries.composite, start=1):
        rep = rep_base + step * number
        for position, (kind, value) in enumerate(components):
            docs.append({"pk": pk, "type": type_, "key": f"{key}#{position}", "kind": kind, "rep": rep,
                         **_value_doc(kind, tuple(value))})
    return docs


def _sort_scalar(kind: str, entry: tuple) -> tuple[Any, Any] | None:
    """(ascending value, descending value) of one entry, as the SQLite backend's sort columns."""
    if kind in ("string", "uri"):  # string: the normalized form
        return entry[0], entry[0]
    if kind == "token":  # the code
        return entry[1], entry[1]
    if kind == "reference":
        text = f"{entry[0]}/{entry[1]}{entry[2]}"
        return text, text
    if kind == "quantity":
        if entry[0] == CANONICAL:
            return None
        return entry[3], entry[4]
    return entry[0], entry[1]  # number, date: lowest low ascending, highest high descending


def sort_values(entries: IndexEntries) -> dict[str, dict[str, dict[str, Any]]]:
    """Per kind and key, the scalar a sort uses: `a` the lowest value (ascending), `d` the highest
    (descending). Stored as scalars so no query depends on MongoDB's sort of array fields."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in KINDS:
        for entry in entries.of_kind(kind):
            pair = _sort_scalar(kind, tuple(map(_finite, entry[1:])))
            if pair is None:
                continue
            per_kind = out.setdefault(kind, {})
            found = per_kind.get(entry[0])
            if found is None:
                per_kind[entry[0]] = {"a": pair[0], "d": pair[1]}
            else:
                found["a"] = min(found["a"], pair[0])
                found["d"] = max(found["d"], pair[1])
    return out
