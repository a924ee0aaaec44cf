"""FHIRPath in rule files, evaluated on every relevant write, so compiled.

The rules' triggers run inside the write observer (before each commit that wrote a resource of a rule's
type). fhirpathpy interprets an expression on every call; the server's typed compiler
(`fhirlead.validation.fhirpath_compiler`, written for the R4 invariants) turns the same expression into
Python closures that cost microseconds. An expression the compiler does not cover, or a value it will
not decide, is handed to fhirpathpy (DESIGN §1: compiled paths first, fhirpathpy for the rest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fhirlead.validation.fhirpath_compiler import Env, Fn, Unsupported, compile_expression
from fhirlead.validation.fhirpath_values import ABSENT

log = logging.getLogger(__name__)


class RuleExpressionError(ValueError):
    """An expression in a rule file that FHIRPath cannot parse."""


def _quiet(*_: Any) -> None:
    """fhirpathpy prints `trace()` output unless it is given a callback."""


def _strict(text: str) -> Any:
    """An ANTLR error listener that refuses instead of recovering (fhirpathpy's parser recovers quietly)."""
    from antlr4.error.ErrorListener import ErrorListener

    class Strict(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, recognizer: Any, offending: Any, line: int, column: int, msg: str, e: Any) -> None:
            raise RuleExpressionError(f"FHIRPath {text!r} does not parse: {msg} (at {column + 1})")

    return Strict()


def check_syntax(text: str) -> None:
    """RuleExpressionError unless `text` is one whole FHIRPath expression (checked once, at start-up)."""
    from antlr4 import CommonTokenStream, InputStream, Token
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    lexer = FHIRPathLexer(InputStream(text))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for part in (lexer, parser):
        part.removeErrorListeners()
        part.addErrorListener(_strict(text))
    try:
        parser.expression()
    except RuleExpressionError:
        raise
    except Exception as error:
        raise RuleExpressionError(f"FHIRPath {text!r} does not parse ({type(error).__name__})") from error
    if parser.getCurrentToken().type != Token.EOF:
        raise RuleExpressionError(f"FHIRPath {text!r} does not parse: unexpected text after the expression")


class Expression:
    """One FHIRPath expression on resources of one type: `values(resource)` is its result collection."""

    def __init__(self, text: str, type_: str) -> None:
        self.text, self.type_ = text, type_
        self._native: Fn | None = None
        self._slow: Callable[..., list[Any]] | None = None
        check_syntax(text)
        static = ("res", type_)
        try:
            self._native = compile_expression(text, static, static)
        except Unsupported as why:
            log.debug("care rule expression %r runs in fhirpathpy: %s", text, why)
        except Exception as error:  # a parse error: the rule file is wrong
            raise RuleExpressionError(f"FHIRPath {text!r} does not parse ({type(error).__name__})") from error
        if self._native is None:
            self._slow = self._fhirpathpy()

    def _fhirpathpy(self) -> Callable[..., list[Any]]:
        from fhirpathpy import compile as fhirpath_compile
        from fhirpathpy.models import models

        try:
            return fhirpath_compile(self.text, models["r4"], options={"traceFn": _quiet})
        except Exception as error:
            raise RuleExpressionError(f"FHIRPath {self.text!r} does not parse ({type(error).__name__})") from error

    def values(self, resource: dict[str, Any]) -> list[Any]:
        """The result collection on `resource` (empty when the expression cannot be evaluated on it)."""
        if self._native is not None:
            try:
                return [v for v in self._native([resource], Env(resource, resource)) if v is not ABSENT]
            except Exception:  # Fallback, or a value the compiled code did not expect: fhirpathpy decides
                if self._slow is None:
                    self._slow = self._fhirpathpy()
        try:
            from fhirpathpy.engine.nodes import ResourceNode

            node = ResourceNode.create_node(resource, self.type_)
            result = self._slow(node, {"resource": node, "rootResource": node}) if self._slow else []
            return [getattr(v, "data", v) for v in result]
        except Exception as error:  # an engine failure must never fail the write that triggered it
            log.warning("care rule expression %r not evaluated (%s)", self.text, type(error).__name__)
            return []

    def holds(self, resource: dict[str, Any]) -> bool:
        """True only when the expression yields exactly `true`."""
        return self.values(resource) == [True]

    def first_string(self, resource: dict[str, Any]) -> str | None:
        """The first string the expression yields (a reference, a date), else None."""
        return next((v for v in self.values(resource) if isinstance(v, str)), None)
