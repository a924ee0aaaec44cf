"""SMART scopes: parsing v1 and v2 resource scopes and deciding what a set of them allows.

SMART App Launch 2.2.0 §Scopes and Launch Context (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
`<context>/<type>.<permissions>[?param=value&...]` where context is patient, user or system, type a
resource type or `*`, and permissions either v1 `read`/`write`/`*` or v2 letters in the order `cruds`.
A v1 `read` means v2 `rs`, `write` means `cud`, `*` means `cruds`. A v2 scope may carry search
parameters (granular scopes, e.g. `?category=...|laboratory`) that narrow which resources it reaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
V2_ORDER = "cruds"
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]+)\.([a-z*]+)(?:\?(.*))?$")


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """One resource scope: in which context, on which type (`*` = any), which interactions, narrowed by
    which search parameters (`query`, v2 only; every pair must match)."""

    text: str
    context: str
    type: str
    permissions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()

    def covers(self, type_: str, permission: str) -> bool:
        return (self.type == "*" or self.type == type_) and permission in self.permissions

    def narrower_or_equal(self, other: ResourceScope) -> bool:
        """True if everything this scope allows, `other` allows too (used when a refresh narrows)."""
        return (
            self.context == other.context
            and other.type in ("*", self.type)
            and self.permissions <= other.permissions
            and set(other.query) <= set(self.query)
        )


def parse_resource_scope(text: str) -> ResourceScope | None:
    """The scope's meaning, or None if `text` is not a (well-formed) SMART resource scope."""
    found = _RESOURCE_SCOPE.match(text)
    if found is None:
        return None
    context, type_, permissions, query = found.groups()
    if permissions in V1_PERMISSIONS:
        if query:
            return None  # granular parameters exist only in v2 syntax
        letters = V1_PERMISSIONS[permissions]
    else:
        letters = permissions
        if not letters or any(c not in V2_ORDER for c in letters) or letters != "".join(
            c for c in V2_ORDER if c in letters
        ):
            return None  # v2 letters must be distinct and in the order c, r, u, d, s
    pairs = tuple(parse_qsl(query, keep_blank_values=False)) if query else ()
    if query and not pairs:
        return None
    return ResourceScope(text, context, type_, frozenset(letters), pairs)


def split(scope: str | None) -> list[str]:
    """The scope string's tokens, in order, without repeats."""
    return list(dict.fromkeys((scope or "").split()))


def resource_scopes(tokens: list[str]) -> list[ResourceScope]:
    return [parsed for token in tokens if (parsed := parse_resource_scope(token)) is not None]


def is_known(token: str) -> bool:
    """Scopes this server understands (anything else is refused as invalid_scope)."""
    return token in NON_RESOURCE_SCOPES or parse_resource_scope(token) is not None


NON_RESOURCE_SCOPES = frozenset({
    "openid", "fhirUser", "profile", "launch", "launch/patient", "launch/encounter",
    "offline_access", "online_access",
})


def within(requested: str, registered: list[str]) -> bool:
    """True if the client registered `requested` itself, or a resource scope that covers all of it
    (a client registered for `patient/*.rs` may ask for `patient/Observation.rs?category=…`)."""
    if requested in registered:
        return True
    wanted = parse_resource_scope(requested)
    if wanted is None:
        return False
    return any(
        (allowed := parse_resource_scope(token)) is not None and wanted.narrower_or_equal(allowed)
        for token in registered
    )


def grantable(requested: list[str], registered: list[str]) -> list[str]:
    """requested ∩ registered (in the request's order), where a registered wider scope admits a narrower
    requested one."""
    return [token for token in requested if within(token, registered)]
