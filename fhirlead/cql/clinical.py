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
