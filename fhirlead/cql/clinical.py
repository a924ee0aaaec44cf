"""Clinical values: Code, Concept, CodeSystem and ValueSet (with hash-set membership)."""

from __future__ import annotations

from collections.abc import Iterable


def _fold(text: str | None) -> str | None:
    """String-equivalence key: case-insensitive with whitespace normalised (CQL `~` on strings)."""
    return None if text is None else " ".join(text.split()).casefold()


class Code:
    """A CQL Code: code, system, version, display."""

    __slots__ = ("_key", "code", "display", "system", "version")

    def __init__(
        self,
        code: str | None,
        system: str | None = None,
        version: str | None = None,
        display: str | None = None,
    ) -> None:
        self.code = code
        self.system = system
        self.version = version
        self.display = display
        self._key: tuple[str | None, str | None] | None = None

    @property
    def key(self) -> tuple[str | None, str | None]:
        """(code, system) folded for equivalence."""
        k = self._key
        if k is None:
            k = self._key = (_fold(self.code), _fold(self.system))
        return k

    def __repr__(self) -> str:
        return f"Code({self.code!r}, {self.system!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Code) and (self.code, self.system, self.version, self.display) == (
            other.code,
            other.system,
            other.version,
            other.display,
        )

    def __hash__(self) -> int:
        return hash((self.code, self.system))


class Concept:
    """A CQL Concept: a list of codes meaning the same thing, plus an optional display."""

    __slots__ = ("codes", "display")

    def __init__(self, codes: list[Code | None] | None, display: str | None = None) -> None:
        self.codes = codes
        self.display = display

    def __repr__(self) -> str:
        return f"Concept({self.codes!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Concept) and self.codes == other.codes and self.display == other.display

    def __hash__(self) -> int:
        return hash("Concept")


class CodeSystem:
    """A code system reference (`codesystem` declaration)."""

    __slots__ = ("id", "name", "version")

    def __init__(self, id: str, version: str | None = None, name: str | None = None) -> None:
        self.id = id
        self.version = version
        self.name = name

    def __repr__(self) -> str:
        return f"CodeSystem({self.id!r})"


# The same code system under its canonical URI and its HL7-registered OID (CodeSystem.identifier):
# value set expansions from VSAC may name either, and so may data.
_SYSTEM_ALIASES_ONE_WAY = {
    "http://loinc.org": "urn:oid:2.16.840.1.113883.6.1",
    "http://snomed.info/sct": "urn:oid:2.16.840.1.113883.6.96",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "urn:oid:2.16.840.1.113883.6.88",
    "http://hl7.org/fhir/sid/icd-10-cm": "urn:oid:2.16.840.1.113883.6.90",
    "http://hl7.org/fhir/sid/icd-9-cm": "urn:oid:2.16.840.1.113883.6.103",
    "http://www.cms.gov/Medicare/Coding/ICD10": "urn:oid:2.16.840.1.113883.6.4",
    "http://www.ama-assn.org/go/cpt": "urn:oid:2.16.840.1.113883.6.12",
    "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets": "urn:oid:2.16.840.1.113883.6.285",
    "http://hl7.org/fhir/sid/cvx": "urn:oid:2.16.840.1.113883.12.292",
    "https://nahdo.org/sopt": "urn:oid:2.16.840.1.113883.3.221.5",
    "http://unitsofmeasure.org": "urn:oid:2.16.840.1.113883.6.8",
    "http://nucc.org/provider-taxonomy": "urn:oid:2.16.840.1.113883.6.101",
}
SYSTEM_ALIASES = {**_SYSTEM_ALIASES_ONE_WAY, **{v: k for k, v in _SYSTEM_ALIASES_ONE_WAY.items()}}


class ValueSet:
    """A value set with its expansion as a hash set of (system, code) pairs.

    `whole_systems` holds code systems included in full (a compose include with only a system),
    so membership in such value sets needs no enumeration; `excluded` lists (system, code) pairs
    removed from them (compose.exclude).
    """

    __slots__ = (
        "codes",
        "excluded",
        "excluded_prefixes",
        "id",
        "members",
        "name",
        "version",
        "whole_systems",
    )

    def __init__(
        self,
        id: str,
        version: str | None = None,
        codes: Iterable[Code] = (),
        whole_systems: Iterable[str] = (),
        name: str | None = None,
        excluded: Iterable[tuple[str | None, str | None]] = (),
        excluded_prefixes: Iterable[tuple[str, str, bool]] = (),
    ) -> None:
        self.id = id
        self.excluded_prefixes = tuple(excluded_prefixes)  # (system, prefix, include the prefix itself)
        self.version = version
        self.name = name
        self.excluded = frozenset(excluded)
        self.codes = [c for c in codes if (c.system, c.code) not in self.excluded]
        self.members = frozenset((c.system, c.code) for c in self.codes)
        self.whole_systems = frozenset(whole_systems)

    def __repr__(self) -> str:
        return f"ValueSet({self.id!r}, {len(self.codes)} codes)"

    def contains(self, system: str | None, code: str | None) -> bool:
        if (system, code) in self.members:
            return True
        alias = SYSTEM_ALIASES.get(system) if system is not None else None
        if alias is not None and (alias, code) in self.members:
            return True  # the code system named by its other identifier (URI or OID)
        if alias is not None and system not in self.whole_systems and alias in self.whole_systems:
            system = alias
        if system not in self.whole_systems or code is None or (system, code) in self.excluded:
            return False
        for ex_system, prefix, itself in self.excluded_prefixes:
            if ex_system == system and code.startswith(prefix) and (itself or code != prefix):
                return False
        return True

    def contains_code(self, code: Code | None) -> bool:
        return code is not None and self.contains(code.system, code.code)

    def has_code(self, code: str) -> bool:
        """Membership of a bare code string (any system), as `'x' in ValueSet` means in CQL."""
        return any(c.code == code for c in self.codes)

    def expansion(self) -> list[Code]:
        return list(self.codes)
