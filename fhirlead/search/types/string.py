"""string parameters (https://hl7.org/fhir/R4/search.html#string).

Default: the value starts with the search text, ignoring case and accents (both sides folded by
`normalize.fold`); `:exact`: the whole value, code point for code point; `:contains`: anywhere.
HumanName and Address are searched on each of their parts (and on the name's "given family" form);
`:text` on token parameters reuses these entries under the key `<code>:text`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.normalize import fold
from fhirlead.search.query import StringMatch

MODES = {"": "start", "exact": "exact", "contains": "contains"}


def parse(key: str, raw: str, modifier: str, name: str) -> StringMatch:
    mode = MODES.get(modifier)
    if mode is None:
        raise bad_request(f"Unsupported modifier ':{modifier}' on string parameter '{name}'", name)
    return StringMatch(key, mode, raw if mode == "exact" else fold(raw))


# -- write time --------------------------------------------------------------------------------


def add_text(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str) and value:
        out.string.append((key, fold(value), value))


def _add_all(key: str, values: Any, out: IndexEntries) -> None:
    if isinstance(values, list):
        for value in values:
            add_text(key, value, out)
    else:
        add_text(key, values, out)


def _add_name(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    add_text(key, value.get("text"), out)
    add_text(key, value.get("family"), out)
    given = value.get("given") or []
    for part in ("given", "prefix", "suffix"):
        _add_all(key, value.get(part), out)
    family = value.get("family")
    if given and isinstance(family, str) and all(isinstance(g, str) for g in given):
        add_text(key, " ".join([*given, family]), out)


def _add_address(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    add_text(key, value.get("text"), out)
    _add_all(key, value.get("line"), out)
    for part in ("city", "district", "state", "postalCode", "country"):
        add_text(key, value.get(part), out)


def _add_coded_text(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, dict):
        add_text(key, value.get("text"), out)
        add_text(key, value.get("display"), out)
        for coding in value.get("coding") or ():
            if isinstance(coding, dict):
                add_text(key, coding.get("display"), out)


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str):
        add_text(key, value, out)
    elif isinstance(value, dict):
        if "family" in value or "given" in value:
            _add_name(key, value, out)
        elif "line" in value or "city" in value or "postalCode" in value or "country" in value:
            _add_address(key, value, out)
        else:
            for name, inner in value.items():
                if name in ("valueString", "valueMarkdown", "valueCode", "valueUri"):
                    add_text(key, inner, out)
                elif name == "valueHumanName":
                    _add_name(key, inner, out)
                elif name == "valueAddress":
                    _add_address(key, inner, out)
            if "text" in value or "display" in value:
                _add_coded_text(key, value, out)


_PRIMITIVES = ("string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid")
CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    **{name: add_text for name in _PRIMITIVES},
    "HumanName": _add_name,
    "Address": _add_address,
    "CodeableConcept": _add_coded_text,
    "Coding": _add_coded_text,
}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension", "Resource"):
        return _add_dynamic
    return None
