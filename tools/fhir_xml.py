"""Convert FHIR R4 XML resources to FHIR JSON (https://hl7.org/fhir/R4/json.html), for conformance resources
that implementation guides publish only as XML (e.g. Da Vinci ATR's extensions and code systems).

    .venv/bin/python tools/fhir_xml.py IN.xml [IN.xml ...] --out DIR

The XML has no types, the JSON needs them: the R4 element definitions the server ships
(`fhirlead/definitions/elements.json`) say, for each element, whether it repeats (JSON array), whether it
is a primitive (JSON string, boolean or number; `id`/extensions of a primitive go to `_name`) and which
type a choice element (`value[x]`) takes. Numbers keep their published digits (`fhirjson`).
"""

from __future__ import annotations

import argparse
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from fhirlead import fhirjson
from fhirlead.definitions import structure

FHIR_NS = "{http://hl7.org/fhir}"
XHTML_NS = "{http://www.w3.org/1999/xhtml}"
ELEMENTS: dict[str, Any] = structure()
NUMBERS = {"integer", "unsignedInt", "positiveInt", "decimal"}
ET.register_namespace("", XHTML_NS[1:-1])  # a narrative serialises as <div xmlns="http://www.w3.org/1999/xhtml">


class ConversionError(ValueError):
    pass


def convert(text: bytes | str) -> dict[str, Any]:
    """One FHIR XML resource as a FHIR JSON object."""
    return _resource(ET.fromstring(text))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _resource(node: ET.Element) -> dict[str, Any]:
    type_ = _local(node.tag)
    if type_ not in ELEMENTS:
        raise ConversionError(f"unknown resource type {type_!r}")
    result: dict[str, Any] = {"resourceType": type_}
    _fill(result, node, type_, "")
    return result


def _definition(type_: str, path: str, name: str, shown: str = "") -> tuple[str, str, bool]:
    """(JSON property name, its type, repeats) of XML child `name` at `path` within `type_`."""
    elements = ELEMENTS[type_]["elements"]
    found = elements.get(path + name)
    if found is not None:
        return name, found[0][0], found[2] != "1"
    for key, (types, _, maximum, *_rest) in elements.items():
        stem = key[len(path):-3] if key.startswith(path) and key.endswith("[x]") else None
        if stem and name.startswith(stem):
            for choice in types:
                if name == stem + choice[0].upper() + choice[1:]:
                    return name, choice, maximum != "1"
    base = ELEMENTS[type_].get("base")
    if not path and base in ELEMENTS:  # inherited from Resource/DomainResource/Element/BackboneElement
        return _definition(base, path, name, shown or type_)
    raise ConversionError(f"{shown or type_}.{path}{name} is not an R4 element")


def _primitive(node: ET.Element, type_: str) -> Any:
    value = node.get("value")
    if value is None:
        return None
    if type_ == "boolean":
        return {"true": True, "false": False}[value]
    if type_ in NUMBERS:
        return fhirjson.loads(value)
    return value


def _fill(target: dict[str, Any], node: ET.Element, type_: str, path: str) -> None:
    if node.get("id") is not None:  # Element.id is an XML attribute (a resource's id is an element)
        target["id"] = node.get("id")
    if node.get("url") is not None:  # Extension.url is an XML attribute
        target["url"] = node.get("url")
    for child in node:
        if not isinstance(child.tag, str) or not child.tag.startswith((FHIR_NS, XHTML_NS)):
            continue  # comments, processing instructions
        if child.tag == XHTML_NS + "div":
            child.tail = None
            target["div"] = ET.tostring(child, encoding="unicode", short_empty_elements=False)
            continue
        name, child_type, repeats = _definition(type_, path, _local(child.tag))
        kind = ELEMENTS.get(child_type, {}).get("kind")
        if kind == "primitive-type":
            value = _primitive(child, child_type)
            extra: dict[str, Any] = {}
            _fill(extra, child, child_type, "")
            _put(target, name, value, repeats)
            if extra:
                _put(target, "_" + name, extra, repeats, parallel_to=name)
            elif repeats and isinstance(target.get("_" + name), list):
                target["_" + name].append(None)
            continue
        if child_type == "Resource":
            inner = [grandchild for grandchild in child if isinstance(grandchild.tag, str)]
            _put(target, name, _resource(inner[0]), repeats)
            continue
        value = {}
        if child_type in ("BackboneElement", "Element") and ELEMENTS[type_]["elements"].get(path + name):
            _fill(value, child, type_, f"{path}{name}.")
        else:
            _fill(value, child, child_type, "")
        _put(target, name, value, repeats)


def _put(target: dict[str, Any], name: str, value: Any, repeats: bool, parallel_to: str | None = None) -> None:
    if not repeats:
        target[name] = value
        return
    values = target.setdefault(name, [])
    if parallel_to is not None:  # `_name` runs parallel to `name`: pad with nulls up to this item
        values.extend([None] * (len(target[parallel_to]) - 1 - len(values)))
    values.append(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for path in args.inputs:
        resource = convert(path.read_bytes())
        target = args.out / f"{resource['resourceType']}-{resource['id']}.json"
        target.write_bytes(fhirjson.dumps_pretty(resource) + b"\n")
        print(f"{path} -> {target}")


if __name__ == "__main__":
    main()
