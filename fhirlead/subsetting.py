"""`_summary` and `_elements`: returning part of a resource (https://hl7.org/fhir/R4/search.html#summary).

Subsetting works on top-level elements, which is what the specification asks (`_elements` lists base
elements; `_summary=true` keeps the elements the base definition marks as summary). Every subset carries
the SUBSETTED tag so that nobody mistakes it for the whole resource.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhirlead.definitions import structure
from fhirlead.errors import bad_request

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
ALWAYS = frozenset({"resourceType", "id", "meta"})
SUMMARY_MODES = frozenset({"true", "false", "text", "data", "count"})


@cache
def _top_level(resource_type: str) -> dict[str, tuple[bool, bool]]:
    """Element name (choice names without [x]) -> (is summary, is mandatory)."""
    elements = structure()[resource_type]["elements"]
    return {
        path.removesuffix("[x]"): (summary, minimum > 0)
        for path, (_, minimum, _, summary) in elements.items()
        if "." not in path
    }


def element_name(resource_type: str, json_key: str) -> str:
    """The element a JSON property belongs to: `valueQuantity` -> `value`, `_birthDate` -> `birthDate`."""
    key = json_key.removeprefix("_")
    top = _top_level(resource_type)
    if key in top:
        return key
    for name in top:
        if key.startswith(name) and key[len(name):][:1].isupper():
            return name
    return key


def _tagged(subset: dict[str, Any]) -> dict[str, Any]:
    meta = dict(subset.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    subset["meta"] = meta
    return subset


def _keep(resource: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    resource_type = resource["resourceType"]
    return {k: v for k, v in resource.items() if k in ALWAYS or element_name(resource_type, k) in wanted}


def summary(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """The resource as `_summary=mode` asks (`false` returns it unchanged)."""
    resource_type = resource["resourceType"]
    top = _top_level(resource_type)
    mandatory = {name for name, (_, required) in top.items() if required}
    if mode == "true":
        return _tagged(_keep(resource, {name for name, (flag, _) in top.items() if flag} | mandatory))
    if mode == "text":
        return _tagged(_keep(resource, {"text"} | mandatory))
    if mode == "data":
        return _tagged({k: v for k, v in resource.items() if k != "text"})
    return resource


def elements(resource: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The resource limited to the listed base elements (plus mandatory ones, as the spec advises)."""
    top = _top_level(resource["resourceType"])
    mandatory = {name for name, (_, required) in top.items() if required}
    wanted = {name.split(".")[-1] if name.startswith(resource["resourceType"] + ".") else name for name in names}
    return _tagged(_keep(resource, wanted | mandatory))


def requested(params_summary: str | None, params_elements: str | None) -> tuple[str | None, list[str] | None]:
    """Validate `_summary` / `_elements` values: (summary mode, element names)."""
    mode = None
    if params_summary is not None:
        mode = params_summary.strip().lower()
        if mode not in SUMMARY_MODES:
            raise bad_request(f"Invalid _summary '{params_summary}': use true, false, text, data or count")
    names = None
    if params_elements is not None:
        names = [name.strip() for name in params_elements.split(",") if name.strip()]
    return mode, names


def apply(resource: dict[str, Any], mode: str | None, names: list[str] | None) -> dict[str, Any]:
    if mode not in (None, "false", "count"):
        return summary(resource, mode)
    if names:
        return elements(resource, names)
    return resource
