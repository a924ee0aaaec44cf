"""What an operation's caller may see, shared by the operations that read the record on its behalf
(`$evaluate-measure`, `$care-gaps`, `$match`, `$aggregate-patient`, `$everything`, `$summary`).

Asking is allowed by a scope on the operation's own subject (`requiring`); what the operation then
reads is limited resource by resource to what the token may read (`admit`), so a patient app or a
practitioner's token sees its part of an answer and nothing else (docs/security.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fhirlead.auth.enforce import forbidden
from fhirlead.plugins import OperationCall

Resource = dict[str, Any]


def admit(call: OperationCall) -> Callable[[Resource], bool] | None:
    """Whether the caller's token may read a resource (None: no authorization, everything)."""
    access = call.request.access
    if access is None:
        return None

    def visible(resource: Resource) -> bool:
        filters = access.filters(str(resource.get("resourceType")), "r")
        return bool(filters) and access.admits(resource, filters)

    return visible


def requiring(type_: str) -> Callable[[Any, OperationCall], Awaitable[None]]:
    """An operation's `authorize`: the token must read `type_` resources (in any context)."""

    async def authorize(policy: Any, call: OperationCall) -> None:
        if not policy.grant.covering(type_, "r"):
            operation = call.request.path.rsplit("$", 1)[-1]
            raise forbidden(f"The access token does not allow ${operation}: it needs read access to {type_} resources")

    return authorize
