"""References inside a transaction: placeholders and conditional references.

A transaction may name its own new resources by `fullUrl` (`urn:uuid:…`, `urn:oid:…`, or an absolute
URL) before they have ids. Once ids are assigned, every use of such a fullUrl in the Bundle's
resources (a `Reference.reference`, any uri/canonical value, a link in the narrative) is rewritten to
`Type/id`. A conditional reference (`Patient?identifier=sys|val`) is resolved by search to the one
resource it matches (https://hl7.org/fhir/R4/http.html#trules).
"""

from __future__ import annotations

import re
from typing import Any

PLACEHOLDER_IN_TEXT = re.compile(r"urn:(?:uuid|oid):[A-Za-z0-9.\-]+")
CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")


def rewrite(value: Any, mapping: dict[str, str], conditionals: list[tuple[dict[str, Any], str]]) -> None:
    """Replace, in place, every string equal to a key of `mapping`; collect conditional references.

    `conditionals` receives (the element holding it, its key) for each `reference` whose value is a
    conditional search, so the caller can resolve it asynchronously and write the result back.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                if item in mapping:
                    value[key] = mapping[item]
                elif key == "reference" and "?" in item and CONDITIONAL.match(item):
                    conditionals.append((value, key))
                elif key == "div" and "urn:" in item:
                    value[key] = PLACEHOLDER_IN_TEXT.sub(lambda found: mapping.get(found[0], found[0]), item)
            elif isinstance(item, dict | list):
                rewrite(item, mapping, conditionals)
    elif isinstance(value, list):
        for position, item in enumerate(value):
            if isinstance(item, str):
                if item in mapping:
                    value[position] = mapping[item]
            elif isinstance(item, dict | list):
                rewrite(item, mapping, conditionals)


def split_conditional(reference: str) -> tuple[str, str]:
    """`Patient?identifier=x` → ("Patient", "identifier=x")."""
    found = CONDITIONAL.match(reference)
    assert found is not None  # only called on what `rewrite` collected
    return found[1], found[2]
