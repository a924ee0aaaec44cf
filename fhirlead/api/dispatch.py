"""Routing a FHIR request path to its interaction, exactly along the URL patterns of the spec.

One table rather than framework routes: FHIR paths overlap (`Patient/_history` vs `Patient/123`,
`$op` segments), and the spec wants 404 for unknown types and 405 with `Allow` for a method a valid
path does not support. Every handler's module is imported lazily by name to keep start-up cheap, and
found once (the function is looked up on it per request, so it can be replaced, e.g. by a test).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import random
from collections.abc import Awaitable, Callable
from functools import cache
from types import ModuleType
from typing import Any

from fhirlead.api.messages import FhirRequest, FhirResponse
from fhirlead.definitions import resource_types
from fhirlead.errors import FhirError, Issue, not_found
from fhirlead.server import Server
from fhirlead.storage.port import StoreBusy

Handler = Callable[..., Awaitable[FhirResponse]]
log = logging.getLogger(__name__)

# path shape -> {method: "module:function"}
SYSTEM = {"GET": "search_system:handle", "POST": "bundle:handle"}
METADATA = {"GET": "capabilities:handle"}
SYSTEM_HISTORY = {"GET": "history:handle_system"}
SYSTEM_SEARCH = {"POST": "search_system:handle"}
TYPE = {"GET": "search_type:handle", "POST": "create:handle", "PUT": "update:handle_conditional",
        "PATCH": "patch:handle_conditional", "DELETE": "delete:handle_conditional"}
TYPE_HISTORY = {"GET": "history:handle_type"}
TYPE_SEARCH = {"POST": "search_type:handle"}
INSTANCE = {"GET": "read:handle", "PUT": "update:handle", "PATCH": "patch:handle", "DELETE": "delete:handle"}
INSTANCE_HISTORY = {"GET": "history:handle_instance"}
VERSION = {"GET": "vread:handle"}
COMPARTMENT = {"GET": "search_compartment:handle"}
OPERATION = {"GET": "operation:handle", "POST": "operation:handle"}
# the writes whose whole effect is one unit of work, and the pauses (seconds) before running them again
REPEATABLE = frozenset({"create:handle", "update:handle", "update:handle_conditional", "patch:handle",
                        "patch:handle_conditional", "delete:handle", "delete:handle_conditional", "bundle:handle"})
REPEAT_PAUSES = (0.02, 0.1)


@cache
def _module_of(target: str) -> tuple[ModuleType, str]:
    module, function = target.split(":")
    return importlib.import_module(f"fhirlead.interaction.{module}"), function


def _handler(target: str) -> Handler:
    module, function = _module_of(target)
    return getattr(module, function)


def _pick(table: dict[str, str], method: str) -> str:
    target = table.get("GET" if method == "HEAD" else method)
    if target is None:
        allowed = ", ".join(sorted(table))
        raise FhirError(405, [Issue("not-supported", f"{method} is not allowed here (allowed: {allowed})")],
                        {"Allow": allowed})
    return target


def _known_type(type_: str) -> str:
    if type_ not in resource_types():
        raise not_found(f"Unknown resource type '{type_}'")
    return type_


def route_target(method: str, segments: list[str]) -> tuple[str, list[Any]]:
    """The interaction (`module:function` of fhirlead.interaction) and its path arguments."""
    count = len(segments)
    if count == 0:
        return _pick(SYSTEM, method), []
    first = segments[0]
    if count == 1 and first == "metadata":
        return _pick(METADATA, method), []
    if count == 1 and first == "_history":
        return _pick(SYSTEM_HISTORY, method), []
    if count == 1 and first == "_search":
        return _pick(SYSTEM_SEARCH, method), []
    if count == 1 and first.startswith("$"):
        return _pick(OPERATION, method), [first[1:]]
    type_ = _known_type(first)
    if count == 1:
        return _pick(TYPE, method), [type_]
    second = segments[1]
    if count == 2:
        if second == "_history":
            return _pick(TYPE_HISTORY, method), [type_]
        if second == "_search":
            return _pick(TYPE_SEARCH, method), [type_]
        if second.startswith("$"):
            return _pick(OPERATION, method), [second[1:], type_]
        return _pick(INSTANCE, method), [type_, second]
    third = segments[2]
    if count == 3:
        if third == "_history":
            return _pick(INSTANCE_HISTORY, method), [type_, second]
        if third.startswith("$"):
            return _pick(OPERATION, method), [third[1:], type_, second]
        if type_ == "Patient" and (third in resource_types() or third == "*"):
            return _pick(COMPARTMENT, method), [second, third]
    if count == 4 and third == "_history":
        return _pick(VERSION, method), [type_, second, segments[3]]
    raise not_found(f"No FHIR interaction at '{'/'.join(segments)}'")


async def dispatch(server: Server, request: FhirRequest, segments: list[str]) -> FhirResponse:
    """Run the interaction, after the caller's access token was checked for it (when authorization is on).

    A RESTful write (create, update, patch, delete, transaction) whose unit of work lost a race
    with a concurrent transaction (MongoDB's TransientTransactionError, or a duplicate key on a create)
    was rolled back with nothing written: it is run again from the request's bytes, twice at most after
    a short random pause, as the MongoDB driver's `with_transaction` re-runs a transaction's body; then
    the client gets the 503 (or 409) to repeat it. A commit whose outcome is unknown is never re-run.
    Operations are not re-run: some write outside their unit of work."""
    target, arguments = route_target(request.method, segments)
    if request.access is not None:
        await request.access.authorize(target, arguments, request)
    if target not in REPEATABLE:
        return await _handler(target)(server, request, *arguments)
    for pause in (*REPEAT_PAUSES, None):
        try:
            return await _handler(target)(server, request, *arguments)
        except StoreBusy as busy:
            if pause is None or not busy.written_nothing or (target == "bundle:handle" and not _transaction(request)):
                raise  # a batch's entries are units of their own: some may have been written
            log.info("a %s lost a race with a concurrent write and is run again", target.split(":")[0])
            request._parsed = None  # parsed again: an attempt may have rewritten its Bundle in place
            await asyncio.sleep(pause * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _transaction(request: FhirRequest) -> bool:
    parsed = request._parsed
    return isinstance(parsed, dict) and parsed.get("type") == "transaction"
