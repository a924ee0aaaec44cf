"""JSON Patch (RFC 6902) with JSON Pointer (RFC 6901), applied to a parsed resource.

`PatchError` separates a malformed patch document (the client's request is wrong: 400) from a
well-formed patch that cannot be applied to this resource (422), as FHIR asks.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from fhirlead.numbers import ascii_int, shown

OPERATIONS = frozenset({"add", "remove", "replace", "move", "copy", "test"})


class PatchError(Exception):
    def __init__(self, message: str, malformed: bool) -> None:
        super().__init__(message)
        self.malformed = malformed


def _pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise PatchError(f"Invalid JSON Pointer {text!r}", malformed=True)
    return [part.replace("~1", "/").replace("~0", "~") for part in text.split("/")[1:]]


def _index(container: list[Any], token: str, for_insert: bool) -> int:
    if for_insert and token == "-":
        return len(container)
    position = ascii_int(token)
    if position is None or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"Invalid array index '{shown(token)}'", malformed=False)
    if position > len(container) or (position == len(container) and not for_insert):
        raise PatchError(f"Array index {position} is out of range", malformed=False)
    return position


def _parent(document: Any, path: list[str]) -> tuple[Any, str]:
    if not path:
        raise PatchError("The whole resource cannot be the target of this operation", malformed=False)
    node = document
    for token in path[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_insert=False)]
        else:
            raise PatchError(f"Path '/{'/'.join(path)}' does not exist", malformed=False)
    return node, path[-1]


def _get(document: Any, path: list[str]) -> Any:
    if not path:
        return document
    parent, token = _parent(document, path)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"Path '/{'/'.join(path)}' does not exist", malformed=False)
        return parent[token]
    if isinstance(parent, list):
        return parent[_index(parent, token, for_insert=False)]
    raise PatchError(f"Path '/{'/'.join(path)}' does not exist", malformed=False)


def _add(document: Any, path: list[str], value: Any) -> None:
    parent, token = _parent(document, path)
    if isinstance(parent, dict):
        parent[token] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, token, for_insert=True), value)
    else:
        raise PatchError(f"Cannot add at '/{'/'.join(path)}'", malformed=False)


def _remove(document: Any, path: list[str]) -> Any:
    parent, token = _parent(document, path)
    if isinstance(parent, dict):
        if token not in parent:
            raise PatchError(f"Path '/{'/'.join(path)}' does not exist", malformed=False)
        return parent.pop(token)
    if isinstance(parent, list):
        return parent.pop(_index(parent, token, for_insert=False))
    raise PatchError(f"Path '/{'/'.join(path)}' does not exist", malformed=False)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: unlike Python's, true is not 1 and 1 equals 1.0 only as numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    numbers = isinstance(a, int | float | Decimal) and isinstance(b, int | float | Decimal)
    return (type(a) is type(b) or numbers) and a == b


def apply(document: dict[str, Any], patch: Any) -> dict[str, Any]:
    """A patched deep copy of `document`; the original is never modified."""
    if not isinstance(patch, list):
        raise PatchError("A JSON Patch document is an array of operations", malformed=True)
    result = copy.deepcopy(document)
    for number, operation in enumerate(patch):
        if not isinstance(operation, dict) or operation.get("op") not in OPERATIONS:
            raise PatchError(f"Operation {number} has no valid 'op'", malformed=True)
        op = operation["op"]
        path = _pointer(operation.get("path"))
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"Operation {number} ({op}) needs a 'value'", malformed=True)
        if op == "add":
            _add(result, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            _remove(result, path)
        elif op == "replace":
            _remove(result, path)
            _add(result, path, copy.deepcopy(operation["value"]))
        elif op == "test":
            if not _same(_get(result, path), operation["value"]):
                raise PatchError(f"Test failed at '{operation['path']}'", malformed=False)
        else:
            source = _pointer(operation.get("from"))
            if op == "move" and path[: len(source)] == source and path != source:
                raise PatchError(f"Cannot move '{operation['from']}' into itself", malformed=False)
            value = _remove(result, source) if op == "move" else copy.deepcopy(_get(result, source))
            _add(result, path, value)
    return result
