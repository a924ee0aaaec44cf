"""What a SearchParameter written to the store must meet before it is in force
(https://hl7.org/fhir/R4/searchparameter.html).

Checked inside the unit of work that writes it (`fhirlead.search.reindex`'s write observer), so every
path (REST create/update/patch, batch and transaction, `fhirlead load`) is held to it, a refusal (400
OperationOutcome) leaves nothing written, and the store's other SearchParameters are read in the same
transaction (those written by another server, or earlier in the same Bundle, count too). A retired one
is not in force and is not checked, except that none may be derived.

- It is not **derived** (a url listed in `fhirlead.search.derived`): those values are computed by the
  server's own code, which a client must not be able to redefine.
- Its **code** is a plain name (letters, digits, `-`, `_`, starting with a letter or digit): `_` names,
  `:` and `.` belong to FHIR's search syntax (result parameters, modifiers, chains). Keeping the url of a
  parameter the server already has under that code (redefining e.g. `_tag`) is allowed.
- It does not **collide**: no parameter in force with its code on one of its bases (a `Resource` or
  `DomainResource` base: on any type) has another url, neither among the server's own (R4, profiles/)
  nor among the store's other SearchParameters. The same url replaces (an update of its definition).
- Its **expression** compiles and evaluates on an empty resource of each base (a `Resource` or
  `DomainResource` base: on `Basic`). Whatever it still raises on real data later only leaves its
  values out of that resource's entries (`fhirlead.search.extract`).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from fhirlead import fhirjson
from fhirlead.errors import FhirError, Issue
from fhirlead.search import derived
from fhirlead.search.extract import evaluate_param
from fhirlead.search.query import Clause, SearchQuery, TokenMatch
from fhirlead.search.registry import ABSTRACT_BASES, SearchRegistry, base_registry, search_param
from fhirlead.storage.port import UnitOfWork

PLAIN_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
SAMPLE_TYPE = "Basic"  # what a Resource/DomainResource parameter's expression is tried on
PAGE = 200  # the store's SearchParameters with one code read at a time (a handful in practice)


def in_force(resource: dict[str, Any]) -> bool:
    """Whether a stored SearchParameter applies: every status but `retired` (draft ones too: a server
    defining its own parameters need not publish them first)."""
    return resource.get("status") != "retired"


def index_signature(resource: dict[str, Any]) -> list[Any]:
    """What decides a SearchParameter's index entries (JSON values: a store record keeps it)."""
    signature = [resource.get("code"), resource.get("type"), list(resource.get("base") or ()),
                 resource.get("expression"), resource.get("component") or []]
    return orjson.loads(fhirjson.dumps(signature))


def refuse(diagnostics: str, *expression: str) -> FhirError:
    return FhirError(400, [Issue("business-rule", diagnostics, expression=expression)])


def concrete_bases(bases: list[str] | tuple[str, ...], registry: SearchRegistry) -> list[str]:
    """The resource types `bases` cover (an abstract base: every type)."""
    if any(base in ABSTRACT_BASES for base in bases):
        return list(registry.types())
    return [base for base in bases if registry.is_resource_type(base)]


async def check(uow: UnitOfWork, id_: str, resource: dict[str, Any]) -> None:
    """Raise a 400 FhirError unless SearchParameter `id_` may be stored as `resource` (module doc)."""
    url = resource.get("url")
    if isinstance(url, str) and url in derived.DERIVED:
        raise refuse(f"SearchParameter {url} is computed by the server's own code and cannot be defined "
                     "through the API", "SearchParameter.url")
    if not in_force(resource):
        return
    param = search_param(resource)
    if param is None:  # the validator requires them; a resource without them is not in force anyway
        raise refuse("A SearchParameter needs code, base and type", "SearchParameter.code")
    own = base_registry()
    unknown = [base for base in param.base if base not in ABSTRACT_BASES and not own.is_resource_type(base)]
    if unknown:
        raise refuse(f"SearchParameter base {unknown[0]} is not a resource type", "SearchParameter.base")
    existing = _holders(own, param.base, param.code)
    if not PLAIN_CODE.fullmatch(param.code) and url not in existing:
        raise refuse(f"SearchParameter code '{param.code}' is not a plain name (letters, digits, '-' and '_', "
                     "not starting with '_'): the server could not tell it from FHIR's own search syntax",
                     "SearchParameter.code")
    others = {holder for holder in existing if holder != url}
    if others:
        raise refuse(_collision(param.code, param.base, sorted(others)[0]), "SearchParameter.code")
    for other_id, other in await _stored_with_code(uow, param.code):
        if other_id == id_ or not in_force(other) or other.get("url") == url:
            continue
        other_bases = tuple(other.get("base") or ())
        if _overlap(param.base, other_bases):
            raise refuse(_collision(param.code, param.base, f"{other.get('url')} (SearchParameter/{other_id})"),
                         "SearchParameter.code")
    _try_expression(resource, param.base)


def _holders(registry: SearchRegistry, bases: tuple[str, ...], code: str) -> set[str]:
    """The urls of the parameters with `code` on `bases` in `registry`."""
    found = set()
    abstract = any(base in ABSTRACT_BASES for base in bases)
    for type_ in registry.types() if abstract else bases:
        held = registry.get(type_, code)
        if held is not None:
            found.add(held.url)
    common = registry.common_param(code)
    if abstract and common is not None:
        found.add(common.url)
    return found


def _overlap(one: tuple[str, ...], other: tuple[str, ...]) -> bool:
    if any(base in ABSTRACT_BASES for base in (*one, *other)):
        return True
    return bool(set(one) & set(other))


def _collision(code: str, bases: tuple[str, ...], holder: str) -> str:
    return (f"Search parameter code '{code}' on {', '.join(bases)} is already defined by {holder}: a "
            "SearchParameter may replace another with the same code only by keeping its url")


async def _stored_with_code(uow: UnitOfWork, code: str) -> list[tuple[str, dict[str, Any]]]:
    """The store's SearchParameters with `code` (this unit's writes included), as (id, resource)."""
    query = SearchQuery(("SearchParameter",), where=(Clause((TokenMatch("code", None, code),)),), count=PAGE,
                        total="none")
    found: list[tuple[str, dict[str, Any]]] = []
    while True:
        page = await uow.search(query)
        found += [(v.id, fhirjson.loads(v.body)) for v in page.matches if v.body is not None]
        if page.next_cursor is None:
            return found
        query = SearchQuery(query.types, query.where, count=PAGE, cursor=page.next_cursor, total="none")


def _try_expression(resource: dict[str, Any], bases: tuple[str, ...]) -> None:
    """Plan the expression and run it on an empty resource of each base (module doc)."""
    if not resource.get("expression"):
        return
    trial = SearchRegistry.layered([resource])
    param = search_param(resource)
    assert param is not None
    types = [SAMPLE_TYPE] if any(base in ABSTRACT_BASES for base in bases) else list(bases)
    for type_ in types:
        try:
            evaluate_param(trial, type_, param, {"resourceType": type_, "id": "trial"})
        except Exception as error:
            raise refuse(f"SearchParameter expression cannot be evaluated on {type_} ({type(error).__name__}): "
                         f"{str(error)[:200]}", "SearchParameter.expression") from None
