"""A profile compiled into a tree of element rules, from the differentials of its derivation chain.

https://hl7.org/fhir/R4/profiling.html: a profile's snapshot is its base's with the differential's
constraints laid over it, and an instance conforms to a profile only if it conforms to every ancestor.
The base R4 definitions are already enforced on every write (structure.py, invariants.py), so a
profile's rules are what its chain of differentials adds, from the profile nearest the base type down
to the profile itself, merged by element id: a later differential tightens (`min`, `max`, `type`,
`fixed[x]`, `pattern[x]`, `binding`, `slicing`) and adds `constraint`s (`mustSupport` asks nothing of
an instance). This is the part of snapshot generation validation needs
(https://hl7.org/fhir/R4/profiling.html#snapshot),
without copying the base's unconstrained elements into every profile. Slices carry their own subtree;
the unsliced element's rules apply to every value, a slice's to the values it matches.

Each element knows its place in the base type (`position`), from the R4 element digest, so that a
differential written against `Observation.component:systolic.valueQuantity.code` finds the JSON key
`valueQuantity` and the type `Quantity`, and its invariants are compiled once, typed, like the base's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from fhirlead.definitions import structure
from fhirlead.validation.conformance import Conformance
from fhirlead.validation.fhirpath_compiler import Static, declared_static
from fhirlead.validation.invariant_checks import Check, check_for

UNBOUNDED = None
MIN_LENGTH = "http://hl7.org/fhir/StructureDefinition/minLength"
NOTHING: Any = object()  # no fixed or pattern value
Position = tuple[str, str] | None  # (owner type, element path in it) of an element's children; None: unknown


@cache
def type_suffixes() -> dict[str, str]:
    """`Quantity` -> `Quantity`, `DateTime` -> `dateTime`: the type a choice element's JSON key ends with
    (https://hl7.org/fhir/R4/formats.html#choice)."""
    return {code[0].upper() + code[1:]: code for code, sd in structure().items()
            if sd["kind"] in ("primitive-type", "complex-type")}


@dataclass(eq=False, slots=True)
class Rule:
    """The constraints a profile places on one element (or slice) and on what lies below it."""

    id: str
    name: str  # the element's name in its parent ("category", "value[x]")
    base_types: list[str]  # the type codes the base definition allows here
    static: Static  # FHIRPath static type of its values, for its invariants
    model_path: str  # FHIR path of its values for fhirpathpy ("Observation.component", "Quantity")
    slice_name: str | None = None
    type_slice: str | None = None  # the type code of a choice element's type slice (value[x]:valueQuantity)
    min: int = 0
    max: int | None = UNBOUNDED
    types: list[dict[str, Any]] | None = None  # the profile's type list
    fixed: Any = NOTHING
    pattern: Any = NOTHING
    binding: tuple[str, str] | None = None  # (strength, value set canonical)
    bounds: tuple[Any, Any] = (NOTHING, NOTHING)  # minValue[x], maxValue[x]
    lengths: tuple[int | None, int | None] = (None, None)  # the minLength extension, maxLength
    constraints: list[dict[str, Any]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    slicing: dict[str, Any] | None = None
    children: dict[str, Rule] = field(default_factory=dict)
    slices: list[Rule] = field(default_factory=list)
    resource: Static = ("res", None)  # %resource's static type, for its invariants
    by_type: dict[str, list[Check]] = field(default_factory=dict)  # a choice element's invariants per type
    # set once the tree is complete (`settle`): whether checking this element can report anything, and
    # the children for which it can (US Core's trees are mostly mustSupport flags, which ask nothing)
    live: bool = True
    live_children: list[Rule] = field(default_factory=list)

    def checks_for(self, type_code: str | None) -> list[Check]:
        """The invariants on a value of `type_code`: on a choice element each type gets its own compiled
        form (`$this is DateTime` is then known in advance), made on first use."""
        if self.static[0] != "choice" or type_code is None or not self.constraints:
            return self.checks
        found = self.by_type.get(type_code)
        if found is None:
            kind = structure()[type_code]["kind"]
            static: Static = ("prim", type_code) if kind == "primitive-type" else ("pos", type_code, "")
            found = self.by_type[type_code] = [check_for(c, static, self.resource, type_code) for c in self.constraints]
        return found

    def type_codes(self) -> list[str]:
        return [t["code"] for t in self.types] if self.types else self.base_types

    def type_profiles(self) -> list[str]:
        return [p for t in self.types or () for p in t.get("profile", ())]

    def target_profiles(self) -> list[str]:
        return [p for t in self.types or () for p in t.get("targetProfile", ())]


def settle(rule: Rule) -> bool:
    """Mark every rule of a finished tree live or not (`Rule.live`, `Rule.live_children`): a rule is
    live when it constrains its element itself (cardinality, types of a choice, fixed, pattern, bounds,
    lengths, binding, target or type profiles, invariants, slices) or has a live child."""
    for chosen in rule.slices:
        settle(chosen)
    rule.live_children = [child for child in rule.children.values() if settle(child)]
    rule.live = bool(
        rule.live_children or rule.slices or rule.min > 0 or rule.max is not None
        or (rule.types is not None and rule.name.endswith("[x]"))
        or rule.fixed is not NOTHING or rule.pattern is not NOTHING or rule.bounds != (NOTHING, NOTHING)
        or rule.lengths != (None, None) or rule.binding is not None or rule.constraints or rule.checks
        or rule.target_profiles() or rule.type_profiles())
    return rule.live


@dataclass(slots=True)
class CompiledProfile:
    url: str
    title: str
    type: str
    root: Rule
    chain: list[str]  # canonicals, the profile first
    missing_base: str | None = None  # an ancestor the server does not hold (its rules are not checked)
    substituted: list[str] = field(default_factory=list)  # "url|asked -> version used"
    definition: dict[str, Any] = field(default_factory=dict)  # the profile's StructureDefinition

    def __post_init__(self) -> None:
        settle(self.root)  # the tree is complete: the walk (profile_check.py) visits only live rules


_SEGMENT = re.compile(r"^([^:]+)(?::(.+))?$")


def parse_id(element_id: str) -> list[tuple[str, str | None]]:
    """`Observation.component:systolic.code` -> [(Observation, None), (component, systolic), (code, None)].
    Slice names have no dots (https://hl7.org/fhir/R4/elementdefinition.html#id)."""
    segments = []
    for part in element_id.split("."):
        match = _SEGMENT.match(part)
        name, slice_name = (match.group(1), match.group(2)) if match else (part, None)
        segments.append((name, slice_name))
    return segments


def base_element(position: Position, name: str) -> tuple[str, list[str]] | None:
    """(key in its owner, types) of `name` below `position`, or None."""
    if position is None:
        return None
    owner, path = position
    elements = structure().get(owner, {}).get("elements", {})
    key = f"{path}.{name}" if path else name
    found = elements.get(key)
    return (key, found[0]) if found else None


def choice_of(position: Position, key: str) -> tuple[str, str] | None:
    """A choice element's JSON key below `position`, split: `valueQuantity` -> (`value`, `Quantity`)."""
    for suffix, code in type_suffixes().items():
        if key.endswith(suffix) and len(key) > len(suffix) and \
                base_element(position, f"{key[: -len(suffix)]}[x]") is not None:
            return key[: -len(suffix)], code
    return None


def position_of(owner_position: Position, key: str, types: list[str]) -> Position:
    """Where the children of an element of `types` are described."""
    if owner_position is None or len(types) != 1:
        return None
    code = types[0]
    if code.startswith("#"):
        target, _, path = code[1:].partition(".")
        return (target, path)
    if code in ("BackboneElement", "Element"):
        return (owner_position[0], key)
    definition = structure().get(code)
    if definition and definition["kind"] == "complex-type":
        return (code, "")
    return None


class ProfileBuilder:
    """Merges a chain of differentials into one rule tree."""

    def __init__(self, type_name: str) -> None:
        kind = structure()[type_name]["kind"]
        static: Static = ("res", type_name) if kind == "resource" else ("pos", type_name, "")
        self.type = type_name
        self.resource_static: Static = ("res", type_name) if kind == "resource" else ("res", None)
        self.root = Rule(type_name, type_name, [type_name], static, type_name)
        self.positions: dict[int, Position] = {id(self.root): (type_name, "")}
        self.seen_keys: set[str] = set()
        self.open_slices: dict[str, str] = {}  # path -> the slice its later id-less elements belong to

    def merge(self, element: dict[str, Any]) -> None:
        element_id = element["id"] if isinstance(element.get("id"), str) else self._implied_id(element)
        segments = parse_id(element_id)
        if not segments or segments[0][0] != self.type:
            return
        node = self.root
        for name, slice_name in segments[1:]:
            node = self._step(node, name, slice_name)
            if node is None:
                return  # an element the base does not have (a logical model, a typo): nothing to check
        self._apply(node, element)

    def _implied_id(self, element: dict[str, Any]) -> str:
        """The id of an element of a differential written without ids (before R4 made them usual): an
        element belongs to the slice last declared on each path above it
        (https://hl7.org/fhir/R4/profiling.html#slicing: slices follow the element they slice)."""
        path = str(element.get("path", ""))
        if element.get("slicing") is not None or (not element.get("sliceName") and path in self.open_slices):
            for sliced in [key for key in self.open_slices if key == path or key.startswith(path + ".")]:
                del self.open_slices[sliced]  # the element itself again: its slices are over
        parts = path.split(".")
        segments = []
        for depth, name in enumerate(parts):
            prefix = ".".join(parts[: depth + 1])
            if depth == len(parts) - 1 and element.get("sliceName"):
                self.open_slices[prefix] = element["sliceName"]
                segments.append(f"{name}:{element['sliceName']}")
            elif depth < len(parts) - 1 and prefix in self.open_slices:
                segments.append(f"{name}:{self.open_slices[prefix]}")
            else:
                segments.append(name)
        return ".".join(segments)

    def _step(self, node: Rule, name: str, slice_name: str | None) -> Rule | None:
        position = self.positions.get(id(node))
        if node.type_slice is None and len(node.type_codes()) == 1 and position is None:
            position = self._typed_position(node)
        found = base_element(position, name)
        if found is None and name not in node.children:
            choice = self._choice_shortcut(position, name)  # valueQuantity -> value[x]:valueQuantity
            if choice is None:
                return None
            name, slice_name = choice
            found = base_element(position, name)
        child = node.children.get(name)
        if child is None:
            if found is None:
                return None
            key, types = found
            assert position is not None
            child = Rule(f"{node.id}.{name}", name, types, declared_static(position[0], key, types),
                         self._model_path(position, key, types))
            node.children[name] = child
            self.positions[id(child)] = position_of(position, key, types)
        if slice_name is None:
            return child
        for existing in child.slices:
            if existing.slice_name == slice_name:
                return existing
        return self._new_slice(child, slice_name)

    def _new_slice(self, child: Rule, slice_name: str) -> Rule:
        type_slice = None
        types = child.base_types
        if child.name.endswith("[x]") and slice_name.startswith(child.name[:-3]):
            type_slice = type_suffixes().get(slice_name[len(child.name) - 3:])
            if type_slice is not None:
                types = [type_slice]
        position = self.positions.get(id(child))
        static = child.static
        if type_slice is not None:
            kind = structure()[type_slice]["kind"]
            static = ("prim", type_slice) if kind == "primitive-type" else ("pos", type_slice, "")
            position = (type_slice, "") if kind == "complex-type" else None
        made = Rule(f"{child.id}:{slice_name}", child.name, types, static,
                    type_slice or child.model_path, slice_name=slice_name, type_slice=type_slice)
        child.slices.append(made)
        self.positions[id(made)] = position
        return made

    def _typed_position(self, node: Rule) -> Position:
        """A choice element restricted by the profile to one type: its children are that type's."""
        code = node.type_codes()[0]
        definition = structure().get(code)
        return (code, "") if definition and definition["kind"] == "complex-type" else None

    @staticmethod
    def _choice_shortcut(position: Position, name: str) -> tuple[str, str] | None:
        found = choice_of(position, name)
        return (f"{found[0]}[x]", name) if found else None

    @staticmethod
    def _model_path(position: tuple[str, str], key: str, types: list[str]) -> str:
        if len(types) == 1 and types[0] not in ("BackboneElement", "Element") \
                and structure().get(types[0], {}).get("kind") == "complex-type":
            return types[0]
        return f"{position[0]}.{key}"

    def _apply(self, node: Rule, element: dict[str, Any]) -> None:
        if "min" in element:
            node.min = int(element["min"])
        if "max" in element:
            node.max = UNBOUNDED if element["max"] == "*" else int(element["max"])
        if element.get("type"):
            node.types = element["type"]
            if node.type_slice is None and len(node.types) == 1 and self.positions.get(id(node)) is None:
                self.positions[id(node)] = self._typed_position(node)
        for key, value in element.items():
            if key.startswith("fixed") and key != "fixed":
                node.fixed = value
            elif key.startswith("pattern") and key != "pattern":
                node.pattern = value
            elif key.startswith("minValue") and key != "minValue":
                node.bounds = (value, node.bounds[1])
            elif key.startswith("maxValue") and key != "maxValue":
                node.bounds = (node.bounds[0], value)
        if isinstance(element.get("maxLength"), int):
            node.lengths = (node.lengths[0], element["maxLength"])
        for extension in element.get("extension") or ():
            if isinstance(extension, dict) and extension.get("url") == MIN_LENGTH \
                    and isinstance(extension.get("valueInteger"), int):
                node.lengths = (extension["valueInteger"], node.lengths[1])
        binding = element.get("binding")
        if isinstance(binding, dict) and binding.get("valueSet") and binding.get("strength"):
            node.binding = (binding["strength"], binding["valueSet"])
        if "slicing" in element:
            node.slicing = element["slicing"]
        for constraint in element.get("constraint", ()):
            key = constraint.get("key")
            if key and constraint.get("expression") and key not in self.seen_keys:
                self.seen_keys.add(key)
                node.constraints.append(constraint)
                node.resource = self.resource_static
                node.checks.append(check_for(constraint, node.static, self.resource_static, node.model_path))


def build(conformance: Conformance, canonical: str) -> CompiledProfile | None:
    """The compiled profile `canonical` names, or None when the server does not hold it."""
    resolved = conformance.resolve(canonical)
    if resolved is None:
        return None
    profile = resolved.definition
    type_name = profile.get("type")
    if type_name not in structure():
        return None
    chain: list[dict[str, Any]] = [profile]
    substituted = [f"{canonical} -> {resolved.substituted}"] if resolved.substituted else []
    missing = None
    base = profile.get("baseDefinition")
    while isinstance(base, str) and not conformance.is_base(base):
        found = conformance.resolve(base)
        if found is None or found.definition in chain:
            missing = base
            break
        if found.substituted:
            substituted.append(f"{base} -> {found.substituted}")
        chain.append(found.definition)
        base = found.definition.get("baseDefinition")
    builder = ProfileBuilder(type_name)
    for definition in reversed(chain):
        for element in definition.get("differential", {}).get("element", ()):
            builder.merge(element)
    title = profile.get("title") or profile.get("name") or profile["url"]
    return CompiledProfile(profile["url"], title, type_name, builder.root,
                           [d["url"] for d in chain], missing, substituted, profile)
