"""reference parameters (https://hl7.org/fhir/R4/search.html#reference).

Indexed as (type, id, url, version): a relative reference `Type/id` keeps type and id; an absolute
URL keeps the URL (plus type and id when it ends in `Type/id`, so that a reference to this server's own
base can be matched once the base is known at query time); a canonical keeps url and version; a
Reference.identifier becomes a token entry under `<key>:identifier`. Contained references (`#id`) are
not indexed.

Search forms: `id`, `Type/id`, an absolute URL (this server's base is treated as local), a canonical
`url|version`; modifiers `:Type` and `:identifier`. Chains and `_has` are parsed in `fhirlead.search.parse`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirlead.definitions import resource_types
from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.query import ReferenceMatch, TokenMatch
from fhirlead.search.types import token
from fhirlead.search.values import split_unescaped, unescape

IDENTIFIER = ":identifier"
_TAIL = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def split_reference(text: str) -> tuple[str, str, str]:
    """(type, id, url) of a literal reference string; url "" for a relative reference."""
    absolute = "://" in text or text.startswith(("urn:", "#"))
    match = _TAIL.search(text)
    if match is not None and match.group(1) in resource_types():
        if not absolute:
            return match.group(1), match.group(2), ""
        url = text[: text.index("/_history/")] if "/_history/" in text else text
        return match.group(1), match.group(2), url
    return "", "", text


def parse(key: str, raw: str, modifier: str, name: str, base_url: str) -> ReferenceMatch | TokenMatch:
    if modifier == "identifier":
        found = token.parse(key + IDENTIFIER, raw, "", name)
        assert isinstance(found, TokenMatch)
        return found
    if modifier and modifier not in resource_types():
        raise bad_request(f"Unsupported modifier ':{modifier}' on reference parameter '{name}'", name)
    value = unescape(raw)
    if not value:
        raise bad_request(f"Empty reference for parameter '{name}'", name)
    if base_url and value.startswith(base_url + "/"):
        value = value[len(base_url) + 1 :]
    if "://" in value or value.startswith("urn:"):
        parts = split_unescaped(raw, "|")
        if len(parts) == 2:
            return ReferenceMatch(key, None, None, url=unescape(parts[0]), version=unescape(parts[1]) or None)
        return ReferenceMatch(key, None, None, url=value)
    type_, id_, _ = split_reference(value)
    if not type_:
        if "/" in value:
            raise bad_request(
                f"Invalid reference '{raw}' for parameter '{name}': expected id or Type/id", name
            )
        type_, id_ = "", value
    if modifier and type_ and modifier != type_:
        raise bad_request(f"Reference '{raw}' does not match the type modifier ':{modifier}'", name)
    return ReferenceMatch(key, modifier or type_ or None, id_)


# -- write time --------------------------------------------------------------------------------


def _add_literal(key: str, text: Any, out: IndexEntries) -> None:
    if not isinstance(text, str) or not text or text.startswith("#"):
        return
    type_, id_, url = split_reference(text)
    out.reference.append((key, type_, id_, url, ""))


def _add_reference(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    _add_literal(key, value.get("reference"), out)
    identifier = value.get("identifier")
    if isinstance(identifier, dict):
        token.CONVERTERS["Identifier"](key + IDENTIFIER, identifier, out)


def _add_canonical(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str) and value:
        url, _, version = value.partition("|")
        out.reference.append((key, "", "", url, version))


def _add_resource(key: str, value: Any, out: IndexEntries) -> None:
    if (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and isinstance(value.get("id"), str)
    ):
        out.reference.append((key, value["resourceType"], value["id"], "", ""))


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str):
        (_add_literal if "/" in value and "://" not in value else _add_canonical)(key, value, out)
    elif isinstance(value, dict):
        if "resourceType" in value:
            _add_resource(key, value, out)
        elif "reference" in value or "identifier" in value:
            _add_reference(key, value, out)
        else:
            for name in ("valueReference",):
                if name in value:
                    _add_reference(key, value[name], out)
            for name in ("valueCanonical", "valueUri", "valueUrl"):
                if name in value:
                    _add_canonical(key, value[name], out)


CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    "Reference": _add_reference,
    "canonical": _add_canonical,
    "uri": _add_canonical,
    "url": _add_canonical,
    "Resource": _add_resource,
}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension"):
        return _add_dynamic
    return None
