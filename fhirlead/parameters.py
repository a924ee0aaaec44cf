"""An operation's input parameters, read from a POST `Parameters` body or a GET query, checked against the
operation's OperationDefinition (https://hl7.org/fhir/R4/operations.html#request: name, cardinality,
type). Every refusal is a 400 OperationOutcome that names the parameter.

Values come back in their JSON form: a `Reference` or `Identifier` is the dict a `valueReference` /
`valueIdentifier` holds. In a GET query, where FHIR types have no JSON, an Identifier is written
`system|value` and a Reference as its reference string.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhirlead.api.messages import FhirRequest
from fhirlead.definitions import resource_types
from fhirlead.errors import FhirError, bad_request
from fhirlead.numbers import shown


@dataclass(frozen=True)
class InputParameters:
    values: dict[str, list[Any]]

    def one(self, name: str) -> Any:
        """The parameter's single value, or None when it was not given."""
        found = self.values.get(name) or [None]
        return found[0]

    def given(self, *names: str) -> set[str]:
        return {name for name in names if name in self.values}

    def instant(self, name: str) -> datetime | None:
        """An instant parameter (`_since`): a date and time with its zone, None when not given."""
        value = self.one(name)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or "T" not in str(value):
            raise bad_request(f"'{name}' must be an instant with its time zone, e.g. 2026-01-01T00:00:00Z", name)
        return moment

    def flag(self, name: str) -> bool | None:
        """A boolean parameter (valueBoolean, or `true`/`false` in a query), None when not given."""
        value = self.one(name)
        if value is None or isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise bad_request(f"'{name}' must be true or false", name)


def read(request: FhirRequest, definition: dict[str, Any]) -> InputParameters:
    """The `in` parameters of `definition` that the request carries."""
    declared = {p["name"]: p for p in definition.get("parameter") or () if p.get("use") == "in"}
    operation = f"${definition.get('code', '')}"
    values: dict[str, list[Any]] = {}
    if request.method == "POST" and request.body.strip():
        body = request.resource_body()
        if body.get("resourceType") != "Parameters":
            raise bad_request(f"{operation} takes a Parameters resource, not {shown(str(body.get('resourceType')))}")
        for number, part in enumerate(body.get("parameter") or ()):
            name = part.get("name") if isinstance(part, dict) else None
            spec = declared.get(name) if isinstance(name, str) else None
            if spec is None:
                raise _unknown(operation, name, f"Parameters.parameter[{number}]")
            values.setdefault(name, []).append(_json_value(operation, part, spec, number))
    else:
        for name, text in request.params:
            if name.startswith("_") and name not in declared:
                continue  # _format, _pretty and other result parameters
            spec = declared.get(name)
            if spec is None:
                raise _unknown(operation, name, name)
            values.setdefault(name, []).append(_query_value(operation, name, text, spec["type"]))
    for name, found in values.items():
        maximum = declared[name].get("max", "*")
        if maximum != "*" and len(found) > int(maximum):
            raise bad_request(f"{operation}: parameter '{name}' is given {len(found)} times (at most {maximum})", name)
    return InputParameters(values)


def _unknown(operation: str, name: Any, where: str) -> FhirError:
    return bad_request(f"{operation} has no parameter {shown(str(name))!r}", where)


def _json_value(operation: str, part: dict[str, Any], spec: dict[str, Any], number: int) -> Any:
    type_ = spec.get("type", "")
    if type_ == "Resource" or type_ in resource_types():
        resource = part.get("resource")
        if not isinstance(resource, dict) or (type_ != "Resource" and resource.get("resourceType") != type_):
            kind = "a resource" if type_ == "Resource" else f"a {type_} resource"
            raise bad_request(f"{operation}: parameter '{spec['name']}' must be {kind}",
                              f"Parameters.parameter[{number}].resource")
        return resource
    key = "value" + type_[:1].upper() + type_[1:]
    value = part.get(key)
    if value is None or (type_ in COMPLEX and not isinstance(value, dict)):
        raise bad_request(f"{operation}: parameter '{spec['name']}' must be a {key}",
                          f"Parameters.parameter[{number}].{key}")
    return value


COMPLEX = frozenset({"Identifier", "Reference", "Period", "Coding", "CodeableConcept", "Quantity"})


def _query_value(operation: str, name: str, text: str, type_: str) -> Any:
    if type_ == "Identifier":
        system, bar, value = text.rpartition("|")
        if not value:
            raise bad_request(f"{operation}: parameter '{name}' must be an identifier written system|value", name)
        return {"system": system, "value": value} if bar and system else {"value": value}
    if type_ == "Reference":
        return {"reference": text}
    if type_ in COMPLEX or type_ == "Resource" or type_ in resource_types():
        raise bad_request(f"{operation}: parameter '{name}' ({type_}) can only be given in a POSTed Parameters", name)
    return text
