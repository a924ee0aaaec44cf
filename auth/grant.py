"""Grant: what one access token allows, as the enforcement layer sees it."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhirlead.auth.scopes import ResourceScope, resource_scopes, split


@dataclass(frozen=True)
class Grant:
    client_id: str
    scope: str
    token_id: str
    expires: float
    subject: str  # the user's name, or the client id for a system token
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    admin: bool = False
    family: str | None = None  # the refresh-token family this token came from, if any
    scopes: tuple[ResourceScope, ...] = field(default=(), compare=False)

    @classmethod
    def from_claims(cls, claims: dict) -> Grant:
        scope = claims.get("scope", "")
        return cls(
            client_id=claims["client_id"],
            scope=scope,
            token_id=claims["jti"],
            expires=float(claims["exp"]),
            subject=claims.get("sub", claims["client_id"]),
            patient=claims.get("patient"),
            encounter=claims.get("encounter"),
            fhir_user=claims.get("fhirUser"),
            admin=bool(claims.get("fhirlead_admin")),
            family=claims.get("fam"),
            scopes=tuple(resource_scopes(split(scope))),
        )

    def covering(self, type_: str, permission: str) -> list[ResourceScope]:
        """The resource scopes that allow `permission` (one of c r u d s) on `type_`."""
        return [scope for scope in self.scopes if scope.covers(type_, permission)]
