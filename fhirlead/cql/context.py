"""Per-patient evaluation state shared by every compiled closure of one evaluation.

A compiled expression is a function `fn(ctx)`. The context carries what varies per evaluation: the
patient's data source, parameter values, caches (expression results, retrieves, function results on
the same resource) and the current alias/operand frame. Nothing in it is shared between patients.
"""

from __future__ import annotations

from typing import Any

from fhirlead.cql.datetime import DateTime


class Context:
    """Evaluation state for one patient (one CQL `context Patient` run)."""

    __slots__ = ("cache", "data", "evaluated", "frame", "messages", "now", "params", "tz")

    def __init__(self, data: Any, params: dict[str, Any], now: DateTime, tz: int = 0) -> None:
        self.data = data  # a DataSource (fhirlead.cql.retrieve)
        self.params = params  # parameter name -> value (applies to every library, like "Measurement Period")
        self.now = now  # evaluation request timestamp: Now(), Today(), default offsets
        self.tz = tz  # evaluation request timezone offset, minutes
        self.cache: dict[Any, Any] = {}  # expression results, retrieves, memoised function calls
        self.frame: dict[str, Any] = {}  # aliases, let bindings and function operands in scope
        self.evaluated: dict[str, dict[str, Any]] = {}  # resources returned by retrieves, by "Type/id"
        self.messages: list[tuple[str, str, str]] = []  # (severity, code, message) from Message()
