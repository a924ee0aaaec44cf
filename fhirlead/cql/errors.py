"""Errors raised by the CQL engine.

Every error names what failed; unsupported ELM raises `UnsupportedElmError` with the node type, the
library and the locator, so an unimplemented construct is never mistaken for a false or null result.
"""

from __future__ import annotations


class CqlError(Exception):
    """Base class for all engine errors."""


class ElmLoadError(CqlError):
    """A library could not be loaded or an include/reference could not be resolved."""


class UnsupportedElmError(CqlError):
    """The ELM uses a node type or operator overload this engine does not implement."""

    def __init__(self, node_type: str, library: str, locator: str | None, detail: str = "") -> None:
        where = f"{library}" + (f" at {locator}" if locator else "")
        message = f"unsupported ELM node {node_type!r} in {where}"
        if detail:
            message += f": {detail}"
        super().__init__(message)
        self.node_type = node_type
        self.library = library
        self.locator = locator


class CqlEvaluationError(CqlError):
    """A run-time error defined by CQL semantics (e.g. singleton from a list of two, a Message error)."""
