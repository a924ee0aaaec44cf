"""`[type]/$validate` and `[type]/[id]/$validate` (R4: https://hl7.org/fhir/R4/resource-operation-validate.html;
profiles/core/OperationDefinition-Resource-validate.json): would this resource be accepted?

The resource comes as the `resource` parameter of a POSTed Parameters, or as the POST body itself (what
most clients send). It is checked exactly as a write is (docs/validation.md), and the answer is always
`200` with an OperationOutcome listing every issue (warnings too), or one `information` issue when there
is none: R4 keeps 4xx for when validation could not be performed (an unknown profile, no resource).
`mode`: none (the content only); `create` (as a create would take it); `update` (instance level: the
resource's `id` must be the URL's, as an update requires); `delete` (instance level: no resource is
needed; this server keeps no referential integrity, so a delete of what exists is always accepted).
`profile`: a StructureDefinition of the type the server holds (docs/validation.md, "Profiles"), checked
besides those the resource claims in `meta.profile`; an unknown one is a 400 `not-supported`, one for
another type a 400.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fhirlead import fhirjson, parameters
from fhirlead.api.messages import FhirResponse
from fhirlead.auth.enforce import forbidden
from fhirlead.errors import Issue, bad_request, fail, not_found, operation_outcome
from fhirlead.plugins import Operation, OperationCall, OperationRegistry

NAME = "validate"
DEFINITION = fhirjson.loads((Path(__file__).resolve().parent.parent / "profiles" / "core"
                             / "OperationDefinition-Resource-validate.json").read_bytes())
MODES = ("create", "update", "delete")


async def validate(call: OperationCall) -> FhirResponse:
    request, type_ = call.request, str(call.type_)
    body = request.resource_body() if request.method == "POST" and request.body.strip() else None
    if body is None or body.get("resourceType") == "Parameters":
        params = parameters.read(request, DEFINITION)
    else:  # the resource itself as the body; mode and profile, if any, in the query
        given = {name: [text] for name, text in request.params if name in ("mode", "profile")}
        params = parameters.InputParameters({"resource": [body], **given})
    mode, profile, resource = params.one("mode"), params.one("profile"), params.one("resource")
    if mode is not None and mode not in MODES:
        raise bad_request(f"'mode' must be one of {', '.join(MODES)}", "mode")
    if mode in ("update", "delete") and call.id_ is None:
        raise bad_request(f"mode {mode} validates against a stored resource: use {type_}/[id]/$validate", "mode")
    profiles = call.server.validator.profiles
    if profile is not None and not profiles.known(str(profile)):
        raise fail(400, "not-supported", f"profile {profile} is not known to this server", "profile")
    if profile is not None and profiles.conformance.type_of(str(profile)) != type_:
        raise bad_request(f"profile {profile} is not a profile of {type_}", "profile")
    if mode == "delete":
        if await call.server.store.read(type_, str(call.id_)) is None:
            raise not_found(f"{type_}/{call.id_} is not known")
        return _answer([Issue("informational", f"{type_}/{call.id_} may be deleted", "information")])
    if not isinstance(resource, dict):
        raise bad_request("$validate needs the resource: the POST body, or a Parameters with 'resource'", "resource")
    issues = call.server.validator.issues(resource, type_, [str(profile)] if profile else (),
                                         writing=mode in ("create", "update"))
    if mode == "update" and resource.get("id") != call.id_:
        issues.append(Issue("invalid", f"an update of {type_}/{call.id_} needs the resource's id to be "
                                       f"{call.id_!r}, not {resource.get('id')!r}", expression=(f"{type_}.id",)))
    return _answer(issues or [Issue("informational", "No issues: the resource would be accepted", "information")])


def _answer(issues: list[Issue]) -> FhirResponse:
    return FhirResponse(200, operation_outcome(issues))


async def authorize(policy: Any, call: OperationCall) -> None:
    """Any scope on the type that writes or reads it is enough: validating stores nothing."""
    type_ = str(call.type_)
    if not any(policy.grant.covering(type_, permission) for permission in "cur"):
        raise forbidden(f"The access token does not allow $validate on {type_}: it needs a scope on {type_}")


def register(registry: OperationRegistry) -> None:
    registry.add(Operation(NAME, validate, type_level=True, instance=True, definition=DEFINITION, authorize=authorize))
