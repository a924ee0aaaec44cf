"""The codec's own guarantees, case by case: which texts repeat a name (including the spellings that
defeat its fast path), and exact decimals through copies and comparisons."""

from __future__ import annotations

import copy

import pytest

from fhirlead import fhirjson

REPEATED = [
    b'{"a":1,"a":2}',
    b'{"a":{"b":1},"a":{"b":1}}',  # same value twice is still ambiguous text
    b'{"a" : 1, "a" : 2}',  # whitespace before the colons
    b'{\n  "a"\n  : 1,\n  "a":2}',
    b'{"a":"\\u0022:","a":2}',
    b'{"a":"x\\u003ay","a":2,"b":"http://x"}',  # an escaped colon hides one from the count
    b'{"a":"x\\u003Ay\\u003ay","a":"::"}',
    b'{"x":[{"a":1,"b":{"a":2}}],"y":{"a":1,"a":1}}',
    b'{"a\\u0062":1,"ab":2}',  # the same name spelled two ways
]
UNIQUE = [
    b'{"a":"\\":","b":2}',
    b'{"a\\":b":1,"c":[{"d":1},{"d":2}]}',
    b'{ "a": [ "x" ], "b" : {"c":1} }',
    b'{"a":"\\u0022:","b":2}',
    b'{"a":1}',
    b'[{"a":1},{"a":1}]',
]


@pytest.mark.parametrize("text", REPEATED)
def test_a_repeated_name_is_found(text: bytes) -> None:
    with pytest.raises(fhirjson.DuplicateKey):
        fhirjson.loads_untrusted(text)


@pytest.mark.parametrize("text", UNIQUE)
def test_distinct_names_pass(text: bytes) -> None:
    assert fhirjson.loads_untrusted(text) == fhirjson.loads(text)


def test_exact_decimals_survive_copies_and_compare_by_value() -> None:
    value = fhirjson.loads(b'{"a":[1e2,0.0000001,1.50,1E+2]}')
    assert fhirjson.dumps(copy.deepcopy(value)) == b'{"a":[1e2,0.0000001,1.50,1E+2]}'
    assert value["a"][0] == 100 and value["a"][0] == value["a"][3]
    assert fhirjson.dumps_pretty(value) == b'{\n  "a": [\n    1e2,\n    0.0000001,\n    1.50,\n    1E+2\n  ]\n}'


def test_malformed_and_too_deep_text_is_refused_with_a_reason() -> None:
    for text in (b'{"a":NaN}', b'{"a":1}x', b'{"a":"\xc3"}', b'"\\ud800"', b""):
        with pytest.raises(fhirjson.JsonError):
            fhirjson.loads_untrusted(text)
    with pytest.raises(fhirjson.TooDeep, match=str(fhirjson.MAX_DEPTH)):
        fhirjson.loads_untrusted(b"[" * (fhirjson.MAX_DEPTH + 1) + b"]" * (fhirjson.MAX_DEPTH + 1))
    assert fhirjson.loads_untrusted(b"[" * fhirjson.MAX_DEPTH + b"]" * fhirjson.MAX_DEPTH)
    with pytest.raises(fhirjson.TooDeep):
        fhirjson.loads_untrusted(b"[" * 100_000)


def test_many_brackets_and_an_integer_beyond_64_bits_are_fine() -> None:
    """The depth check's fast path (orjson) cannot encode such integers: found by fuzzing a PATCH."""
    shallow = b"[" + b"[]," * 300 + b"123456789012345678901234567890]"
    assert fhirjson.loads_untrusted(shallow)[-1] == 123456789012345678901234567890
    deep = b"[" * 300 + b"123456789012345678901234567890" + b"]" * 300
    with pytest.raises(fhirjson.TooDeep):
        fhirjson.loads_untrusted(deep)
