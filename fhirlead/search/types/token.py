"""token parameters (https://hl7.org/fhir/R4/search.html#token).

Indexed as (system, code) pairs: Coding and CodeableConcept (each coding), Identifier (system, value),
ContactPoint (system, value), boolean ("true"/"false"), and code/string/uri/id (no system). Display
texts go to `<key>:text` string entries for `:text`; an Identifier's type goes to `<key>:of-type`
entries (type system, "type code|value") for `:of-type`.

Search forms: `code` (any system), `system|code`, `|code` (no system), `system|` (any code in system);
modifiers `:not` (no value matches; includes resources without a value), `:text`, `:of-type`.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from fhirlead.errors import bad_request
from fhirlead.search.entries import IndexEntries
from fhirlead.search.normalize import fold
from fhirlead.search.query import StringMatch, TokenMatch
from fhirlead.search.types.string import add_text
from fhirlead.search.values import split_unescaped, unescape

TEXT = ":text"
OF_TYPE = ":of-type"


def parse(key: str, raw: str, modifier: str, name: str) -> TokenMatch | StringMatch:
    """One token search value (the caller handles `:not` by negating the clause)."""
    if modifier == "text":
        return StringMatch(key + TEXT, "start", fold(unescape(raw)))
    parts = split_unescaped(raw, "|")
    if modifier == "of-type":
        if len(parts) != 3 or not all(parts):
            raise bad_request(
                f"Invalid :of-type value '{raw}' for '{name}': expected system|code|value", name
            )
        system, code, value = (unescape(p) for p in parts)
        return TokenMatch(key + OF_TYPE, system, f"{code}|{value}")
    if modifier not in ("", "not"):
        raise bad_request(f"Unsupported modifier ':{modifier}' on token parameter '{name}'", name)
    if len(parts) == 1:
        code = unescape(parts[0])
        return TokenMatch(key, None, code)
    if len(parts) != 2 or (not parts[0] and not parts[1]):
        raise bad_request(f"Invalid token '{raw}' for parameter '{name}': expected [system|]code", name)
    system, code = unescape(parts[0]), unescape(parts[1])
    return TokenMatch(key, system, code or None)


# -- write time --------------------------------------------------------------------------------


def _add_code(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, str) and value:
        out.token.append((key, "", value))
    elif isinstance(value, bool):
        out.token.append((key, "", "true" if value else "false"))
    elif isinstance(value, int | float | Decimal):
        out.token.append((key, "", str(value)))


def _add_coding(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    code = value.get("code")
    if isinstance(code, str) and code:
        out.token.append((key, value.get("system") or "", code))
    add_text(key + TEXT, value.get("display"), out)


def _add_concept(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    for coding in value.get("coding") or ():
        _add_coding(key, coding, out)
    add_text(key + TEXT, value.get("text"), out)


def _add_identifier(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        return
    identifier = value.get("value")
    if isinstance(identifier, str) and identifier:
        out.token.append((key, value.get("system") or "", identifier))
    kind = value.get("type")
    if isinstance(kind, dict):
        add_text(key + TEXT, kind.get("text"), out)
        if isinstance(identifier, str) and identifier:
            for coding in kind.get("coding") or ():
                if isinstance(coding, dict) and coding.get("code"):
                    out.token.append(
                        (key + OF_TYPE, coding.get("system") or "", f"{coding['code']}|{identifier}")
                    )


def _add_contact(key: str, value: Any, out: IndexEntries) -> None:
    if isinstance(value, dict):
        contact = value.get("value")
        if isinstance(contact, str) and contact:
            out.token.append((key, value.get("system") or "", contact))


def _add_dynamic(key: str, value: Any, out: IndexEntries) -> None:
    if not isinstance(value, dict):
        _add_code(key, value, out)
    elif "coding" in value or ("text" in value and len(value) <= 2):
        _add_concept(key, value, out)
    elif "code" in value:
        _add_coding(key, value, out)
    elif "value" in value and ("system" in value or "type" in value):
        (_add_contact if value.get("system") in _CONTACT_SYSTEMS else _add_identifier)(key, value, out)
    elif "url" in value:
        for name, inner in value.items():
            if name.startswith("value") and name[5:] in _BY_SUFFIX:
                _BY_SUFFIX[name[5:]](key, inner, out)


_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
_PRIMITIVES = (
    "code",
    "string",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
    "boolean",
    "integer",
    "positiveInt",
    "unsignedInt",
    "decimal",
    "markdown",
)
CONVERTERS: dict[str, Callable[[str, Any, IndexEntries], None]] = {
    **{name: _add_code for name in _PRIMITIVES},
    "Coding": _add_coding,
    "CodeableConcept": _add_concept,
    "Identifier": _add_identifier,
    "ContactPoint": _add_contact,
}
_BY_SUFFIX = {name[0].upper() + name[1:]: fn for name, fn in CONVERTERS.items()}


def converter(fhir_type: str) -> Callable[[str, Any, IndexEntries], None] | None:
    if fhir_type in CONVERTERS:
        return CONVERTERS[fhir_type]
    if fhir_type in ("*", "Extension", "Resource"):
        return _add_dynamic
    return None
