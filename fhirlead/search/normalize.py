"""String folding for string search: case- and accent-insensitive, whitespace-collapsed.

The same function runs at write time (index entries) and at query time (search values), so a default
string search is a starts-with comparison of folded forms. `:exact` compares the unfolded value.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_SPACE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """Lower-case (Unicode casefold), accents removed (NFKD minus combining marks), spaces collapsed."""
    if text.isascii():
        folded = text.lower()
    else:
        decomposed = unicodedata.normalize("NFKD", text.casefold())
        folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    if (
        "  " in folded
        or "\t" in folded
        or "\n" in folded
        or "\r" in folded
        or folded[:1] == " "
        or folded[-1:] == " "
    ):
        folded = " ".join(folded.translate(_SPACE).split())
    return folded


def prefix_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix` (for index range scans)."""
    return prefix + "\U0010ffff"
