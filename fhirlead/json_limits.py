"""The one limit on JSON nesting, checked when a body is parsed, before validation or storage.

FHIR content nests a few dozen levels at most (a deep Questionnaire: item in item, two JSON levels
each). A body nested hundreds of levels deep is an attack on everything that walks it. MAX_DEPTH is
the deepest JSON the server's serialiser (orjson) writes: anything deeper could be parsed but never
stored or answered, so it is refused up front with a 400 naming the limit.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 254  # objects and arrays together; orjson.dumps refuses deeper values


class TooDeep(ValueError):
    def __init__(self) -> None:
        super().__init__(f"the JSON nests objects and arrays more than {MAX_DEPTH} levels deep (the server's limit)")


def loads_limited(body: bytes | str) -> Any:
    """orjson.loads, raising TooDeep for nesting beyond MAX_DEPTH (orjson.JSONDecodeError as usual for
    malformed JSON). Only a body with more brackets than the limit can be too deep: only then is the
    value written back once (C speed) to find out."""
    data = body.encode() if isinstance(body, str) else body
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        if "depth limit" in str(error):
            raise TooDeep() from None
        raise
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH:
        try:
            orjson.dumps(value)
        except orjson.JSONEncodeError:
            raise TooDeep() from None
    return value
