"""Search parameters whose values are computed by code rather than by their FHIRPath expression.

A few of the server's own parameters index something FHIRPath cannot say, such as identity matching's
blocking keys (normalised names joined with a birth date). Such a parameter is an ordinary
SearchParameter in `profiles/` (its expression names the elements its values come from) whose url is
listed here with the function that computes its values; only the functions listed here are ever
called, so a SearchParameter written by a client can never name code to run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cache
from typing import Any

DERIVED = {
    "http://fhirlead.org/SearchParameter/Patient-match-key": "fhirlead.identity.blocking:match_keys",
}


@cache
def values_of(url: str) -> Callable[[dict[str, Any]], list[str]] | None:
    """The function computing the parameter's values (token codes) from a resource, if it is derived."""
    target = DERIVED.get(url)
    if target is None:
        return None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
