"""ELM XML (`application/elm+xml`) read into the JSON shape the compiler works on.

The translator writes the same library as XML or JSON; the JSON form names each node's type in
`type` (the XML `xsi:type`, or the element's declared type when that is concrete), turns repeating
elements into lists and attributes into members (booleans as booleans, QNames as `{namespace}name`).
The schema tables in `elm_xml_schema` say which child elements repeat and which attributes are
booleans or QNames for every ELM type. Annotations (narrative, translator info) are dropped.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from functools import cache
from typing import Any

from fhirlead.cql.elm_xml_schema import ELM_TYPES
from fhirlead.cql.errors import ElmLoadError

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
ELM_NS = "urn:hl7-org:elm:r1"


@cache
def _flat(type_name: str) -> tuple[dict[str, str], frozenset[str], frozenset[str], frozenset[str]]:
    """(child -> declared type, repeating children, boolean attributes, QName attributes) of a type."""
    children: dict[str, str] = {}
    lists: set[str] = set()
    booleans: set[str] = set()
    qnames: set[str] = set()
    chain = []
    t: str | None = type_name
    while t and t in ELM_TYPES:
        chain.append(ELM_TYPES[t])
        t = ELM_TYPES[t].get("base")
    for info in reversed(chain):  # derived types override their bases
        children.update(info.get("children", {}))
        lists.update(info.get("lists", ()))
        booleans.update(info.get("booleans", ()))
        qnames.update(info.get("qnames", ()))
    return children, frozenset(lists), frozenset(booleans), frozenset(qnames)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


class _Reader:
    def __init__(self, namespaces: dict[str, str]) -> None:
        self.ns = namespaces

    def qname(self, value: str) -> str:
        prefix, sep, local = value.rpartition(":")
        if sep and prefix in self.ns:
            return "{" + self.ns[prefix] + "}" + local
        if not sep and "" in self.ns and self.ns[""] != ELM_NS:
            return "{" + self.ns[""] + "}" + value
        return value

    def node(self, el: ET.Element, declared: str | None) -> dict[str, Any]:
        xsi = el.get(XSI_TYPE)
        type_name = _local(self.qname(xsi)) if xsi else declared
        out: dict[str, Any] = {}
        if xsi:
            out["type"] = type_name
        children, lists, booleans, qnames = _flat(type_name or "")
        for key, value in el.attrib.items():
            if key == XSI_TYPE or key.startswith("{"):
                continue
            if key in booleans:
                out[key] = value == "true"
            elif key in qnames:
                out[key] = self.qname(value)
            else:
                out[key] = value
        for child in el:
            name = _local(child.tag)
            if name == "annotation":
                continue
            value = self.node(child, children.get(name))
            if name in lists:
                out.setdefault(name, []).append(value)
            else:
                out[name] = value
        if el.text and el.text.strip() and not len(el):
            out.setdefault("value", el.text)
        return out


def elm_json_from_xml(data: bytes | str) -> dict[str, Any]:
    """The JSON form (`{"library": {...}}`) of an ELM XML library document."""
    raw = data.encode() if isinstance(data, str) else data
    namespaces: dict[str, str] = {}
    try:
        for _event, (prefix, uri) in ET.iterparse(io.BytesIO(raw), events=("start-ns",)):
            namespaces.setdefault(prefix, uri)
        tree_root = ET.fromstring(raw)
    except ET.ParseError as exc:
        raise ElmLoadError(f"ELM XML is not well-formed: {exc}") from exc
    if _local(tree_root.tag) != "library":
        raise ElmLoadError(f"ELM XML root is <{_local(tree_root.tag)}>, not <library>")
    return {"library": _Reader(namespaces).node(tree_root, "Library")}
