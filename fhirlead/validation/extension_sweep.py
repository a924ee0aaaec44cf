"""Every extension in a written resource, whatever profiles it claims, against the definition its url
names where the server holds one (https://hl7.org/fhir/R4/extensibility.html#Extension):

- its content, as that StructureDefinition says (value type, cardinality, bindings, sub-extensions);
- where it is used: `StructureDefinition.context` (an element path such as `Patient.name`, a type such
  as `Address` or `Element`, or, for `extension` contexts, the url of the extension it sits in) and
  `contextInvariant` (FHIRPath on the element it extends, all true);
- a complex extension's sub-extensions (relative urls) are ones it defines.

An extension whose url the server does not know is not judged (R4 lets anyone define extensions). The
walk is typed from the R4 element digest, so it knows each extension's holder: its path from the
resource (`Patient.name.given`) and its type (`string`, `HumanName`).
"""

from __future__ import annotations

from typing import Any

from fhirlead.definitions import resource_types, structure
from fhirlead.validation.fhirpath_compiler import Env, Unsupported, ancestry, compile_expression
from fhirlead.validation.invariant_checks import Check, check_for
from fhirlead.validation.profile_check import CORE, ProfileRun
from fhirlead.validation.profile_model import Position, base_element, choice_of, position_of, type_suffixes

EXTENSION_KEYS = ("extension", "modifierExtension")
_GENERIC_CONTEXTS = ("Element", "Base")


def has_extensions(node: Any) -> bool:
    """Whether any extension appears anywhere (the sweep is skipped otherwise)."""
    if isinstance(node, dict):
        return any(key in EXTENSION_KEYS or has_extensions(value) for key, value in node.items())
    if isinstance(node, list):
        return any(has_extensions(item) for item in node)
    return False


class ExtensionSweep:
    def __init__(self, run: ProfileRun) -> None:
        self.run = run
        self._invariants: dict[tuple[str, str], Check] = {}
        self._selectors: dict[tuple[str, str], Any] = {}

    def resource(self, resource: dict[str, Any], where: str) -> None:
        type_name = resource.get("resourceType")
        if type_name not in resource_types():
            return
        outer = self.run.env
        self.run.env = Env(resource, outer.root if outer is not None else resource)
        try:
            self._node(resource, (type_name, ""), type_name, type_name, where or type_name)
        finally:
            self.run.env = outer

    def _node(self, node: dict[str, Any], position: Position, type_name: str, path: str, where: str) -> None:
        for key, value in node.items():
            if key in EXTENSION_KEYS:
                for index, extension in enumerate(value if isinstance(value, list) else []):
                    self._extension(extension, f"{where}.{key}[{index}]", path, type_name, node, None)
            elif key.startswith("_"):
                self._primitive(key[1:], value, position, path, where)
            elif key != "resourceType":
                self._child(key, value, position, path, where)

    def _child(self, key: str, value: Any, position: Position, path: str, where: str) -> None:
        found = base_element(position, key)
        types: list[str]
        name = key
        if found is None:  # a choice element's key: valueAddress
            choice = choice_of(position, key)
            if choice is None:
                return
            name, types = choice[0], [choice[1]]
            found = (key, types)
        element_key, types = found
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            location = f"{where}.{key}[{index}]" if isinstance(value, list) else f"{where}.{key}"
            if types == ["Resource"] or (len(types) == 1 and structure().get(types[0], {}).get("kind") == "resource"):
                self.resource(item, location)
                continue
            child_position = position_of(position, element_key, types) if name == key else (types[0], "")
            if child_position is None:
                continue
            child_type = types[0] if types[0] not in ("BackboneElement", "Element") else "BackboneElement"
            self._node(item, child_position, child_type, f"{path}.{name}", location)

    def _primitive(self, name: str, value: Any, position: Position, path: str, where: str,
                   parent_url: str | None = None) -> None:
        key = name
        found = base_element(position, name)
        type_name = found[1][0] if found and len(found[1]) == 1 else "Element"
        choice = choice_of(position, name) if found is None else None
        if choice is not None:
            name, type_name = choice
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if isinstance(item, dict):
                location = f"{where}._{key}[{index}]" if isinstance(value, list) else f"{where}._{key}"
                for kind in EXTENSION_KEYS:
                    for position_, extension in enumerate(item.get(kind) or []):
                        self._extension(extension, f"{location}.{kind}[{position_}]", f"{path}.{name}", type_name,
                                        item, parent_url)

    def _extension(self, extension: Any, where: str, holder_path: str, holder_type: str, holder: dict[str, Any],
                   parent_url: str | None) -> None:
        if not isinstance(extension, dict) or not isinstance(extension.get("url"), str):
            return
        url = extension["url"]
        definition = self.run.resolve(url) if ":" in url else None
        if definition is not None and definition.type == "Extension":
            self._context(definition.definition, url, where, holder_path, holder_type, holder, parent_url)
            self.run._extension(extension, where)
            self._sub_extensions(extension, definition, where)
        for index, sub in enumerate(extension.get("extension") or []):  # nested extensions with their own urls
            if isinstance(sub, dict) and ":" in str(sub.get("url", "")):
                self._extension(sub, f"{where}.extension[{index}]", "Extension", "Extension", extension, url)
        for key, value in extension.items():  # what the value carries: a complex value's, a primitive's `_value`
            if key.startswith("value") and isinstance(value, dict) and key[5:] in type_suffixes():
                code = type_suffixes()[key[5:]]
                if structure().get(code, {}).get("kind") == "complex-type":
                    self._node(value, (code, ""), code, code, f"{where}.{key}")
            elif key.startswith("_value") and key[6:] in type_suffixes():  # its context is the extension's
                self._primitive(key[1:], value, ("Extension", ""), "Extension", where, url)

    def _context(self, sd: dict[str, Any], url: str, where: str, holder_path: str, holder_type: str,
                 holder: dict[str, Any], parent_url: str | None) -> None:
        contexts = sd.get("context") or []
        if contexts and not any(_allows(c, holder_path, holder_type, parent_url) or self._selects(c, holder)
                                for c in contexts):
            allowed = ", ".join(str(c.get("expression")) for c in contexts)
            self._report(url, where, f"the extension {url} is not allowed here ({holder_path}, a {holder_type}); "
                         f"its definition allows it on: {allowed}", superseded=url.startswith(CORE))
        for index, expression in enumerate(sd.get("contextInvariant") or []):
            check = self._invariants.get((url, expression))
            if check is None:
                check = self._invariants[(url, expression)] = check_for(
                    {"key": f"context-invariant-{index + 1}", "severity": "error", "human": expression,
                     "expression": expression}, ("any",), ("res", None), holder_type)
            assert self.run.env is not None
            if check.holds(holder, self.run.env) is False:
                self._report(url, where, f"the extension {url} is not allowed here: its context invariant "
                             f"{expression!r} is false on {holder_path}")

    def _selects(self, context: dict[str, Any], holder: dict[str, Any]) -> bool:
        """A `fhirpath` context: the element the extension sits on is among what the expression selects
        on the resource (True too when the expression is beyond the compiler: not decided here)."""
        if context.get("type") != "fhirpath" or self.run.env is None:
            return False
        resource = self.run.env.resource
        key = (str(context.get("expression")), str(resource.get("resourceType")))
        first = key[0].split(".", 1)[0]
        if first in resource_types() and first != key[1]:
            return False  # `Patient.address...` selects nothing in an Organization
        compiled = self._selectors.get(key, False)
        if compiled is False:
            try:
                static = ("res", key[1])
                compiled = self._selectors[key] = compile_expression(key[0], static, static)
            except Unsupported:
                compiled = self._selectors[key] = None
        if compiled is None:
            return True
        try:
            return any(found is holder for found in compiled([resource], Env(resource, resource)))
        except Exception:  # a value the compiled form will not decide on: not decided here
            return True

    def _sub_extensions(self, extension: dict[str, Any], definition: Any, where: str) -> None:
        """A complex extension's sub-extensions carry the relative urls its definition gives them."""
        sliced = definition.root.children.get("extension")
        if sliced is None or not sliced.slices:
            return
        defined = set()
        for chosen in sliced.slices:
            url_rule = chosen.children.get("url")
            fixed = getattr(url_rule, "fixed", None) if url_rule is not None else None
            defined.add(fixed if isinstance(fixed, str) else chosen.slice_name)
        for index, sub in enumerate(extension.get("extension") or []):
            url = sub.get("url") if isinstance(sub, dict) else None
            if isinstance(url, str) and ":" not in url and url not in defined:
                self._report(extension["url"], f"{where}.extension[{index}]",
                             f"sub-extension url {url!r} is not defined by the extension {extension['url']} "
                             f"(it defines {', '.join(sorted(defined))})", superseded=extension["url"].startswith(CORE))

    def _report(self, url: str, where: str, text: str, superseded: bool = False) -> None:
        """`superseded`: a rule of an R4 core extension definition that HL7's extensions package has since
        widened (contexts: iso21090 extensions on `Address.line` strings, standards-status on CodeSystem):
        a warning, as the content of those definitions is (profile_check.py, `_extension`)."""
        from fhirlead.errors import Issue

        severity = "warning" if self.run.lenient or superseded else "error"
        self.run.issues.append(Issue("structure", f"{where}: {text}", severity=severity, expression=(where,)))


def _allows(context: dict[str, Any], holder_path: str, holder_type: str, parent_url: str | None) -> bool:
    """https://hl7.org/fhir/R4/structuredefinition-definitions.html#StructureDefinition.context"""
    kind, expression = context.get("type"), str(context.get("expression", ""))
    if kind == "extension":
        return parent_url is not None and expression.partition("|")[0] == parent_url
    if kind != "element":
        return False  # fhirpath contexts: ExtensionSweep._selects
    if expression in _GENERIC_CONTEXTS or expression == holder_path or expression in ancestry(holder_type):
        return True
    owner, _, rest = expression.partition(".")  # DomainResource.text for Patient.text
    holder_owner, _, holder_rest = holder_path.partition(".")
    return rest == holder_rest and owner in ancestry(holder_owner)
