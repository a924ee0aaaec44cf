"""FHIR JSON in and out: decimals keep their exact text, and untrusted bodies meet explicit limits.

FHIR R4 §2.24.0.1 (datatypes, decimal): "the precision of the decimal value has significance (e.g.
0.010 is regarded as different to 0.01), and the original precision should be preserved". A JSON
library that reads numbers as binary floats cannot do that (`1.50` -> `1.5`, `1e-400` -> `0.0`), so
resources are read with msgspec, whose decoder hands the text of every non-integer number to a hook:
each becomes a `decimal.Decimal`, which keeps its digits, and is written back as a JSON number with
the same digits. Where `str(Decimal)` would spell the number differently from the sender (`1e2`
comes back as `1E+2`, `0.0000001` as `1E-7`) the value is an `ExactDecimal` that carries its text and
is written back verbatim. The choice was measured against orjson (bench/README.md, "JSON").

Untrusted bodies (requests, `fhirlead load`) are also refused when they nest objects and arrays deeper
than MAX_DEPTH, or repeat a property name within one object: RFC 8259 §4 leaves duplicate names
undefined and parsers disagree on them (first wins, last wins), which lets one body mean two things
to two readers; FHIR content never needs them. A UTF-8 byte-order mark at the start of an untrusted
body is ignored: RFC 8259 §8.1, "implementations that parse JSON texts MAY ignore the presence of a byte
order mark rather than treating it as an error" (Windows tools write one; msgspec refuses it).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec
import orjson
from bson.decimal128 import Decimal128

# FHIR content nests a few dozen levels at most (a deep Questionnaire: item in item, two JSON levels
# each); hundreds of levels are an attack on everything that walks a resource.
MAX_DEPTH = 254  # objects and arrays together


class JsonError(ValueError):
    """The text is not JSON the server accepts; the message says why, for an OperationOutcome."""


class TooDeep(JsonError):
    def __init__(self) -> None:
        super().__init__(f"the JSON nests objects and arrays more than {MAX_DEPTH} levels deep (the server's limit)")


class DuplicateKey(JsonError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the JSON repeats the property name {name[:100]!r} within one object")


class ExactDecimal(Decimal):
    """A decimal whose `str()` differs from the text it was read from; written back as that text."""

    __slots__ = ("text",)
    text: str


def _decimal(text: str) -> Decimal:
    value = Decimal(text)
    if str(value) == text:
        return value
    exact = ExactDecimal(text)
    exact.text = text
    return exact


def _encode_other(value: Any) -> Any:
    if isinstance(value, ExactDecimal):
        return msgspec.Raw(value.text.encode())
    if isinstance(value, Decimal128):  # a decimal as MongoDB stores it in a resource sub-document
        return value.to_decimal()
    raise TypeError(f"{type(value).__name__} is not a JSON value")


_decoder = msgspec.json.Decoder(float_hook=_decimal)
_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_encode_other)
_sorted_encoder = msgspec.json.Encoder(decimal_format="number", enc_hook=_encode_other, order="sorted")


def loads(data: bytes | str) -> Any:
    """JSON text as Python values, non-integer numbers as Decimal; JsonError when malformed."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as error:
        raise JsonError(str(error)) from None
    except RecursionError:
        raise TooDeep() from None


UTF8_BOM = b"\xef\xbb\xbf"


def loads_untrusted(data: bytes | str) -> Any:
    """`loads` for what a client sent: also TooDeep beyond MAX_DEPTH, DuplicateKey for a repeated name;
    a leading UTF-8 byte-order mark is ignored (RFC 8259 §8.1)."""
    if isinstance(data, bytes) and data.startswith(UTF8_BOM):
        data = data[len(UTF8_BOM):]
    elif isinstance(data, str) and data.startswith("\ufeff"):
        data = data[1:]
    value = loads(data)
    text = data.encode() if isinstance(data, str) else data
    if text.count(b"{") + text.count(b"[") > MAX_DEPTH and too_deep(value):
        raise TooDeep()
    _check_unique_names(text, value)
    return value


class _Typed(msgspec.Struct):
    resourceType: Any = None


_typed_decoder = msgspec.json.Decoder(_Typed)


def resource_type(data: bytes) -> Any:
    """The top-level `resourceType` of a JSON text (None when it has none or is not an object), read
    without building the rest: ~40x faster than `loads` on a Bundle. The whole text is still checked to
    be JSON (JsonError, TooDeep), but not for repeated names: `loads_untrusted` does that."""
    try:
        return _typed_decoder.decode(data.removeprefix(UTF8_BOM)).resourceType
    except msgspec.ValidationError:
        return None
    except msgspec.DecodeError as error:
        raise JsonError(str(error)) from None
    except RecursionError:
        raise TooDeep() from None


def dumps(value: Any) -> bytes:
    """Compact JSON bytes; decimals as numbers with their own digits."""
    return _encoder.encode(value)


def dumps_sorted(value: Any) -> bytes:
    """Compact JSON with every object's names sorted: equal bytes for equal content, decimals included."""
    return _sorted_encoder.encode(value)


def dumps_pretty(value: Any) -> bytes:
    """Indented JSON (`_pretty=true`): JSON bytes are re-indented without being parsed."""
    return msgspec.json.format(value if isinstance(value, bytes) else dumps(value), indent=2)


def plain(value: Any) -> Any:
    """A copy of `value` with every ExactDecimal as a plain Decimal (for libraries that check types
    exactly); the same value when there is none."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return Decimal(value.text) if isinstance(value, ExactDecimal) else value


def _as_text(value: Any) -> str:
    if isinstance(value, Decimal | Decimal128):
        return str(value)
    raise TypeError


def too_deep(value: Any) -> bool:
    """Whether `value` nests deeper than MAX_DEPTH: orjson's encoder refuses exactly that depth, and
    finds out at C speed (a Python walk over a 300 KB Bundle costs milliseconds). What orjson cannot
    encode at all (an integer beyond 64 bits) is walked in Python instead."""
    try:
        orjson.dumps(value, default=_as_text)
    except orjson.JSONEncodeError as error:
        return "recursion" in str(error).lower() or _depth(value) > MAX_DEPTH
    return False


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (iterative: any depth is safe)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _names_unique(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len({name for name, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise DuplicateKey(name)
            seen.add(name)


def _ignore(_text: str) -> None:
    return None


_names_scanner = json.JSONDecoder(object_pairs_hook=_names_unique, parse_float=_ignore, parse_int=_ignore)


def _check_unique_names(text: bytes, value: Any) -> None:
    """DuplicateKey when an object in `text` (already decoded to `value`) repeats a name.

    Fast path: a colon outside strings follows each name, one inside a string stays a colon when the
    string is written again, so `text` holds as many colons as `dumps(value)` unless a repeated name
    was dropped (with everything in its value). That is exact unless a colon is escaped (`\\u003a`);
    then, and to name the culprit, a value-discarding pass of the standard library's C scanner, which
    (unlike msgspec and orjson) shows each object's names in order, decides (~4x the decode's time)."""
    if b"\\u003" not in text and text.count(b":") <= dumps(value).count(b":"):
        return
    try:
        _names_scanner.decode(text.decode())
    except json.JSONDecodeError as error:  # not expected after msgspec accepted the text
        raise JsonError(str(error)) from None
